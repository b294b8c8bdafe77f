"""What insight can use on a server: version, HypoPG, pg_wait_sampling, privileges.

Detected in one round trip on the connection the caller gives (in the database whose
statements are planned: extensions are per database). Nothing is created: where an
extension is installable but not created, ``hint`` says which ``CREATE EXTENSION`` would
enable the better path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

__all__ = ["InsightServer", "detect_insight"]


@dataclass(frozen=True)
class InsightServer:
    version_num: int
    is_superuser: bool
    #: Schema of the created hypopg extension in this database, None when not created.
    hypopg_schema: str | None
    #: hypopg is installed on the server (pg_available_extensions), created or not.
    hypopg_available: bool
    #: Schema of the created pg_wait_sampling extension, None when not created.
    wait_sampling_schema: str | None
    #: pg_wait_sampling's library is loaded (shared_preload_libraries): its profile is
    #: readable only then.
    wait_sampling_loaded: bool
    #: pg_wait_sampling.profile_period in milliseconds (one profile sample per backend).
    wait_sampling_period_ms: float | None

    @property
    def generic_plan(self) -> bool:
        """EXPLAIN (GENERIC_PLAN) exists (PostgreSQL 16+)."""
        return self.version_num >= 160000

    @property
    def activity_query_id(self) -> bool:
        """pg_stat_activity has query_id (PostgreSQL 14+)."""
        return self.version_num >= 140000

    @property
    def wait_sampling(self) -> bool:
        """pg_wait_sampling's profile can be read here."""
        return self.wait_sampling_schema is not None and self.wait_sampling_loaded


_DETECT_SQL = """
SELECT current_setting('server_version_num')::int AS version_num,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS is_superuser,
       (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'hypopg') AS hypopg_schema,
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg') AS hypopg_available,
       (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'pg_wait_sampling') AS wait_sampling_schema,
       -- the extension's settings exist only once its library is loaded
       current_setting('pg_wait_sampling.profile_period', true) IS NOT NULL AS wait_sampling_loaded,
       current_setting('pg_wait_sampling.profile_period', true)::float8 AS wait_sampling_period_ms
"""


def detect_insight(conn: psycopg.Connection[Any]) -> InsightServer:
    """Read what insight can use on *conn*'s server and database (one round trip)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_DETECT_SQL).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    return InsightServer(**row)
