"""pg_stat_progress_vacuum, _analyze, _create_index and _basebackup: operations under way.

VACUUM families keep postgres_exporter's names and labels (``pg_stat_progress_vacuum_*``,
``datname`` and ``relname``, one ``phase`` sample per known phase, 1 for the current one).
PostgreSQL 17 replaced the dead-tuple figures by dead-item ones (``max_dead_tuple_bytes``,
``dead_tuple_bytes``, ``num_dead_item_ids``) and added the index counts; 18 added the time
slept in cost-based delays: each family exists on the versions that have its column, except
``..._num_dead_tuples``, read from ``num_dead_item_ids`` on 17+ (the same count, renamed). ANALYZE and CREATE INDEX follow the same pattern; base backups are
labelled by the WAL sender's process ID (there are at most ``max_wal_senders``).

The views show every database's operations but ``relid`` only means something in the
database it belongs to: relations of the database pgperf is connected to are named
(``schema.table`` unless on the search path, which pgperf pins to ``pg_catalog``), others
are given by OID, as postgres_exporter does. ``..._elapsed_seconds`` is the age of the
transaction doing the work (VACUUM and ANALYZE run one transaction per table; autovacuum
workers too) with a ``kind`` label: ``manual``, ``autovacuum`` or ``wraparound`` (an
autovacuum to prevent wraparound, which cannot be cancelled by lock conflicts).

Rows are bounded: at most ``limit`` operations of each command are served (the longest
running first); ``pgperf_progress_operations`` and ``pgperf_progress_truncated`` say how
many there are and whether some were left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from pydantic import Field

from ._base import CollectContext, CollectorOptions, CollectorResult, CollectorSpec, Family, MetricDef


class ProgressOptions(CollectorOptions):
    #: Operations served per command (VACUUM, ANALYZE, CREATE INDEX, base backup), the
    #: longest running first.
    limit: int = Field(20, ge=1, le=1000)


# The relation's name when it belongs to the database of this session, else its OID.
_HERE = "p.datid = (SELECT oid FROM pg_database WHERE datname = current_database())"
_RELATION = (f"COALESCE(p.datname, '') AS datname, "
             f"CASE WHEN {_HERE} THEN p.relid::regclass::text ELSE p.relid::text END AS relname")
# index_relid is 0 until the index exists (a CREATE INDEX that is not CONCURRENTLY).
_INDEX = (f"CASE WHEN p.index_relid = 0 THEN '' WHEN {_HERE} THEN p.index_relid::regclass::text "
          "ELSE p.index_relid::text END AS indexrelname, p.command")
_ELAPSED = "extract(epoch FROM now() - COALESCE(a.xact_start, a.query_start))::float8"
# Autovacuum workers announce "autovacuum: VACUUM public.t (to prevent wraparound)" as their query.
_KIND = ("CASE WHEN a.backend_type <> 'autovacuum worker' THEN 'manual' "
         "WHEN a.query LIKE '%%(to prevent wraparound)%%' THEN 'wraparound' ELSE 'autovacuum' END")

_SQL = """
SELECT p.pid, {select}p.phase, {columns},
       {elapsed} AS elapsed, {kind} AS kind, count(*) OVER () AS total
FROM pg_stat_progress_{view} p
LEFT JOIN pg_stat_activity a ON a.pid = p.pid
ORDER BY elapsed DESC NULLS LAST, p.pid
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class Column:
    """A numeric column of a progress view served as a family."""

    column: str  # SQL expression over the view ``p``
    metric: MetricDef
    scale: float = 1.0
    until: int = 0  # the column's last version (exclusive; 0: none), when the family outlives it
    since: int = 0  # its first version, when the family is older

    def exists_on(self, version: int) -> bool:
        return (self.metric.exists_on(version) and version >= self.since
                and (not self.until or version < self.until))


@dataclass(frozen=True)
class Command:
    """One progress view: its label names, phases and columns."""

    name: str  # label value of the pgperf_progress_* families
    view: str
    labels: tuple[str, ...]
    phase: MetricDef
    phases: tuple[str, ...]  # served with 0 when not current; empty: only the current one
    columns: tuple[Column, ...]
    elapsed: MetricDef
    select: str = ""  # the label columns (and command) besides pid, each followed by a comma

    def sql(self, version: int) -> str:
        """The query for *version*: columns ``c0``, ``c1``... for the columns it has."""
        present = [c for c in self.columns if c.exists_on(version)]
        columns = ", ".join(f"{c.column} AS c{i}" for i, c in enumerate(present))
        return _SQL.format(select=self.select, columns=columns, elapsed=_ELAPSED, kind=_KIND, view=self.view)


