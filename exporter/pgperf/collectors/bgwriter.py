"""pg_stat_bgwriter: the background writer's buffer writes and allocations.

Names are postgres_exporter's (``pg_stat_bgwriter_<column>_total``). PostgreSQL 17 moved
the checkpoint columns of this view to ``pg_stat_checkpointer`` and dropped
``buffers_backend`` and ``buffers_backend_fsync`` (now in ``pg_stat_io``); the checkpoint
families, under their old names on every version, come from the ``checkpointer``
collector. Columns are mapped by name, so a column a server lacks is simply not served.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, MetricDef

SQL = "SELECT * FROM pg_stat_bgwriter"
_S = "pg_stat_bgwriter"
_V17 = 170000

# column -> (help, max server version (exclusive), 0 = still there).
# See "pg_stat_bgwriter" in the PostgreSQL documentation.
_COLUMNS: dict[str, tuple[str, int]] = {
    "buffers_clean": ("Number of buffers written by the background writer.", 0),
    "maxwritten_clean": ("Number of times the background writer stopped a cleaning scan because it had written too many buffers.", 0),
    "buffers_backend": ("Number of buffers written directly by a backend (PostgreSQL 16 and older; see pg_stat_io later).", _V17),
    "buffers_backend_fsync": ("Number of times a backend had to execute its own fsync call (PostgreSQL 16 and older).", _V17),
    "buffers_alloc": ("Number of buffers allocated.", 0),
}

METRICS: dict[str, MetricDef] = {
    column: MetricDef(f"{_S}_{column}_total", "counter", help_text, source=_S, max_version=until, compat=True)
    for column, (help_text, until) in _COLUMNS.items()
}
STATS_RESET = MetricDef(
    f"{_S}_stats_reset_total", "counter",
    "Time at which the background writer statistics were last reset, in seconds since the epoch.",
    source=_S, compat=True,
)


def _epoch(value: Any) -> float | None:
    return value.timestamp() if value is not None else None


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(SQL).fetchone()
    assert row is not None  # the view always has exactly one row
    families = [metric.single(row[column]) for column, metric in METRICS.items() if column in row]
    families.append(STATS_RESET.single(_epoch(row.get("stats_reset"))))
    return CollectorResult(tuple(families))


SPEC = CollectorSpec(
    name="bgwriter",
    description="pg_stat_bgwriter: buffers written by the background writer and by backends, "
    "buffers allocated. Checkpoint statistics are the `checkpointer` collector's.",
    collect=collect,
    metrics=(*METRICS.values(), STATS_RESET),
)
