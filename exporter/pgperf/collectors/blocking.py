"""pg_blocking_pids(): the blocking tree of heavyweight lock waits.

Every session waiting for a lock (``wait_event_type = 'Lock'``) is asked which sessions
block it; those form a forest whose roots are blockers that wait for nothing themselves.
The root is what a DBA looks for: the session to commit, cancel or terminate. Served per
database, with a zero sample for every database so series never vanish:

* blocked sessions (by the database of the blocked session), root blockers and how many
  of them are idle (in a transaction, or a prepared transaction) — the application forgot
  to commit;
* the age of the oldest root blocker's transaction (how long it may have been blocking),
  the depth of the longest chain (1: sessions blocked directly by the root) and the most
  sessions waiting behind one root.

A lock held by a prepared transaction is reported by ``pg_blocking_pids()`` as process ID 0
(PostgreSQL documentation, System Information Functions); such a root counts as idle, its
age is that of the oldest prepared transaction and its database that of the first session
it blocks. ``pg_blocking_pids()`` takes the lock manager's partition locks briefly: it is
only called for sessions already waiting on a lock. Sessions that block each other in a
cycle (a deadlock the server has not detected yet, ``deadlock_timeout``) count as blocked
but form no tree.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, Family, MetricDef

# One statement: pg_stat_activity is read once per transaction, so waiting sessions and
# their blockers come from the same snapshot of the server's sessions.
SQL = """
WITH waiting AS MATERIALIZED (
  SELECT pid, pg_blocking_pids(pid) AS blocked_by
  FROM pg_stat_activity
  WHERE wait_event_type = 'Lock'
)
SELECT a.pid, COALESCE(a.datname, '') AS datname, a.state,
       extract(epoch FROM now() - COALESCE(a.xact_start, a.state_change, a.backend_start))::float8 AS age,
       w.blocked_by
