"""pg_stat_io (PostgreSQL 16+): I/O by backend type, object and context.

One row per backend type (client backend, autovacuum worker, checkpointer...), object
(``relation``, ``temp relation``; ``wal`` from 18) and context (``normal``, ``vacuum``,
``bulkread``, ``bulkwrite``; ``init`` for WAL): at most a few dozen rows, each served as
counters. A NULL cell means the operation cannot happen in that combination (PostgreSQL
documentation, pg_stat_io): no sample. Byte counters are ``reads × op_bytes`` up to 17 and
the ``*_bytes`` columns from 18, which dropped ``op_bytes``. Times are only counted with
``track_io_timing`` on (``track_wal_io_timing`` for WAL), and are 0 otherwise.

On PostgreSQL 13 to 15 the collector succeeds and serves nothing: an older server is not a
fault (a disabled collector would keep the PgperfCollectorDisabled alert firing on every
such server).
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, MetricDef

_S = "pg_stat_io"
_L = ("backend_type", "object", "context")
_PG16 = 160000

# column (or expression) -> (family suffix, help); all counters.
_COUNTERS: dict[str, tuple[str, str]] = {
    "reads": ("reads_total", "Read operations."),
    "read_bytes": ("read_bytes_total", "Data read, in bytes."),
    "read_time": ("read_time_seconds_total", "Time spent in read operations, in seconds (track_io_timing)."),
    "writes": ("writes_total", "Write operations."),
    "write_bytes": ("write_bytes_total", "Data written, in bytes."),
    "write_time": ("write_time_seconds_total", "Time spent in write operations, in seconds (track_io_timing)."),
    "writebacks": ("writebacks_total", "Requests to the kernel to write data to permanent storage."),
    "writeback_time": ("writeback_time_seconds_total", "Time spent in writeback operations, in seconds (track_io_timing)."),
    "extends": ("extends_total", "Relation extend operations."),
    "extend_bytes": ("extend_bytes_total", "Data added by relation extends, in bytes."),
    "extend_time": ("extend_time_seconds_total", "Time spent in extend operations, in seconds (track_io_timing)."),
    "hits": ("hits_total", "Times a wanted block was found in a shared buffer."),
    "evictions": ("evictions_total", "Times a block was written out or dropped to free a buffer for another use."),
    "reuses": ("reuses_total", "Times a buffer of a size-limited ring buffer (bulk reads, bulk writes, vacuum) was reused."),
    "fsyncs": ("fsyncs_total", "fsync calls (only those made by this backend type, not passed to the checkpointer)."),
    "fsync_time": ("fsync_time_seconds_total", "Time spent in fsync operations, in seconds (track_io_timing)."),
}
# PostgreSQL 16 and 17 give an operation size; 18 gives the bytes themselves.
_BYTES_17 = {"read_bytes": "reads * op_bytes", "write_bytes": "writes * op_bytes", "extend_bytes": "extends * op_bytes"}
_TIMES = frozenset(c for c in _COUNTERS if c.endswith("_time"))  # milliseconds in the view

COUNTERS: dict[str, MetricDef] = {
    column: MetricDef(f"{_S}_{suffix}", "counter", help_text, _L, source=_S, min_version=_PG16)
    for column, (suffix, help_text) in _COUNTERS.items()
}
RESET = MetricDef(f"{_S}_stats_reset_timestamp_seconds", "gauge",
                  "Time at which the I/O statistics were last reset, in seconds since the epoch.",
                  source=_S, min_version=_PG16)


def query(version: int) -> str:
    """The query for server *version* (server_version_num)."""
    columns = [f"{_BYTES_17[c]} AS {c}" if version < 180000 and c in _BYTES_17 else c for c in _COUNTERS]
    return (f"SELECT backend_type, object, context, {', '.join(columns)}, "
            f"extract(epoch FROM stats_reset)::float8 AS stats_reset FROM {_S} ORDER BY 1, 2, 3")


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None and ctx.server is not None
    if ctx.server.version_num < _PG16:
        return CollectorResult(())
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        rows: list[dict[str, Any]] = cur.execute(query(ctx.server.version_num)).fetchall()
    families = []
    for column, metric in COUNTERS.items():
        scale = 0.001 if column in _TIMES else 1.0
        families.append(metric.family(
            ((r["backend_type"], r["object"], r["context"]), None if r[column] is None else float(r[column]) * scale)
            for r in rows
        ))
    resets = [r["stats_reset"] for r in rows if r["stats_reset"] is not None]
    families.append(RESET.single(max(resets) if resets else None))
    return CollectorResult(tuple(families))


SPEC = CollectorSpec(
    name="io",
    description="pg_stat_io (PostgreSQL 16+; nothing on older servers): reads, writes, extends, hits, evictions, reuses, fsyncs, "
    "their bytes and times, by backend type, object and context.",
    collect=collect,
    metrics=(*COUNTERS.values(), RESET),
)
