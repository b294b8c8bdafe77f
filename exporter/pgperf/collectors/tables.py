"""pg_stat_user_tables and pg_statio_user_tables: the top N tables of every database.

A database-scoped collector: the sampler runs it in every selected database (statistics
views only show the tables of the database the session is connected to). Family and label
names are postgres_exporter's (``pg_stat_user_tables_<column>``,
``pg_statio_user_tables_<column>``, labels ``datname``, ``schemaname``, ``relname``).

A database can hold tens of thousands of tables; serving them all would cost the server
a size computation per table and Prometheus tens of series per table. One query ranks the
tables twice, by size (``pg_class.relpages`` of the table and its TOAST table, kept by
VACUUM and ANALYZE, so ranking costs no file-system call) and by activity (scans and rows
written since the statistics were reset), each rank breaking its ties with the other, and
keeps the first ``limit`` by the better of the two ranks: the largest and the busiest
tables, alternately; only those get their statistics and exact sizes. ``pgperf_tables_total``
and ``pgperf_tables_truncated`` say how many tables there are and whether the limit cut
some off. Dropped tables simply stop appearing: families are rebuilt every run.

NULL: the (auto)vacuum and (auto)analyze times of a table never vacuumed or analyzed are
NULL; postgres_exporter serves them as 0 (the epoch), and so does pgperf, so that rules
such as ``time() - pg_stat_user_tables_last_autovacuum > ...`` fire for a table never
vacuumed instead of ignoring it. The other columns keep pgperf's rule: NULL, no sample
(the TOAST counters of a table without a TOAST table).

Choosing and exact sizes are most of the query's cost: ranking reads the statistics of
every table, pg_table_size() and pg_indexes_size() look at every file of the table and of
each index. Both happen every ``refresh_interval`` (5 minutes by default, as
``database_size``), and at once when the number of tables changed (a table created or
dropped); the samples in between read the statistics of the tables chosen last, and
serve their last sizes (kept in the collector's state, with the choice). The statistics
views are read for the served tables only (``LATERAL ... OFFSET 0``: the planner would
otherwise compute their per-table aggregates for every table and join).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from pydantic import Field

from .._types import Duration
from ._base import CollectContext, CollectorOptions, CollectorResult, CollectorSpec, Family, MetricDef


class TablesOptions(CollectorOptions):
    #: Tables served per database: the largest and the busiest, alternately. Each table
    #: adds about 30 series.
    limit: int = Field(200, ge=1, le=100000)
    #: How often the served tables are chosen again and their sizes measured; in between,
    #: the same tables are served with fresh statistics and their last sizes.
    refresh_interval: Duration = 300.0


@dataclass(frozen=True)
class Served:
    """The state of one database: the tables chosen (OIDs, in order) at ``at`` among
    ``total`` tables, and the (table, indexes) size of each."""

    at: float
    total: int
    order: tuple[int, ...]
    sizes: Mapping[int, tuple[Any, Any]]


# pg_table_size() and pg_indexes_size() open the relation with AccessShareLock: a table
# under an AccessExclusiveLock (ALTER TABLE, VACUUM FULL, TRUNCATE ...) would make the
# query wait until lock_timeout and fail. Such tables get no size for this run.
SQL = """
WITH locked AS (
  SELECT relation FROM pg_locks
  WHERE locktype = 'relation' AND mode = 'AccessExclusiveLock' AND relation IS NOT NULL
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
), candidates AS (
  SELECT c.oid,
         c.relpages::bigint + COALESCE(t.relpages, 0) AS pages,
         pg_stat_get_numscans(c.oid) + pg_stat_get_tuples_fetched(c.oid)
           + pg_stat_get_tuples_inserted(c.oid) + pg_stat_get_tuples_updated(c.oid)
           + pg_stat_get_tuples_deleted(c.oid) AS activity
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
  WHERE c.relkind IN ('r', 'm', 'p')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
), ranked AS (
  SELECT oid, count(*) OVER () AS total_tables,
         least(row_number() OVER (ORDER BY pages DESC, activity DESC, oid),
               row_number() OVER (ORDER BY activity DESC, pages DESC, oid)) AS best
  FROM candidates
), top AS (
  SELECT oid, total_tables, best FROM ranked ORDER BY best, oid LIMIT %(limit)s
)
SELECT current_database() AS datname, s.*, io.heap_blks_read, io.heap_blks_hit, io.idx_blks_read,
       io.idx_blks_hit, io.toast_blks_read, io.toast_blks_hit, io.tidx_blks_read, io.tidx_blks_hit,
       top.total_tables,
       CASE WHEN s.relid <> ALL(%(known)s::oid[]) AND s.relid NOT IN (SELECT relation FROM locked)
            THEN pg_table_size(s.relid) END AS table_size,
       CASE WHEN s.relid <> ALL(%(known)s::oid[]) AND s.relid NOT IN (SELECT relation FROM locked)
            THEN pg_indexes_size(s.relid) END AS index_size