FROM pg_stat_activity a
LEFT JOIN waiting w ON w.pid = a.pid
WHERE w.pid IS NOT NULL OR a.pid IN (SELECT unnest(blocked_by) FROM waiting)
"""
PREPARED_SQL = "SELECT extract(epoch FROM now() - min(prepared))::float8 AS age FROM pg_prepared_xacts"
DATABASES_SQL = "SELECT datname FROM pg_database ORDER BY datname"

_S = "pg_blocking_pids()"
_L = ("datname",)
BLOCKED = MetricDef("pg_blocking_blocked_sessions", "gauge",
                    "Sessions of this database waiting for a lock held or awaited first by another session.",
                    _L, source=_S)
ROOTS = MetricDef("pg_blocking_root_blockers", "gauge",
                  "Sessions of this database blocking others while waiting for no lock themselves (roots of "
                  "blocking trees).", _L, source=_S)
IDLE_ROOTS = MetricDef("pg_blocking_idle_root_blockers", "gauge",
                       "Root blockers of this database that run nothing: idle in a transaction, or a prepared "
                       "transaction.", _L, source=_S)
ROOT_AGE = MetricDef("pg_blocking_root_blocker_age_seconds", "gauge",
                     "Age of the transaction of the oldest root blocker of this database, in seconds; 0 when "
                     "none.", _L, source=f"{_S}, pg_stat_activity")
DEPTH = MetricDef("pg_blocking_chain_depth", "gauge",
                  "Length of the longest chain of sessions waiting behind a root blocker of this database "
                  "(1: blocked by the root directly); 0 when none.", _L, source=_S)
TREE = MetricDef("pg_blocking_max_tree_sessions", "gauge",
                 "Most sessions waiting, directly or not, behind one root blocker of this database; 0 when none.",
                 _L, source=_S)

_IDLE_STATES = frozenset({"idle in transaction", "idle in transaction (aborted)", "prepared transaction"})


@dataclass(frozen=True, slots=True)
class Session:
    """One session of the blocking graph."""

    pid: int
    datname: str
    state: str
    age: float | None
    blocked_by: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Tree:
    """The sessions waiting behind one root blocker."""

    root: Session
    depth: int
    sessions: int


def trees(sessions: Mapping[int, Session]) -> tuple[list[Tree], list[Session]]:
    """The blocking trees of *sessions* (each rooted in a blocker that waits for nothing),
    and the blocked sessions. A blocker missing from *sessions* (it ended meanwhile) is no root."""
    blocked = [s for s in sessions.values() if s.blocked_by]
    waiters: dict[int, list[int]] = defaultdict(list)
    for s in blocked:
        for blocker in s.blocked_by:
            waiters[blocker].append(s.pid)
    out = []
    for pid in sorted(waiters):
        root = sessions.get(pid)
        if root is None or root.blocked_by:
            continue
        # Breadth first: a session's depth is its shortest distance from the root; the
        # visited set ends cycles among the waiters.
        depth, seen, queue = 0, {pid}, deque([(pid, 0)])
        while queue:
            node, level = queue.popleft()
            depth = max(depth, level)
            for waiter in waiters.get(node, ()):
                if waiter not in seen:
                    seen.add(waiter)
                    queue.append((waiter, level + 1))
        out.append(Tree(root, depth, len(seen) - 1))
    return out, blocked


def families(sessions: Mapping[int, Session], databases: Iterable[str]) -> tuple[Family, ...]:
    """The families for the blocking graph *sessions*, with a zero sample for every database."""
    found, blocked = trees(sessions)
    zero: dict[str, float] = dict.fromkeys(databases, 0.0)
    per: dict[str, dict[str, float]] = {key: dict(zero) for key in ("blocked", "roots", "idle", "age", "depth", "tree")}
    for s in blocked:
        per["blocked"][s.datname] = per["blocked"].get(s.datname, 0) + 1
    for t in found:
        db = t.root.datname
        per["roots"][db] = per["roots"].get(db, 0) + 1
        per["idle"][db] = per["idle"].get(db, 0) + (1 if t.root.state in _IDLE_STATES else 0)
        per["age"][db] = max(per["age"].get(db, 0.0), t.root.age or 0.0)
        per["depth"][db] = max(per["depth"].get(db, 0.0), t.depth)
        per["tree"][db] = max(per["tree"].get(db, 0.0), t.sessions)

    def family(metric: MetricDef, key: str) -> Family:
        return metric.family(((db,), value) for db, value in sorted(per[key].items()))

    return (family(BLOCKED, "blocked"), family(ROOTS, "roots"), family(IDLE_ROOTS, "idle"),
            family(ROOT_AGE, "age"), family(DEPTH, "depth"), family(TREE, "tree"))


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        rows: list[dict[str, Any]] = cur.execute(SQL).fetchall()
        databases = [r["datname"] for r in cur.execute(DATABASES_SQL).fetchall()]
        sessions = {
            r["pid"]: Session(r["pid"], r["datname"], r["state"] or "", max(0.0, r["age"] or 0.0),
                              tuple(r["blocked_by"] or ()))
            for r in rows
        }
        if any(0 in s.blocked_by for s in sessions.values()):
            row: Any = cur.execute(PREPARED_SQL).fetchone()
            first = next(s for s in sessions.values() if 0 in s.blocked_by)
            age = row["age"] if row is not None else None
            sessions[0] = Session(0, first.datname, "prepared transaction", max(0.0, age or 0.0), ())
    return CollectorResult(families(sessions, databases))


SPEC = CollectorSpec(
    name="blocking",
    description="pg_blocking_pids(): the blocking tree of lock waits per database — blocked sessions, "
    "root blockers (and idle ones), the oldest root blocker's transaction age, the longest chain and "
    "the largest tree.",
    collect=collect,
    metrics=(BLOCKED, ROOTS, IDLE_ROOTS, ROOT_AGE, DEPTH, TREE),
)
