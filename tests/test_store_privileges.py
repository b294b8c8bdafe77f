"""The store's migrations as the least-privileged role of docs/setup-role.sql: it owns the
store's schema (the script creates it for the role) but may not create schemas in the
database (no CREATE on it), which CREATE SCHEMA IF NOT EXISTS checks even when the schema
exists."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pgperf.store.schema import MIGRATIONS, migrate
from tools.cluster import Cluster

ROLE, SCHEMA, PASSWORD = "pgperf_store_owner", "pgperf_owned", "store-owner-secret"


@pytest.fixture
def schema_owner(pg_cluster: Cluster) -> Iterator[str]:
    """A role owning an empty schema, without CREATE on the database."""
    pg_cluster.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
    pg_cluster.execute(f"CREATE SCHEMA {SCHEMA} AUTHORIZATION {ROLE}")
    try:
        yield pg_cluster.dsn(user=ROLE, password=PASSWORD)
    finally:
        pg_cluster.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        pg_cluster.execute(f"DROP ROLE IF EXISTS {ROLE}")


def test_migrations_run_in_an_owned_schema_without_create_on_the_database(schema_owner: str) -> None:
    with psycopg.connect(schema_owner, autocommit=True) as conn:
        has_create = conn.execute("SELECT has_database_privilege(current_database(), 'CREATE')").fetchone()
        assert has_create == (False,)
        assert migrate(conn, SCHEMA) == [m.version for m in MIGRATIONS]
        assert migrate(conn, SCHEMA) == []  # again: nothing to do, still no privilege needed
        tables = {r[0] for r in conn.execute(  # query_performance_metrics is a view (migration 005)
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (SCHEMA,)).fetchall()}
        assert {"query_performance_metrics", "resource_metrics", "performance_alerts", "performance_reports"} <= tables
        # A schema it does not have is still refused with PostgreSQL's own message.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            migrate(conn, "pgperf_not_owned")

