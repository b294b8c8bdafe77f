"""pg_roles and pg_database connection limits (the roles collector)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from collecting import family, run

pytestmark = pytest.mark.collectors


def test_role_and_database_connection_limits(pg_conn: psycopg.Connection[Any]) -> None:
    pg_conn.execute("DROP ROLE IF EXISTS limited_role")
    pg_conn.execute("CREATE ROLE limited_role LOGIN CONNECTION LIMIT 5 PASSWORD 'x'")
    roles, _ = run("roles", pg_conn)
    assert family(roles, "pg_roles_connection_limit").value(rolname="limited_role") == 5
    assert family(roles, "pg_roles_connection_limit").value(rolname="postgres") == -1
    assert family(roles, "pg_roles_connections").value(rolname="limited_role") == 0
    assert (family(roles, "pg_roles_connections").value(rolname="postgres") or 0) >= 1
    assert family(roles, "pg_roles_connections").value(rolname="pg_monitor") is None  # cannot log in
    assert family(roles, "pg_database_connection_limit").value(datname="postgres") == -1
