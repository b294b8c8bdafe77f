"""pg_stat_ssl: which connections are encrypted with TLS, and how.

Client backends and WAL senders are counted by database, transport (``unix`` for a
Unix-domain socket, which never uses TLS, else ``tcp``), whether TLS is in use, and its
protocol version and cipher suite (empty without TLS). A rule such as
``pg_stat_ssl_connections{transport="tcp",ssl="false"} > 0`` finds clients connecting in
clear text over the network. SSL compression was removed in PostgreSQL 14: on 13 the
connections using it are counted in ``pg_stat_ssl_compressed_connections``.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, MetricDef

# client_port is -1 for a Unix-domain socket (PostgreSQL documentation, pg_stat_activity).
SQL = """
SELECT COALESCE(a.datname, '') AS datname,
       CASE WHEN a.client_port = -1 THEN 'unix' ELSE 'tcp' END AS transport,
       s.ssl, COALESCE(s.version, '') AS version, COALESCE(s.cipher, '') AS cipher,
       count(*) AS connections, {compressed} AS compressed
FROM pg_stat_ssl s
JOIN pg_stat_activity a ON a.pid = s.pid
WHERE a.backend_type IN ('client backend', 'walsender')
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5
"""
_COMPRESSED_13 = "count(*) FILTER (WHERE s.compression)"

CONNECTIONS = MetricDef(
    "pg_stat_ssl_connections", "gauge",
    "Client connections (client backends and WAL senders) by database, transport, TLS use, "
    "protocol version and cipher suite.",
    ("datname", "transport", "ssl", "version", "cipher"), source="pg_stat_ssl",
)
COMPRESSED = MetricDef(
    "pg_stat_ssl_compressed_connections", "gauge",
    "Client connections of this database using SSL compression (removed in PostgreSQL 14).",
    ("datname",), source="pg_stat_ssl", max_version=140000,
)

# Legacy alias: the SSL compression query of postgres_exporter query files, still queried
# by rule packs. PostgreSQL 14 removed SSL compression: no connection can use it there,
# and the alias counts 0 for every database with client connections.
COMPRESSION = MetricDef("pg_stat_ssl_compression", "gauge",
                        "Client connections of this database using SSL compression (0 from PostgreSQL 14, which "
                        "removed it).", ("datname",), source="pg_stat_ssl", alias_of=COMPRESSED.name)


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None and ctx.server is not None
    has_compression = COMPRESSED.exists_on(ctx.server.version_num)
    sql = SQL.format(compressed=_COMPRESSED_13 if has_compression else "NULL::bigint")
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        rows: list[dict[str, Any]] = cur.execute(sql).fetchall()
    families = [CONNECTIONS.family(
        ((r["datname"], r["transport"], "true" if r["ssl"] else "false", r["version"], r["cipher"]), r["connections"])
        for r in rows
    )]
    compressed: dict[str, int] = {}
    for r in rows:
        compressed[r["datname"]] = compressed.get(r["datname"], 0) + (r["compressed"] or 0)
    if has_compression:
        families.append(COMPRESSED.family(((d,), n) for d, n in sorted(compressed.items())))
    families.append(COMPRESSION.family(((d,), n) for d, n in sorted(compressed.items())))
    return CollectorResult(tuple(families))


SPEC = CollectorSpec(
    name="ssl",
    description="pg_stat_ssl: client connections by database, transport, TLS use, protocol version "
    "and cipher; SSL compression on PostgreSQL 13.",
    collect=collect,
    metrics=(CONNECTIONS, COMPRESSED, COMPRESSION),
)
