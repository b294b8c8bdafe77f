"""pg_stat_activity: what busy sessions are waiting for, by database and wait event.

A session counts when it is busy: a client backend running a statement (state
``active``) or a background process (no state) not parked in its main loop. Idle clients
(all waiting for ``Client: ClientRead``) and background processes waiting for work
(``Activity`` waits, "the server process is idle"; PostgreSQL documentation, Wait Event
Types) are left out: they would outnumber and hide the waits that matter. Busy sessions
without a wait event are running on a CPU (or in code PostgreSQL does not instrument) and
are counted in ``pg_wait_event_cpu_sessions``.

Series are bounded by the wait events PostgreSQL defines (a few hundred) times the
databases; a wait event with no session has no sample, so ``sum by (wait_event_type)``
is what dashboards plot. Background processes attached to no database have ``datname=""``.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, MetricDef

# pg_backend_pid(): pgperf's own session is busy running this very query.
SQL = """
SELECT COALESCE(datname, '') AS datname, wait_event_type, wait_event, count(*) AS sessions
FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
  AND (state = 'active' OR (state IS NULL AND backend_type <> 'client backend'))
  AND wait_event_type IS DISTINCT FROM 'Activity'
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
"""
DATABASES_SQL = "SELECT datname FROM pg_database ORDER BY datname"

SESSIONS = MetricDef(
    "pg_wait_event_sessions", "gauge",
    "Busy sessions (active client backends and working background processes) waiting for this "
    "wait event, by database.",
    ("datname", "wait_event_type", "wait_event"), source="pg_stat_activity",
)
CPU = MetricDef(
    "pg_wait_event_cpu_sessions", "gauge",
    "Busy sessions of this database waiting for no event: running on a CPU or in code PostgreSQL "
    "does not instrument.",
    ("datname",), source="pg_stat_activity",
)


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        rows: list[dict[str, Any]] = cur.execute(SQL).fetchall()
        databases = [r["datname"] for r in cur.execute(DATABASES_SQL).fetchall()]
    cpu: dict[str, int] = dict.fromkeys(databases, 0)
    waits = []
    for r in rows:
        if r["wait_event_type"] is None:
            cpu[r["datname"]] = cpu.get(r["datname"], 0) + r["sessions"]
        else:
            waits.append(((r["datname"], r["wait_event_type"], r["wait_event"]), r["sessions"]))
    return CollectorResult((SESSIONS.family(waits), CPU.family(((d,), n) for d, n in sorted(cpu.items()))))


SPEC = CollectorSpec(
    name="wait_events",
    description="pg_stat_activity: busy sessions by database and wait event type and name, and those "
    "waiting for nothing (on a CPU).",
    collect=collect,
    metrics=(SESSIONS, CPU),
)
