"""WAL: generation statistics (pg_stat_wal, PostgreSQL 14+), the size of pg_wal, the
current WAL position.

``pg_wal_size_bytes``, ``pg_wal_segments`` and ``pg_wal_lsn_location_bytes`` are
postgres_exporter's names. ``pg_ls_waldir()`` is executable by superusers and
``pg_monitor`` members only: without it the collector is disabled with the reason
``insufficient_privilege`` (fix: ``GRANT pg_monitor``). PostgreSQL 18 moved the write and
sync counters of pg_stat_wal to pg_stat_io; they are served up to 17.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, Family, MetricDef

_V14 = 140000
_V18 = 180000
STAT_SQL = "SELECT * FROM pg_stat_wal"
# WAL segment files only (24 hexadecimal digits): not .history, .partial or .backup files.
DIR_SQL = """
SELECT count(*) AS segments, COALESCE(sum(size), 0) AS size
FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'
"""
LSN_SQL = """
SELECT pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                            ELSE pg_current_wal_lsn() END, '0/0')::float8 AS lsn
"""

_S = "pg_stat_wal"
# column -> (family, type, help, min version, max version (exclusive)).
# See "pg_stat_wal" in the PostgreSQL documentation. Times are milliseconds in the view.
_COLUMNS: dict[str, tuple[str, str, str, int, int]] = {
    "wal_records": ("records_total", "counter", "Total number of WAL records generated.", _V14, 0),
    "wal_fpi": ("fpi_total", "counter", "Total number of WAL full page images generated.", _V14, 0),
    "wal_bytes": ("bytes_total", "counter", "Total amount of WAL generated, in bytes.", _V14, 0),
    "wal_buffers_full": ("buffers_full_total", "counter", "Number of times WAL data was written to disk because WAL buffers became full.", _V14, 0),
    "wal_write": ("write_total", "counter", "Number of times WAL buffers were written out to disk (PostgreSQL 14 to 17).", _V14, _V18),
    "wal_sync": ("sync_total", "counter", "Number of times WAL files were synced to disk (PostgreSQL 14 to 17).", _V14, _V18),
    "wal_write_time": ("write_time_seconds_total", "counter", "Time spent writing WAL buffers to disk, in seconds (needs track_wal_io_timing; PostgreSQL 14 to 17).", _V14, _V18),
    "wal_sync_time": ("sync_time_seconds_total", "counter", "Time spent syncing WAL files to disk, in seconds (needs track_wal_io_timing; PostgreSQL 14 to 17).", _V14, _V18),
}
_MS = {"wal_write_time", "wal_sync_time"}

STAT_METRICS: dict[str, MetricDef] = {
    column: MetricDef(f"{_S}_{name}", kind, help_text, source=_S,  # type: ignore[arg-type]
                      min_version=since, max_version=until)
    for column, (name, kind, help_text, since, until) in _COLUMNS.items()
}
STATS_RESET = MetricDef(
    f"{_S}_stats_reset_timestamp_seconds", "gauge",
    "Time at which the WAL statistics were last reset, in seconds since the epoch.",
    source=_S, min_version=_V14,
)
SIZE = MetricDef("pg_wal_size_bytes", "gauge", "Total size of the WAL segment files in pg_wal, in bytes.",
                 source="pg_ls_waldir()", compat=True)
SEGMENTS = MetricDef("pg_wal_segments", "gauge", "Number of WAL segment files in pg_wal.",
                     source="pg_ls_waldir()", compat=True)
LSN = MetricDef(
    "pg_wal_lsn_location_bytes", "gauge",
    "Current WAL write position (replay position on a standby), in bytes since 0/0.",
    source="pg_current_wal_lsn(), pg_last_wal_replay_lsn()", compat=True,
)

# Legacy alias: the name of the WAL position query users added to postgres_exporter's query
# files, which rule packs still query.
XLOG_POSITION = MetricDef("pg_xlog_position_bytes", "gauge",
                          "Current WAL write position (replay position on a standby), in bytes since 0/0.",
                          source=LSN.source, alias_of=LSN.name)


def _scaled(column: str, value: Any) -> Any:
    if value is None:
        return None
    return float(value) / 1000.0 if column in _MS else value


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None and ctx.server is not None
    families: list[Family] = []
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        if ctx.server.version_num >= _V14:
            row: Any = cur.execute(STAT_SQL).fetchone()
            assert row is not None
            families += [m.single(_scaled(c, row[c])) for c, m in STAT_METRICS.items() if c in row]
            reset = row.get("stats_reset")
            families.append(STATS_RESET.single(reset.timestamp() if reset else None))
        lsn = cur.execute(LSN_SQL).fetchone()
        waldir = cur.execute(DIR_SQL).fetchone()
    assert lsn is not None and waldir is not None
    families += [
        SIZE.single(waldir["size"]),
        SEGMENTS.single(waldir["segments"]),
        LSN.single(lsn["lsn"]),
        XLOG_POSITION.single(lsn["lsn"]),
    ]
    return CollectorResult(tuple(families))


SPEC = CollectorSpec(
    name="wal",
    description="WAL: records, full page images, bytes and buffer-full events (pg_stat_wal, 14+), "
    "size and number of segment files in pg_wal (pg_ls_waldir, needs pg_monitor), current position.",
    collect=collect,
    metrics=(*STAT_METRICS.values(), STATS_RESET, SIZE, SEGMENTS, LSN, XLOG_POSITION),
)