def _m(name: str, help_text: str, labels: tuple[str, ...], source: str, *, min_version: int = 0,
       max_version: int = 0, compat: bool = False) -> MetricDef:
    return MetricDef(name, "gauge", help_text, labels, source=source, min_version=min_version,
                     max_version=max_version, compat=compat)


# -- VACUUM ---------------------------------------------------------------------------------
_V = "pg_stat_progress_vacuum"
_VL = ("datname", "relname")
# PostgreSQL 17 counts dead item identifiers (num_dead_item_ids) where 16 counted dead
# tuples: the same thing under a new name, served under postgres_exporter's on every major.
NUM_DEAD = MetricDef(f"{_V}_num_dead_tuples", "gauge",
                     "Dead tuples (dead item identifiers from PostgreSQL 17) collected since the last index "
                     "vacuum cycle.", _VL, source=_V, compat=True)
VACUUM = Command(
    name="vacuum", view="vacuum", labels=_VL,
    phase=_m(f"{_V}_phase", "Current phase of this VACUUM: 1 for the phase it is in, 0 for the others.",
             (*_VL, "phase"), _V, compat=True),
    # PostgreSQL documentation, VACUUM Progress Reporting, "VACUUM Phases".
    phases=("initializing", "scanning heap", "vacuuming indexes", "vacuuming heap", "cleaning up indexes",
            "truncating heap", "performing final cleanup"),
    columns=(
        Column("p.heap_blks_total", _m(f"{_V}_heap_blks", "Heap blocks of the table being vacuumed.", _VL, _V,
                                       compat=True)),
        Column("p.heap_blks_scanned", _m(f"{_V}_heap_blks_scanned", "Heap blocks scanned so far.", _VL, _V,
                                         compat=True)),
        Column("p.heap_blks_vacuumed", _m(f"{_V}_heap_blks_vacuumed", "Heap blocks vacuumed so far.", _VL, _V,
                                          compat=True)),
        Column("p.index_vacuum_count", _m(f"{_V}_index_vacuums", "Completed index vacuum cycles.", _VL, _V,
                                          compat=True)),
        Column("p.max_dead_tuples", _m(f"{_V}_max_dead_tuples",
                                       "Dead tuples that fit in memory before an index vacuum cycle is needed "
                                       "(PostgreSQL 16 and older).", _VL, _V, max_version=170000, compat=True)),
        Column("p.num_dead_tuples", NUM_DEAD, until=170000),
        Column("p.max_dead_tuple_bytes", _m(f"{_V}_max_dead_tuple_bytes",
                                            "Memory for dead items before an index vacuum cycle is needed, in "
                                            "bytes.", _VL, _V, min_version=170000)),
        Column("p.dead_tuple_bytes", _m(f"{_V}_dead_tuple_bytes",
                                        "Memory used by dead items collected since the last index vacuum cycle, "
                                        "in bytes.", _VL, _V, min_version=170000)),
        Column("p.num_dead_item_ids", NUM_DEAD, since=170000),
        Column("p.indexes_total", _m(f"{_V}_indexes", "Indexes to vacuum or clean up in the current phase.",
                                     _VL, _V, min_version=170000)),
        Column("p.indexes_processed", _m(f"{_V}_indexes_processed",
                                         "Indexes vacuumed or cleaned up so far in the current phase.",
                                         _VL, _V, min_version=170000)),
        Column("p.delay_time", _m(f"{_V}_delay_seconds",
                                  "Time slept in cost-based delays (vacuum_cost_delay), in seconds; 0 unless "
                                  "track_cost_delay_timing is on.", _VL, _V, min_version=180000), scale=0.001),
    ),
    elapsed=_m(f"{_V}_elapsed_seconds",
               "Time since this VACUUM began on its table, in seconds; kind is manual, autovacuum or wraparound.",
               (*_VL, "kind"), f"{_V}, pg_stat_activity"),
    select=f"{_RELATION}, ",
)

