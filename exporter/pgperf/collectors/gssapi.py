"""pg_stat_gssapi: which connections are authenticated or encrypted with GSSAPI (Kerberos).

Client backends and WAL senders are counted by database, whether GSSAPI authenticated
them and whether it encrypts their traffic (GSSAPI encryption is the alternative to TLS,
``hostgssenc`` in pg_hba.conf). From PostgreSQL 16, the connections whose client delegated
its credentials (``gss_delegation``) to the server are counted as well.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, MetricDef

SQL = """
SELECT COALESCE(a.datname, '') AS datname, g.gss_authenticated, g.encrypted,
       count(*) AS connections, {delegated} AS delegated
FROM pg_stat_gssapi g
JOIN pg_stat_activity a ON a.pid = g.pid
WHERE a.backend_type IN ('client backend', 'walsender')
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
"""
_DELEGATED_16 = "count(*) FILTER (WHERE g.credentials_delegated)"

CONNECTIONS = MetricDef(
    "pg_stat_gssapi_connections", "gauge",
    "Client connections (client backends and WAL senders) by database, GSSAPI authentication and "
    "GSSAPI encryption.",
    ("datname", "authenticated", "encrypted"), source="pg_stat_gssapi",
)
DELEGATED = MetricDef(
    "pg_stat_gssapi_delegated_connections", "gauge",
    "Client connections of this database whose GSSAPI credentials were delegated to the server.",
    ("datname",), source="pg_stat_gssapi", min_version=160000,
)


def _flag(value: Any) -> str:
    return "true" if value else "false"


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None and ctx.server is not None
    has_delegation = DELEGATED.exists_on(ctx.server.version_num)
    sql = SQL.format(delegated=_DELEGATED_16 if has_delegation else "NULL::bigint")
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        rows: list[dict[str, Any]] = cur.execute(sql).fetchall()
    families = [CONNECTIONS.family(
        ((r["datname"], _flag(r["gss_authenticated"]), _flag(r["encrypted"])), r["connections"]) for r in rows
    )]
    if has_delegation:
        delegated: dict[str, int] = {}
        for r in rows:
            delegated[r["datname"]] = delegated.get(r["datname"], 0) + (r["delegated"] or 0)
        families.append(DELEGATED.family(((d,), n) for d, n in sorted(delegated.items())))
    return CollectorResult(tuple(families))


SPEC = CollectorSpec(
    name="gssapi",
    description="pg_stat_gssapi: client connections by database, GSSAPI authentication and encryption; "
    "delegated credentials on PostgreSQL 16+.",
    collect=collect,
    metrics=(CONNECTIONS, DELEGATED),
)
