"""pg_stat_database and pg_stat_database_conflicts: per-database activity counters.

Family and label names are postgres_exporter's (``pg_stat_database_<column>`` with
``datid`` and ``datname``), so its dashboards and rules keep working. Their counters keep
postgres_exporter's names without ``_total`` and its units (times in milliseconds).
Columns are mapped by name: a column the server lacks is simply not served, a column
this module does not know is ignored.

NULL: the columns postgres_exporter 0.20 serves follow its rule, the others pgperf's.
``stats_reset`` is NULL until the statistics of a database are first reset (always so on
PostgreSQL 15+ for a new database): postgres_exporter serves 0 then, and so does pgperf,
so that ``time() - pg_stat_database_stats_reset`` keeps working. ``checksum_failures`` and
``checksum_last_failure`` (pgperf's own families) are NULL without data checksums, and the
latter until a first failure: no sample, as for every NULL in pgperf's own families.

``pg_stat_database_conflicts_*`` carry postgres_exporter's ``server`` label (``host:port``),
which it adds to the families of its built-in query map, and ``active_time`` is served
twice: in milliseconds under the view's column name, and in seconds as postgres_exporter
0.20's ``pg_stat_database_active_time_seconds_total``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, Family, MetricDef, Record

SQL = "SELECT * FROM pg_stat_database"
CONFLICTS_SQL = "SELECT * FROM pg_stat_database_conflicts"

_LABELS = ("datid", "datname")
_CONFLICT_LABELS = ("datid", "datname", "server")
_V14 = 140000
# The columns postgres_exporter 0.20 serves under the same name (collector/pg_stat_database.go).
_COMPAT = frozenset({
    "numbackends", "xact_commit", "xact_rollback", "blks_read", "blks_hit", "tup_returned", "tup_fetched",
    "tup_inserted", "tup_updated", "tup_deleted", "conflicts", "temp_files", "temp_bytes", "deadlocks",
    "blk_read_time", "blk_write_time", "stats_reset",
})
# NULL served as 0, as postgres_exporter does (see the module docstring).
_NULL_AS_ZERO = frozenset({"stats_reset"})

# column -> (type, help, min server version). See "pg_stat_database" in the PostgreSQL
# documentation, "The Cumulative Statistics System".
_COLUMNS: dict[str, tuple[str, str, int]] = {
    "numbackends": ("gauge", "Number of backends currently connected to this database.", 0),
    "xact_commit": ("counter", "Number of transactions in this database that have been committed.", 0),
    "xact_rollback": ("counter", "Number of transactions in this database that have been rolled back.", 0),
    "blks_read": ("counter", "Number of disk blocks read in this database.", 0),
    "blks_hit": ("counter", "Number of times disk blocks were found already in the buffer cache.", 0),
    "tup_returned": ("counter", "Number of live rows fetched by sequential scans and index entries returned by index scans.", 0),
    "tup_fetched": ("counter", "Number of live rows fetched by index scans in this database.", 0),
    "tup_inserted": ("counter", "Number of rows inserted by queries in this database.", 0),
    "tup_updated": ("counter", "Number of rows updated by queries in this database.", 0),
    "tup_deleted": ("counter", "Number of rows deleted by queries in this database.", 0),
    "conflicts": ("counter", "Number of queries canceled due to conflicts with recovery in this database.", 0),
    "temp_files": ("counter", "Number of temporary files created by queries in this database.", 0),
    "temp_bytes": ("counter", "Total amount of data written to temporary files by queries in this database, in bytes.", 0),
    "deadlocks": ("counter", "Number of deadlocks detected in this database.", 0),
    "checksum_failures": ("counter", "Number of data page checksum failures detected in this database.", 0),
    "checksum_last_failure": ("gauge", "Time of the last data page checksum failure, in seconds since the epoch.", 0),
    "blk_read_time": ("counter", "Time spent reading data file blocks by backends in this database, in milliseconds.", 0),
    "blk_write_time": ("counter", "Time spent writing data file blocks by backends in this database, in milliseconds.", 0),
    "session_time": ("counter", "Time spent by database sessions in this database, in milliseconds.", _V14),
    "active_time": ("counter", "Time spent executing SQL statements in this database, in milliseconds.", _V14),
    "idle_in_transaction_time": ("counter", "Time spent idling while in a transaction in this database, in milliseconds.", _V14),
    "sessions": ("counter", "Total number of sessions established to this database.", _V14),
    "sessions_abandoned": ("counter", "Number of sessions terminated because connection to the client was lost.", _V14),
    "sessions_fatal": ("counter", "Number of sessions terminated by fatal errors.", _V14),
    "sessions_killed": ("counter", "Number of sessions terminated by operator intervention.", _V14),
    "parallel_workers_to_launch": ("counter", "Number of parallel workers planned to be launched by queries on this database.", 180000),
    "parallel_workers_launched": ("counter", "Number of parallel workers launched by queries on this database.", 180000),
    "stats_reset": ("gauge", "Time at which these statistics were last reset, in seconds since the epoch; 0 if never.", 0),
}

# pg_stat_database_conflicts columns (queries canceled on a standby, by cause).
_CONFLICTS: dict[str, tuple[str, int]] = {
    "confl_tablespace": ("dropped tablespaces", 0),
    "confl_lock": ("lock timeouts", 0),
    "confl_snapshot": ("old snapshots", 0),
    "confl_bufferpin": ("pinned buffers", 0),
    "confl_deadlock": ("deadlocks", 0),
    "confl_active_logicalslot": ("logical slots invalidated by recovery", 160000),
}

METRICS: dict[str, MetricDef] = {
    column: MetricDef(
        f"pg_stat_database_{column}", kind, help_text, _LABELS,  # type: ignore[arg-type]
        source="pg_stat_database", min_version=since, compat=column in _COMPAT,
    )
    for column, (kind, help_text, since) in _COLUMNS.items()
}
ACTIVE_SECONDS = MetricDef(
    "pg_stat_database_active_time_seconds_total", "counter",
    "Time spent executing SQL statements in this database, in seconds.",
    _LABELS, source="pg_stat_database", min_version=_V14, compat=True,
)
CONFLICT_METRICS: dict[str, MetricDef] = {
    column: MetricDef(
        f"pg_stat_database_conflicts_{column}", "counter",
        f"Number of queries in this database canceled on a standby due to {cause}.",
        _CONFLICT_LABELS, source="pg_stat_database_conflicts", min_version=since, compat=since == 0,
    )
    for column, (cause, since) in _CONFLICTS.items()
}


@dataclass(frozen=True, slots=True)
class DatabaseCounters:
    """The cumulative counters of one database the store keeps the change of per sample
    (rollbacks for the error rate, cache hits and reads for the hit ratio)."""

    xact_commit: int = 0
    xact_rollback: int = 0
    deadlocks: int = 0
    blks_hit: int = 0
    blks_read: int = 0
    temp_bytes: int = 0


@dataclass(frozen=True, slots=True)
class DatabaseStats(Record):
    """DatabaseCounters of every database, by oid (as text): the store sums their
    per-database changes, so that a dropped database or a per-database pg_stat_reset() is
    not taken for a reset of them all."""

    by_datid: Mapping[str, DatabaseCounters]


def _value(column: str, value: Any) -> Any:
    if value is None:
        return 0 if column in _NULL_AS_ZERO else None
    if hasattr(value, "timestamp"):  # timestamptz columns become epoch seconds
        return value.timestamp()
    return value


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(SQL).fetchall()
        conflicts = cur.execute(CONFLICTS_SQL).fetchall()
    host = ctx.conn.info.host
    server = f"{'localhost' if host.startswith('/') else host}:{ctx.conn.info.port}"
    families: list[Family] = []
    for table, defs, extra in ((rows, METRICS, ()), (conflicts, CONFLICT_METRICS, (server,))):
        present = table[0].keys() if table else ()
        for column, metric in defs.items():
            if column in present:
                families.append(metric.family(
                    ((r["datid"], r["datname"], *extra), _value(column, r[column])) for r in table
                ))
    if rows and "active_time" in rows[0]:
        families.append(ACTIVE_SECONDS.family(
            ((r["datid"], r["datname"]), None if r["active_time"] is None else r["active_time"] / 1000.0)
            for r in rows
        ))
    by_datid = {
        str(r["datid"]): DatabaseCounters(
            xact_commit=int(r["xact_commit"] or 0), xact_rollback=int(r["xact_rollback"] or 0),
            deadlocks=int(r["deadlocks"] or 0), blks_hit=int(r["blks_hit"] or 0),
            blks_read=int(r["blks_read"] or 0), temp_bytes=int(r["temp_bytes"] or 0),
        )
        for r in rows if r["datname"] is not None  # the row of shared objects has none
    }
    return CollectorResult(tuple(families), record=DatabaseStats(by_datid))


SPEC = CollectorSpec(
    name="database",
    description="pg_stat_database and pg_stat_database_conflicts: transactions, cache hits, "
    "tuples, temporary files, deadlocks and sessions per database.",
    collect=collect,
    metrics=(*METRICS.values(), ACTIVE_SECONDS, *CONFLICT_METRICS.values()),
)
