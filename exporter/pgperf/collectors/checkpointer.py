"""Checkpoints: pg_stat_checkpointer (PostgreSQL 17+) or the checkpoint columns of
pg_stat_bgwriter (13 to 16).

PostgreSQL 17 moved the checkpoint statistics out of ``pg_stat_bgwriter`` into the new
``pg_stat_checkpointer`` view, renaming them (``checkpoints_timed`` became ``num_timed``,
``buffers_checkpoint`` became ``buffers_written`` ...). So that dashboards and alert rules
keep working across an upgrade, the five postgres_exporter families
``pg_stat_bgwriter_checkpoints_timed_total`` ... ``pg_stat_bgwriter_buffers_checkpoint_total``
are served on every version, read from whichever view holds them; on 17+ the
``pg_stat_checkpointer_*`` families (postgres_exporter's names too) come in addition,
with the restartpoint counters that have no older equivalent. Times stay in
milliseconds, as in the view and in postgres_exporter.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, Family, MetricDef

_V17 = 170000
_V18 = 180000
BGWRITER_SQL = """
SELECT checkpoints_timed, checkpoints_req, checkpoint_write_time, checkpoint_sync_time,
       buffers_checkpoint
FROM pg_stat_bgwriter
"""
CHECKPOINTER_SQL = "SELECT * FROM pg_stat_checkpointer"

_B = "pg_stat_bgwriter"
_C = "pg_stat_checkpointer"
_SOURCE = "pg_stat_bgwriter (≤ 16), pg_stat_checkpointer (17+)"

# Old family -> (pg_stat_bgwriter column up to 16, pg_stat_checkpointer column from 17, help).
_COMPAT: dict[str, tuple[str, str, str]] = {
    "checkpoints_timed": ("checkpoints_timed", "num_timed", "Number of scheduled checkpoints (checkpoint_timeout elapsed)."),
    "checkpoints_req": ("checkpoints_req", "num_requested", "Number of requested checkpoints (max_wal_size reached, CHECKPOINT, ...)."),
    "checkpoint_write_time": ("checkpoint_write_time", "write_time", "Time spent writing files to disk during checkpoints, in milliseconds."),
    "checkpoint_sync_time": ("checkpoint_sync_time", "sync_time", "Time spent synchronizing files to disk during checkpoints, in milliseconds."),
    "buffers_checkpoint": ("buffers_checkpoint", "buffers_written", "Number of buffers written during checkpoints."),
}
COMPAT_METRICS: dict[str, MetricDef] = {
    name: MetricDef(f"{_B}_{name}_total", "counter", help_text, source=_SOURCE, compat=True)
    for name, (_, _, help_text) in _COMPAT.items()
}

# pg_stat_checkpointer column -> (help, min server version). See "pg_stat_checkpointer"
# in the PostgreSQL documentation. On a standby the restartpoint counters move instead of
# the checkpoint ones.
_CHECKPOINTER: dict[str, tuple[str, int]] = {
    "num_timed": ("Number of scheduled checkpoints due to timeout.", _V17),
    "num_requested": ("Number of requested checkpoints.", _V17),
    "num_done": ("Number of checkpoints that have been performed (PostgreSQL 18+).", _V18),
    "restartpoints_timed": ("Number of scheduled restartpoints due to timeout or after a failed attempt.", _V17),
    "restartpoints_req": ("Number of requested restartpoints.", _V17),
    "restartpoints_done": ("Number of restartpoints that have been performed.", _V17),
    "write_time": ("Time spent writing files to disk during checkpoints and restartpoints, in milliseconds.", _V17),
    "sync_time": ("Time spent synchronizing files to disk during checkpoints and restartpoints, in milliseconds.", _V17),
    "buffers_written": ("Number of shared buffers written during checkpoints and restartpoints.", _V17),
    "slru_written": ("Number of SLRU buffers written during checkpoints and restartpoints (PostgreSQL 18+).", _V18),
}
CHECKPOINTER_METRICS: dict[str, MetricDef] = {
    column: MetricDef(f"{_C}_{column}_total", "counter", help_text, source=_C, min_version=since, compat=True)
    for column, (help_text, since) in _CHECKPOINTER.items()
}
CHECKPOINTER_RESET = MetricDef(
    f"{_C}_stats_reset_total", "counter",
    "Time at which the checkpointer statistics were last reset, in seconds since the epoch.",
    source=_C, min_version=_V17, compat=True,
)


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None and ctx.server is not None
    families: list[Family] = []
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        if ctx.server.version_num >= _V17:
            row: Any = cur.execute(CHECKPOINTER_SQL).fetchone()
            assert row is not None
            families += [COMPAT_METRICS[name].single(row.get(new)) for name, (_, new, _) in _COMPAT.items()]
            families += [m.single(row[c]) for c, m in CHECKPOINTER_METRICS.items() if c in row]
            reset = row.get("stats_reset")
            families.append(CHECKPOINTER_RESET.single(reset.timestamp() if reset else None))
        else:
            row = cur.execute(BGWRITER_SQL).fetchone()
            assert row is not None
            families += [COMPAT_METRICS[name].single(row[old]) for name, (old, _, _) in _COMPAT.items()]
    return CollectorResult(tuple(families))


SPEC = CollectorSpec(
    name="checkpointer",
    description="Checkpoints and restartpoints: requested and timed, write and sync time, buffers "
    "written. `pg_stat_bgwriter_checkpoint*` names on every version (from pg_stat_checkpointer on "
    "17+), `pg_stat_checkpointer_*` on 17+.",
    collect=collect,
    metrics=(*COMPAT_METRICS.values(), *CHECKPOINTER_METRICS.values(), CHECKPOINTER_RESET),
)
