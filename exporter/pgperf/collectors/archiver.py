"""pg_stat_archiver: WAL archiving progress and failures.

Names are postgres_exporter's. ``pg_stat_archiver_last_archive_age`` has no sample while
nothing was ever archived (``last_archived_time`` is NULL), for example with
``archive_mode = off``: an alert on its value then stays silent instead of firing on a
made-up age. ``pg_stat_archiver_archiving`` says whether archiving is configured at all.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, MetricDef

SQL = """
SELECT archived_count, failed_count,
       extract(epoch FROM now() - last_archived_time)::float8 AS last_archive_age,
       extract(epoch FROM now() - last_failed_time)::float8 AS last_failure_age,
       extract(epoch FROM stats_reset)::float8 AS stats_reset,
       current_setting('archive_mode') <> 'off' AS archiving
FROM pg_stat_archiver
"""
_S = "pg_stat_archiver"

ARCHIVED = MetricDef(f"{_S}_archived_count", "counter", "Number of WAL files successfully archived.",
                     source=_S, compat=True)
FAILED = MetricDef(f"{_S}_failed_count", "counter", "Number of failed attempts to archive WAL files.",
                   source=_S, compat=True)
LAST_AGE = MetricDef(f"{_S}_last_archive_age", "gauge",
                     "Time since the last WAL file was successfully archived, in seconds; no sample if none ever was.",
                     source=_S, compat=True)
LAST_FAILURE_AGE = MetricDef(f"{_S}_last_failure_age_seconds", "gauge",
                             "Time since the last failed archiving attempt, in seconds; no sample if none ever failed.",
                             source=_S)
ARCHIVING = MetricDef(f"{_S}_archiving", "gauge", "1 when archive_mode is on (or always), else 0.",
                      source="pg_settings")
RESET = MetricDef(f"{_S}_stats_reset_timestamp_seconds", "gauge",
                  "Time at which the archiver statistics were last reset, in seconds since the epoch.", source=_S)


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        row: Any = cur.execute(SQL).fetchone()
    assert row is not None
    families = (
        ARCHIVED.single(row["archived_count"]),
        FAILED.single(row["failed_count"]),
        LAST_AGE.single(None if row["last_archive_age"] is None else max(0.0, row["last_archive_age"])),
        LAST_FAILURE_AGE.single(None if row["last_failure_age"] is None else max(0.0, row["last_failure_age"])),
        ARCHIVING.single(1 if row["archiving"] else 0),
        RESET.single(row["stats_reset"]),
    )
    return CollectorResult(families)


SPEC = CollectorSpec(
    name="archiver",
    description="pg_stat_archiver: WAL files archived and failed, time since the last success and failure.",
    collect=collect,
    metrics=(ARCHIVED, FAILED, LAST_AGE, LAST_FAILURE_AGE, ARCHIVING, RESET),
)
