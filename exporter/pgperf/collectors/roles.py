"""Connection limits and current connections, per role and per database.

``pg_roles_connection_limit{rolname}`` and ``pg_database_connection_limit{datname}`` are
postgres_exporter's (-1 means no limit). ``pg_roles_connections{rolname}`` counts the
client backends of each role that can log in, with a zero sample for roles without
sessions, so a rule comparing the two has series for every role.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, MetricDef

ROLES_SQL = """
SELECT r.rolname, r.rolconnlimit, r.rolcanlogin, count(a.pid) AS connections
FROM pg_roles r
LEFT JOIN pg_stat_activity a ON a.usesysid = r.oid AND a.backend_type = 'client backend'
GROUP BY r.rolname, r.rolconnlimit, r.rolcanlogin
ORDER BY r.rolname
"""
DATABASES_SQL = "SELECT datname, datconnlimit FROM pg_database ORDER BY datname"

ROLE_LIMIT = MetricDef("pg_roles_connection_limit", "gauge",
                       "Connection limit set for the role (-1: no limit).", ("rolname",),
                       source="pg_roles", compat=True)
ROLE_CONNECTIONS = MetricDef("pg_roles_connections", "gauge",
                             "Client connections currently open by this role (roles that can log in).",
                             ("rolname",), source="pg_stat_activity, pg_roles")
DATABASE_LIMIT = MetricDef("pg_database_connection_limit", "gauge",
                           "Connection limit set for the database (-1: no limit).", ("datname",),
                           source="pg_database", compat=True)


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        roles: list[dict[str, Any]] = cur.execute(ROLES_SQL).fetchall()
        databases: list[dict[str, Any]] = cur.execute(DATABASES_SQL).fetchall()
    families = (
        ROLE_LIMIT.family(((r["rolname"],), r["rolconnlimit"]) for r in roles),
        ROLE_CONNECTIONS.family(((r["rolname"],), r["connections"]) for r in roles
                                if r["rolcanlogin"] or r["connections"]),
        DATABASE_LIMIT.family(((d["datname"],), d["datconnlimit"]) for d in databases),
    )
    return CollectorResult(families)


SPEC = CollectorSpec(
    name="roles",
    description="Connection limits of roles and databases, current connections per role.",
    collect=collect,
    metrics=(ROLE_LIMIT, ROLE_CONNECTIONS, DATABASE_LIMIT),
)