# -- ANALYZE --------------------------------------------------------------------------------
_A = "pg_stat_progress_analyze"
ANALYZE = Command(
    name="analyze", view="analyze", labels=_VL,
    phase=_m(f"{_A}_phase", "Current phase of this ANALYZE: 1 for the phase it is in, 0 for the others.",
             (*_VL, "phase"), _A),
    # PostgreSQL documentation, ANALYZE Progress Reporting, "ANALYZE Phases".
    phases=("initializing", "acquiring sample rows", "acquiring inherited sample rows", "computing statistics",
            "computing extended statistics", "finalizing analyze"),
    columns=(
        Column("p.sample_blks_total", _m(f"{_A}_sample_blks", "Heap blocks to sample.", _VL, _A)),
        Column("p.sample_blks_scanned", _m(f"{_A}_sample_blks_scanned", "Heap blocks sampled so far.", _VL, _A)),
        Column("p.ext_stats_total", _m(f"{_A}_ext_stats", "Extended statistics to compute.", _VL, _A)),
        Column("p.ext_stats_computed", _m(f"{_A}_ext_stats_computed", "Extended statistics computed so far.",
                                          _VL, _A)),
        Column("p.child_tables_total", _m(f"{_A}_child_tables", "Child tables to process.", _VL, _A)),
        Column("p.child_tables_done", _m(f"{_A}_child_tables_done", "Child tables processed so far.", _VL, _A)),
        Column("p.delay_time", _m(f"{_A}_delay_seconds",
                                  "Time slept in cost-based delays, in seconds; 0 unless track_cost_delay_timing "
                                  "is on.", _VL, _A, min_version=180000), scale=0.001),
    ),
    elapsed=_m(f"{_A}_elapsed_seconds",
               "Time since this ANALYZE began, in seconds; kind is manual or autovacuum.", (*_VL, "kind"),
               f"{_A}, pg_stat_activity"),
    select=f"{_RELATION}, ",
)

# -- CREATE INDEX / REINDEX -----------------------------------------------------------------
_C = "pg_stat_progress_create_index"
# Several CREATE INDEX may build on one table at once (they take SHARE locks, which do not
# conflict), and index_relid is 0 until the index exists: the process ID tells them apart.
_CL = ("datname", "relname", "indexrelname", "pid")
CREATE_INDEX = Command(
    name="create_index", view="create_index", labels=_CL,
    phase=_m(f"{_C}_phase",
             "Current phase of this CREATE INDEX or REINDEX (value 1); command says which, and CONCURRENTLY.",
             (*_CL, "command", "phase"), _C),
    phases=(),  # "building index" has access-method-specific sub-phases
    columns=(
        Column("p.lockers_total", _m(f"{_C}_lockers", "Lockers to wait for, when waiting.", _CL, _C)),
        Column("p.lockers_done", _m(f"{_C}_lockers_done", "Lockers already waited for.", _CL, _C)),
        Column("p.blocks_total", _m(f"{_C}_blocks", "Blocks to process in the current phase.", _CL, _C)),
        Column("p.blocks_done", _m(f"{_C}_blocks_done", "Blocks processed so far in the current phase.", _CL, _C)),
        Column("p.tuples_total", _m(f"{_C}_tuples", "Tuples to process in the current phase.", _CL, _C)),
        Column("p.tuples_done", _m(f"{_C}_tuples_done", "Tuples processed so far in the current phase.", _CL, _C)),
        Column("p.partitions_total", _m(f"{_C}_partitions", "Partitions to build (partitioned tables).", _CL, _C)),
        Column("p.partitions_done", _m(f"{_C}_partitions_done", "Partitions built so far.", _CL, _C)),
    ),
    elapsed=_m(f"{_C}_elapsed_seconds", "Time since this CREATE INDEX or REINDEX began, in seconds.", _CL,
               f"{_C}, pg_stat_activity"),
    select=f"{_RELATION}, {_INDEX}, ",
)