FROM top
CROSS JOIN LATERAL (SELECT * FROM pg_stat_user_tables s WHERE s.relid = top.oid OFFSET 0) s
LEFT JOIN LATERAL (SELECT * FROM pg_statio_user_tables io WHERE io.relid = top.oid OFFSET 0) io ON true
ORDER BY top.best, s.relid
"""
# When the database has no table at all the query above returns no row; this one says so.
COUNT_SQL = """
SELECT count(*) AS total_tables FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
"""
# Between two choices: the statistics of the tables chosen last, in their order (sizes
# from the state); a dropped table simply has no row.
CHOSEN_SQL = f"""
SELECT current_database() AS datname, s.*, io.heap_blks_read, io.heap_blks_hit, io.idx_blks_read,
       io.idx_blks_hit, io.toast_blks_read, io.toast_blks_hit, io.tidx_blks_read, io.tidx_blks_hit,
       ({COUNT_SQL.strip()}) AS total_tables, NULL::bigint AS table_size, NULL::bigint AS index_size
FROM unnest(%(chosen)s::oid[]) WITH ORDINALITY AS top(oid, best)
CROSS JOIN LATERAL (SELECT * FROM pg_stat_user_tables s WHERE s.relid = top.oid OFFSET 0) s
LEFT JOIN LATERAL (SELECT * FROM pg_statio_user_tables io WHERE io.relid = top.oid OFFSET 0) io ON true
ORDER BY top.best
"""

_LABELS = ("datname", "schemaname", "relname")
_S = "pg_stat_user_tables"
_IO = "pg_statio_user_tables"

# column -> (family suffix, type, help, min server version, postgres_exporter's name).
# See "pg_stat_all_tables" in the PostgreSQL documentation, "The Cumulative Statistics System".
_STAT: dict[str, tuple[str, str, str, int, bool]] = {
    "seq_scan": ("seq_scan", "counter", "Number of sequential scans initiated on this table.", 0, True),
    "seq_tup_read": ("seq_tup_read", "counter", "Number of live rows fetched by sequential scans.", 0, True),
    "idx_scan": ("idx_scan", "counter", "Number of index scans initiated on this table.", 0, True),
    "idx_tup_fetch": ("idx_tup_fetch", "counter", "Number of live rows fetched by index scans.", 0, True),
    "n_tup_ins": ("n_tup_ins", "counter", "Number of rows inserted.", 0, True),
    "n_tup_upd": ("n_tup_upd", "counter", "Number of rows updated (HOT updates included).", 0, True),
    "n_tup_del": ("n_tup_del", "counter", "Number of rows deleted.", 0, True),
    "n_tup_hot_upd": ("n_tup_hot_upd", "counter", "Number of rows HOT updated (no separate index update required).", 0, True),
    "n_tup_newpage_upd": ("n_tup_newpage_upd", "counter", "Number of rows updated where the new row version went to a new heap page (PostgreSQL 16+).", 160000, False),
    "n_live_tup": ("n_live_tup", "gauge", "Estimated number of live rows.", 0, True),
    "n_dead_tup": ("n_dead_tup", "gauge", "Estimated number of dead rows.", 0, True),
    "n_mod_since_analyze": ("n_mod_since_analyze", "gauge", "Estimated number of rows modified since this table was last analyzed.", 0, True),
    "n_ins_since_vacuum": ("n_ins_since_vacuum", "gauge", "Estimated number of rows inserted since this table was last vacuumed.", 0, False),
    "last_vacuum": ("last_vacuum", "gauge", "Last time this table was vacuumed manually (not counting VACUUM FULL), in seconds since the epoch; 0 if never.", 0, True),
    "last_autovacuum": ("last_autovacuum", "gauge", "Last time this table was vacuumed by the autovacuum daemon, in seconds since the epoch; 0 if never.", 0, True),
    "last_analyze": ("last_analyze", "gauge", "Last time this table was analyzed manually, in seconds since the epoch; 0 if never.", 0, True),
    "last_autoanalyze": ("last_autoanalyze", "gauge", "Last time this table was analyzed by the autovacuum daemon, in seconds since the epoch; 0 if never.", 0, True),
    "vacuum_count": ("vacuum_count", "counter", "Number of times this table has been vacuumed manually (not counting VACUUM FULL).", 0, True),
    "autovacuum_count": ("autovacuum_count", "counter", "Number of times this table has been vacuumed by the autovacuum daemon.", 0, True),
    "analyze_count": ("analyze_count", "counter", "Number of times this table has been analyzed manually.", 0, True),
    "autoanalyze_count": ("autoanalyze_count", "counter", "Number of times this table has been analyzed by the autovacuum daemon.", 0, True),
    "table_size": ("table_size_bytes", "gauge", "Disk space used by this table (pg_table_size: heap, TOAST, free space and visibility maps), in bytes.", 0, True),
    "index_size": ("index_size_bytes", "gauge", "Disk space used by the indexes of this table (pg_indexes_size), in bytes.", 0, True),
}
# See "pg_statio_all_tables" in the PostgreSQL documentation.
_STATIO: dict[str, tuple[str, str]] = {
    "heap_blks_read": ("heap_blocks_read", "Number of disk blocks read from this table."),
    "heap_blks_hit": ("heap_blocks_hit", "Number of buffer hits in this table."),
    "idx_blks_read": ("idx_blocks_read", "Number of disk blocks read from all indexes of this table."),
    "idx_blks_hit": ("idx_blocks_hit", "Number of buffer hits in all indexes of this table."),
    "toast_blks_read": ("toast_blocks_read", "Number of disk blocks read from this table's TOAST table (if any)."),
    "toast_blks_hit": ("toast_blocks_hit", "Number of buffer hits in this table's TOAST table (if any)."),
    "tidx_blks_read": ("tidx_blocks_read", "Number of disk blocks read from this table's TOAST table indexes (if any)."),
    "tidx_blks_hit": ("tidx_blocks_hit", "Number of buffer hits in this table's TOAST table indexes (if any)."),
}

STAT_METRICS: dict[str, MetricDef] = {
    column: MetricDef(f"{_S}_{suffix}", kind, help_text, _LABELS,  # type: ignore[arg-type]
                      source=_S, min_version=since, compat=compat)
    for column, (suffix, kind, help_text, since, compat) in _STAT.items()
}
STATIO_METRICS: dict[str, MetricDef] = {
    column: MetricDef(f"{_IO}_{suffix}", "counter", help_text, _LABELS, source=_IO, compat=True)
    for column, (suffix, help_text) in _STATIO.items()
}
TOTAL = MetricDef(
    "pgperf_tables", "gauge",
    "Tables in this database (ordinary and partitioned tables, materialized views; system schemas excluded).",
    ("datname",), source="pg_class",
)
TRUNCATED = MetricDef(
    "pgperf_tables_truncated", "gauge",
    "1 when this database has more tables than collectors.tables.limit and only the first "
    "limit (by size and activity) are served, else 0.",
    ("datname",), source="pg_class",
)
SERVED = MetricDef(
    "pgperf_tables_served", "gauge", "Tables of this database served by the tables collector.",
    ("datname",), source="pg_stat_user_tables",
)


# timestamptz columns, served as seconds since the epoch.
_TIMES = frozenset({"last_vacuum", "last_autovacuum", "last_analyze", "last_autoanalyze"})


def _value(value: Any) -> Any:
    if value is None:
        return 0.0  # never: served as postgres_exporter serves it (see the module docstring)
    if hasattr(value, "timestamp"):  # timestamptz columns become epoch seconds
        return value.timestamp()
    return value


def families_from_rows(rows: list[dict[str, Any]], datname: str, total: int, limit: int) -> tuple[Family, ...]:
    """Build the families from the query's rows (mapped by column name; columns this
    module does not know are ignored, columns the server lacks are not served)."""
    present = rows[0].keys() if rows else ()
    # The label values of each table, once for all its families (about 30 per table).
    labels = [tuple(["" if r[k] is None else str(r[k]) for k in _LABELS]) for r in rows]
    families: list[Family] = []
    for defs in (STAT_METRICS, STATIO_METRICS):
        for column, metric in defs.items():
            if column not in present:
                continue
            convert = _value if column in _TIMES else None
            samples = []
            for lab, r in zip(labels, rows, strict=True):
                value = r[column]
                if convert is not None:
                    value = convert(value)
                if value is not None:  # NULL: no sample
                    samples.append((lab, float(value)))
            families.append(Family(metric.name, metric.type, metric.help, metric.labels, tuple(samples)))
    families += [
        TOTAL.family([((datname,), total)]),
        TRUNCATED.family([((datname,), 1 if total > limit else 0)]),
        SERVED.family([((datname,), len(rows))]),
    ]
    return tuple(families)


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    options: TablesOptions = ctx.options
    last = ctx.previous if isinstance(ctx.previous, Served) else None
    due = last is None or ctx.now - last.at >= options.refresh_interval
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        rows: list[dict[str, Any]] = []
        if not due and last is not None:
            rows = cur.execute(CHOSEN_SQL, {"chosen": list(last.order)}).fetchall()
            total = int(rows[0]["total_tables"]) if rows else _count(cur)
            chosen = total == last.total  # else a table was created or dropped: choose now
        if due or not chosen:
            known = {} if due or last is None else last.sizes  # measure the new ones only
            rows = cur.execute(SQL, {"limit": options.limit, "known": list(known)}).fetchall()
            total = int(rows[0]["total_tables"]) if rows else _count(cur)
        datname = str(rows[0]["datname"]) if rows else ctx.conn.info.dbname
    sizes: dict[int, tuple[Any, Any]] = {}
    cached = last.sizes if last is not None and not due else {}
    for row in rows:
        relid = int(row["relid"])
        if row["table_size"] is None and relid in cached:  # not measured in this run: its last sizes
            row["table_size"], row["index_size"] = cached[relid]
        if row["table_size"] is not None:  # None: locked, measured again at the next choice
            sizes[relid] = (row["table_size"], row["index_size"])
    at = ctx.now if due or last is None else last.at
    state = Served(at, total, tuple(int(r["relid"]) for r in rows), sizes)
    return CollectorResult(families_from_rows(rows, datname, total, options.limit), state=state)


def _count(cur: Any) -> int:
    """Tables of the database (the queries above return no row when there are none)."""
    return int(cur.execute(COUNT_SQL).fetchone()["total_tables"])


SPEC = CollectorSpec(
    name="tables",
    description="pg_stat_user_tables and pg_statio_user_tables in every selected database "
    "(`databases.include`/`exclude`): scans, rows, dead rows, (auto)vacuum and analyze times and "
    "counts, table and index sizes and block I/O of the top `limit` tables by size and activity.",
    collect=collect,
    metrics=(*STAT_METRICS.values(), *STATIO_METRICS.values(), TOTAL, TRUNCATED, SERVED),
    options=TablesOptions,
    per_database=True,
)
