"""pg_locks: locks held and awaited per database and mode, sessions blocked by others.

``pg_locks_count{datname,mode}`` keeps postgres_exporter's name, labels and lower-case
mode names, with a zero sample for every database and mode so series never vanish.
Blocked sessions are those waiting for a heavyweight lock that ``pg_blocking_pids()``
says another session holds or awaits ahead of them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, MetricDef

# The table-level lock modes, in postgres_exporter's spelling (lower-case pg_locks.mode).
MODES = (
    "accesssharelock",
    "rowsharelock",
    "rowexclusivelock",
    "shareupdateexclusivelock",
    "sharelock",
    "sharerowexclusivelock",
    "exclusivelock",
    "accessexclusivelock",
    "sireadlock",
)

COUNT_SQL = """
SELECT d.datname, lower(l.mode) AS mode, count(*) AS locks
FROM pg_locks l JOIN pg_database d ON d.oid = l.database
GROUP BY 1, 2
"""
DATABASES_SQL = "SELECT datname FROM pg_database"

# pg_blocking_pids() needs the lock manager's partition locks for a moment ("frequent
# calls ... could have some impact on database performance", PostgreSQL documentation,
# System Information Functions): it is only called for sessions already waiting on a lock.
# pg_locks.waitstart (14+) is when the wait began; on 13 the start of the statement is
# the closest bound available.
BLOCKED_SQL = """
SELECT a.datname, count(*) AS blocked,
       max(extract(epoch FROM now() - {wait_start}))::float8 AS longest_wait
FROM pg_stat_activity a
WHERE a.wait_event_type = 'Lock' AND a.datname IS NOT NULL
  AND cardinality(pg_blocking_pids(a.pid)) > 0
GROUP BY 1
"""
_WAITSTART_14 = "COALESCE((SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted), a.query_start)"
_WAITSTART_13 = "a.query_start"

COUNT = MetricDef(
    "pg_locks_count", "gauge", "Number of locks held or awaited in this database, by lock mode.",
    ("datname", "mode"), source="pg_locks", compat=True,
)
BLOCKED = MetricDef(
    "pg_locks_blocked_sessions", "gauge",
    "Sessions of this database waiting for a lock held (or awaited first) by another session.",
    ("datname",), source="pg_stat_activity, pg_blocking_pids()",
)
LONGEST = MetricDef(
    "pg_locks_longest_wait_seconds", "gauge",
    "How long the session of this database blocked the longest has been waiting for its lock, in "
    "seconds (PostgreSQL 13: since the start of its statement, an upper bound).",
    ("datname",), source="pg_stat_activity, pg_locks",
)


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None and ctx.server is not None
    wait_start = _WAITSTART_14 if ctx.server.version_num >= 140000 else _WAITSTART_13
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        databases = [r["datname"] for r in cur.execute(DATABASES_SQL).fetchall()]
        counts = cur.execute(COUNT_SQL).fetchall()
        blocked = cur.execute(BLOCKED_SQL.format(wait_start=wait_start)).fetchall()
    by_key: dict[tuple[str, str], int] = {(d, m): 0 for d in databases for m in MODES}
    for r in counts:
        by_key[(r["datname"], r["mode"])] = by_key.get((r["datname"], r["mode"]), 0) + r["locks"]
    waits: dict[str, tuple[int, float]] = defaultdict(lambda: (0, 0.0))
    for r in blocked:
        waits[r["datname"]] = (r["blocked"], max(0.0, r["longest_wait"] or 0.0))

    def per_db(i: int) -> list[tuple[tuple[str], Any]]:
        return [((d,), waits[d][i] if d in waits else 0) for d in databases]

    families = (
        COUNT.family(sorted(by_key.items())),
        BLOCKED.family(per_db(0)),
        LONGEST.family(per_db(1)),
    )
    return CollectorResult(families)


SPEC = CollectorSpec(
    name="locks",
    description="pg_locks: locks per database and mode, sessions blocked by another session "
    "(pg_blocking_pids) and the longest lock wait.",
    collect=collect,
    metrics=(COUNT, BLOCKED, LONGEST),
)
