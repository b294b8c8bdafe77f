"""pg_stat_activity: sessions by database and state, connection utilization, the longest
transaction, long-running queries and sessions idle in a transaction.

``pg_stat_activity_count`` and ``pg_stat_activity_max_tx_duration`` keep
postgres_exporter 0.20's names and labels (``datname``, ``state``, ``usename``,
``application_name``, ``backend_type``, ``wait_event_type``, ``wait_event``), with a zero
sample for every database and state without sessions (the other labels empty), as it
serves them, so that series do not vanish when a state empties. Sessions attached to no
database, or in no state (background processes), are not counted there.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, MetricDef, Record

# One row per (database, state, backend type). Ages use now(), the statement's start in
# autocommit mode, so every age in one sample is measured from the same instant. Query and
# idle-in-transaction ages count client backends only: an autovacuum worker or a logical
# walsender is "active" for hours by design and would make every long-query alert fire.
SQL = """
SELECT datname, state, backend_type, COALESCE(usename::text, '') AS usename, application_name,
       COALESCE(wait_event_type, '') AS wait_event_type, COALESCE(wait_event, '') AS wait_event,
       count(*) AS sessions,
       max(extract(epoch FROM now() - xact_start))::float8 AS max_xact_age,
       max(extract(epoch FROM now() - query_start))
           FILTER (WHERE state = 'active' AND backend_type = 'client backend')::float8 AS max_query_age,
       max(extract(epoch FROM now() - state_change))
           FILTER (WHERE state LIKE 'idle in transaction%%')::float8 AS max_idle_xact_age,
       count(*) FILTER (WHERE state = 'active' AND backend_type = 'client backend'
                          AND now() - query_start > make_interval(secs => %(long)s)) AS long_running,
       count(*) FILTER (WHERE state LIKE 'idle in transaction%%'
                          AND now() - state_change > make_interval(secs => %(idle)s)) AS long_idle_xact,
       count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting_on_lock
FROM pg_stat_activity
GROUP BY 1, 2, 3, 4, 5, 6, 7
"""
DATABASES_SQL = "SELECT datname FROM pg_database"


@dataclass(frozen=True, slots=True)
class Connections(Record):
    """Client connections against max_connections, for the store's resource_metrics."""

    count: int  # client backends (what max_connections limits)
    max_connections: int
    utilization: float | None  # count / max_connections, 0 to 1

# The states postgres_exporter reports, each always present (0 when empty).
STATES = (
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
)