# -- BASE BACKUP ----------------------------------------------------------------------------
_B = "pg_stat_progress_basebackup"
_BL = ("pid",)
BASEBACKUP = Command(
    name="basebackup", view="basebackup", labels=_BL,
    phase=_m(f"{_B}_phase", "Current phase of this base backup: 1 for the phase it is in, 0 for the others.",
             (*_BL, "phase"), _B),
    # PostgreSQL documentation, Base Backup Progress Reporting, "Base Backup Phases".
    phases=("initializing", "waiting for checkpoint to finish", "estimating backup size", "streaming database files",
            "waiting for wal archiving to finish", "transferring wal files"),
    columns=(
        Column("p.backup_total", _m(f"{_B}_backup_bytes",
                                    "Data to stream, in bytes; no sample when the size is not estimated.", _BL, _B)),
        Column("p.backup_streamed", _m(f"{_B}_streamed_bytes", "Data streamed so far, in bytes.", _BL, _B)),
        Column("p.tablespaces_total", _m(f"{_B}_tablespaces", "Tablespaces to stream.", _BL, _B)),
        Column("p.tablespaces_streamed", _m(f"{_B}_tablespaces_streamed", "Tablespaces streamed so far.", _BL, _B)),
    ),
    elapsed=_m(f"{_B}_elapsed_seconds", "Time since this base backup began, in seconds.", _BL,
               f"{_B}, pg_stat_activity"),
)

COMMANDS: tuple[Command, ...] = (VACUUM, ANALYZE, CREATE_INDEX, BASEBACKUP)

OPERATIONS = MetricDef("pgperf_progress_operations", "gauge",
                       "Operations of this command in progress (vacuum, analyze, create_index, basebackup).",
                       ("command",), source="pg_stat_progress_*")
TRUNCATED = MetricDef("pgperf_progress_truncated", "gauge",
                      "1 when more operations of this command are in progress than collectors.progress.limit "
                      "and only the longest running are served, else 0.", ("command",), source="pg_stat_progress_*")


def _labels(command: Command, row: dict[str, Any]) -> tuple[str, ...]:
    return tuple("" if row[k] is None else str(row[k]) for k in command.labels)


def command_families(command: Command, rows: Sequence[dict[str, Any]], version: int) -> list[Family]:
    """The families of one progress view from its rows (columns ``c0``, ``c1``... in the
    order of ``command.columns`` that exist on *version*). Rows whose labels repeat one
    already served (relations hidden from an unprivileged role have no name) are left out."""
    seen: set[tuple[str, ...]] = set()
    kept: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    for row in rows:
        labels = _labels(command, row)
        if labels not in seen:
            seen.add(labels)
            kept.append((labels, row))
    phase: list[tuple[tuple[str, ...], int]] = []
    for labels, row in kept:
        current = row["phase"] or ""
        extra = (row["command"] or "",) if "command" in command.phase.labels else ()
        for name in (command.phases if current in command.phases else (*command.phases, current)):
            phase.append(((*labels, *extra, name), 1 if name == current else 0))
    out = [command.phase.family(phase)]
    present = [c for c in command.columns if c.exists_on(version)]
    for i, column in enumerate(present):
        out.append(column.metric.family(
            (labels, None if row[f"c{i}"] is None else row[f"c{i}"] * column.scale) for labels, row in kept))
    with_kind = "kind" in command.elapsed.labels
    out.append(command.elapsed.family(
        ((*labels, row["kind"]) if with_kind else labels, None if row["elapsed"] is None else max(0.0, row["elapsed"]))
        for labels, row in kept))
    return out


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None and ctx.server is not None
    options: ProgressOptions = ctx.options
    version = ctx.server.version_num
    families: list[Family] = []
    totals: list[tuple[str, int]] = []
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        for command in COMMANDS:
            rows: list[dict[str, Any]] = cur.execute(command.sql(version), {"limit": options.limit}).fetchall()
            families += command_families(command, rows, version)
            totals.append((command.name, int(rows[0]["total"]) if rows else 0))
    families.append(OPERATIONS.family(((name,), n) for name, n in totals))
    families.append(TRUNCATED.family(((name,), 1 if n > options.limit else 0) for name, n in totals))
    return CollectorResult(tuple(families))


def _metrics(commands: Iterable[Command]) -> tuple[MetricDef, ...]:
    found = [m for c in commands for m in (c.phase, *(col.metric for col in c.columns), c.elapsed)]
    return tuple(dict.fromkeys(found))  # a family read from two columns (by version) once


SPEC = CollectorSpec(
    name="progress",
    description="pg_stat_progress_vacuum, _analyze, _create_index and _basebackup: phase, blocks, tuples "
    "and bytes done of every operation under way, and how long it has run (at most `limit` per command).",
    collect=collect,
    metrics=(*_metrics(COMMANDS), OPERATIONS, TRUNCATED),
    options=ProgressOptions,
)