_SESSION = ("datname", "state", "usename", "application_name", "backend_type", "wait_event_type", "wait_event")
COUNT = MetricDef(
    "pg_stat_activity_count", "gauge",
    "Number of sessions in this database and state, by user, application, backend type and wait event.",
    _SESSION, source="pg_stat_activity", compat=True,
)
MAX_TX = MetricDef(
    "pg_stat_activity_max_tx_duration", "gauge",
    "Age of the oldest open transaction of these sessions, in seconds (0 when none is open).",
    _SESSION, source="pg_stat_activity", compat=True,
)
CLIENTS = MetricDef(
    "pg_stat_activity_client_connections", "gauge",
    "Number of client backends connected to the server (what max_connections limits).",
    source="pg_stat_activity",
)
UTILIZATION = MetricDef(
    "pg_stat_activity_connection_utilization_ratio", "gauge",
    "Client backends divided by max_connections (0 to 1).",
    source="pg_stat_activity, pg_settings",
)
AVAILABLE = MetricDef(
    "pg_stat_activity_connections_available", "gauge",
    "Connections still available to non-superusers: max_connections minus reserved "
    "connections minus client backends.",
    source="pg_stat_activity, pg_settings",
)
OLDEST_QUERY = MetricDef(
    "pg_stat_activity_oldest_query_age_seconds", "gauge",
    "Run time of the longest-running active client query in this database, in seconds.",
    ("datname",), source="pg_stat_activity",
)
OLDEST_IDLE_XACT = MetricDef(
    "pg_stat_activity_oldest_idle_in_transaction_age_seconds", "gauge",
    "Time the longest session idle in a transaction has been idle in this database, in seconds.",
    ("datname",), source="pg_stat_activity",
)
LONG_RUNNING = MetricDef(
    "pg_stat_activity_long_running_queries", "gauge",
    "Client queries running longer than the long_running_query_seconds threshold.",
    ("datname",), source="pg_stat_activity",
)
LONG_IDLE_XACT = MetricDef(
    "pg_stat_activity_idle_in_transaction_sessions", "gauge",
    "Sessions idle in a transaction longer than the idle_in_transaction_seconds threshold.",
    ("datname",), source="pg_stat_activity",
)
WAITING = MetricDef(
    "pg_stat_activity_waiting_on_lock", "gauge",
    "Sessions waiting for a heavyweight lock in this database.",
    ("datname",), source="pg_stat_activity",
)
BACKENDS = MetricDef(
    "pg_stat_activity_backends", "gauge",
    "Number of server processes by backend type (client backend, autovacuum worker, ...).",
    ("backend_type",), source="pg_stat_activity",
)


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None and ctx.server is not None
    params = {
        "long": ctx.thresholds.long_running_query_seconds,
        "idle": ctx.thresholds.idle_in_transaction_seconds,
    }
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(SQL, params).fetchall()
        databases = [r["datname"] for r in cur.execute(DATABASES_SQL).fetchall()]

    count: dict[tuple[str, ...], int] = {}
    max_tx: dict[tuple[str, ...], float] = {}
    occupied: set[tuple[str, str]] = set()
    per_db: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    backends: dict[str, int] = defaultdict(int)
    clients = 0
    for r in rows:
        backends[r["backend_type"] or "unknown"] += r["sessions"]
        if r["backend_type"] == "client backend":
            clients += r["sessions"]
        db, state = r["datname"], r["state"]
        if db is None:
            continue  # background processes attached to no database
        if state is not None:
            occupied.add((db, state))
            key = (db, state, r["usename"], r["application_name"] or "", r["backend_type"] or "",
                   r["wait_event_type"], r["wait_event"])
            count[key] = count.get(key, 0) + r["sessions"]
            max_tx[key] = max(max_tx.get(key, 0.0), r["max_xact_age"] or 0.0)
        d = per_db[db]
        d["oldest_query"] = max(d["oldest_query"], r["max_query_age"] or 0.0)
        d["oldest_idle"] = max(d["oldest_idle"], r["max_idle_xact_age"] or 0.0)
        d["long_running"] += r["long_running"]
        d["long_idle"] += r["long_idle_xact"]
        d["waiting"] += r["waiting_on_lock"]

    for db in databases:
        for state in STATES:
            if (db, state) not in occupied:
                count[(db, state, "", "", "", "", "")] = 0
                max_tx[(db, state, "", "", "", "", "")] = 0.0

    server = ctx.server
    utilization = clients / server.max_connections if server.max_connections else None
    available = server.max_connections - server.reserved_connections - clients

    def by_db(key: str) -> list[tuple[tuple[str], Any]]:
        return [((db,), per_db[db][key] if db in per_db else 0) for db in databases]

    families = (
        COUNT.family((k, v) for k, v in count.items()),
        MAX_TX.family((k, v) for k, v in max_tx.items()),
        CLIENTS.single(clients),
        UTILIZATION.single(utilization),
        AVAILABLE.single(available),
        OLDEST_QUERY.family(by_db("oldest_query")),
        OLDEST_IDLE_XACT.family(by_db("oldest_idle")),
        LONG_RUNNING.family(by_db("long_running")),
        LONG_IDLE_XACT.family(by_db("long_idle")),
        WAITING.family(by_db("waiting")),
        BACKENDS.family(((k,), v) for k, v in sorted(backends.items())),
    )
    return CollectorResult(families, record=Connections(clients, server.max_connections, utilization))


SPEC = CollectorSpec(
    name="activity",
    description="pg_stat_activity: sessions by state, connection utilization, longest "
    "transaction, long-running queries and idle-in-transaction sessions.",
    collect=collect,
    metrics=(COUNT, MAX_TX, CLIENTS, UTILIZATION, AVAILABLE, OLDEST_QUERY, OLDEST_IDLE_XACT,
             LONG_RUNNING, LONG_IDLE_XACT, WAITING, BACKENDS),
)
