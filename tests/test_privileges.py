"""The whole collector set as a non-superuser: the role of docs/setup-role.sql, and a role
with no monitoring privilege at all."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import make_config
from pgperf import collectors
from pgperf.sampling import Snapshot, TargetSampler
from tools.cluster import Cluster
from tools.docs import metrics_md

pytestmark = pytest.mark.collectors

SETUP_SQL = Path(__file__).resolve().parent.parent / "docs" / "setup-role.sql"


def sample_as(dsn: str, times: int = 3) -> tuple[Snapshot, TargetSampler]:
    config = make_config(dsn)
    sampler = TargetSampler(config.resolved_targets()[0], config)
    sampler.open()
    try:
        snap = None
        for _ in range(times):
            snap = sampler.sample()
        assert snap is not None
        return snap, sampler
    finally:
        sampler.close()


def repeated(records: list[logging.LogRecord]) -> list[str]:
    counts = Counter(r.getMessage() for r in records if r.levelno >= logging.WARNING)
    return [message for message, n in counts.items() if n > 1]


@pytest.fixture
def private_database(pg_cluster: Cluster) -> Iterator[str]:
    """A database whose CONNECT privilege PUBLIC lost."""
    pg_cluster.execute("DROP DATABASE IF EXISTS private_db")
    pg_cluster.execute("CREATE DATABASE private_db")
    pg_cluster.execute("CREATE TABLE secret (id int)", "private_db")
    pg_cluster.execute("REVOKE CONNECT ON DATABASE private_db FROM PUBLIC")
    yield "private_db"
    pg_cluster.execute("DROP DATABASE IF EXISTS private_db")


def test_setup_role_runs_every_collector(pg_cluster: Cluster, private_database: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    script = SETUP_SQL.read_text()
    with pg_cluster.connect() as conn:
        conn.execute(script)  # twice: the script can be run again
        conn.execute(script)
        conn.execute("ALTER ROLE pgperf PASSWORD 'pgperf-test-secret'")
    with caplog.at_level(logging.INFO, logger="pgperf"):
        snap, sampler = sample_as(pg_cluster.dsn(user="pgperf", password="pgperf-test-secret"))
    assert snap.up and snap.server is not None
    assert snap.server.current_user == "pgperf" and not snap.server.is_superuser
    assert snap.server.can_read_all_stats
    failed = {s.name: s.error or s.disabled for s in snap.statuses if not s.success}
    assert not failed, failed
    # every collector on by default (log_errors is off by default: it needs to read server files)
    assert {s.name for s in snap.statuses} == {spec.name for spec in collectors.REGISTRY
                                               if spec.options().enabled is not False}
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # CONNECT granted by the script: the private database's tables are visited too.
    assert snap.databases[private_database] is None
    tables = snap.family("pgperf_tables")
    assert tables is not None and tables.value(datname=private_database) == 1
    # pg_monitor lets the role measure the WAL directory and every database.
    assert snap.family("pg_wal_size_bytes") is not None
    sizes = snap.family("pg_database_size_bytes")
    assert sizes is not None and sizes.value(datname=private_database) is not None


def test_role_without_privileges_is_degraded_once_with_reasons(
    pg_cluster: Cluster, private_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    pg_cluster.execute("DROP ROLE IF EXISTS pgperf_bare")
    pg_cluster.execute("CREATE ROLE pgperf_bare LOGIN PASSWORD 'bare-secret'")
    try:
        with caplog.at_level(logging.INFO, logger="pgperf"):
            snap, _ = sample_as(pg_cluster.dsn(user="pgperf_bare", password="bare-secret"), times=4)
    finally:
        pg_cluster.execute("DROP ROLE IF EXISTS pgperf_bare")
    assert snap.up and snap.server is not None and not snap.server.can_read_all_stats
    statuses = {s.name: s for s in snap.statuses}
    # pg_ls_waldir() is for pg_monitor only: the wal collector is disabled, the rest works.
    assert statuses["wal"].disabled == "insufficient_privilege"
    others = {n: s.error or s.disabled for n, s in statuses.items() if not s.success and n != "wal"}
    assert not others, others
    docs = metrics_md()
    assert all(f"`{s.disabled}`" in docs for s in snap.statuses if s.disabled)  # every reason documented
    # The database it may not connect to is skipped and reported, its size not measured.
    assert snap.databases[private_database] is not None
    sizes: Any = snap.family("pg_database_size_bytes")
    assert sizes.value(datname=private_database) is None and sizes.value(datname="postgres") is not None
    # Four samples, and nothing logged twice: one line per problem, not one per sample.
    assert not repeated(caplog.records), repeated(caplog.records)
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("collector wal disabled (insufficient_privilege)" in m for m in messages)
    assert any(f"cannot visit database {private_database}" in m for m in messages)


def test_a_database_owner_cannot_shadow_the_views_pgperf_reads(pg_cluster: Cluster) -> None:
    """A database's search_path puts the owner's schema before pg_catalog, with a view named
    like a statistics view that calls the owner's function: pgperf's sessions ignore it."""
    pg_cluster.execute("DROP DATABASE IF EXISTS trap_db")
    pg_cluster.execute("DROP ROLE IF EXISTS trap_owner")
    pg_cluster.execute("CREATE ROLE trap_owner LOGIN")
    pg_cluster.execute("CREATE DATABASE trap_db OWNER trap_owner")
    try:
        pg_cluster.execute(
            "SET ROLE trap_owner; CREATE SCHEMA evil; CREATE TABLE evil.calls (who text);"
            " GRANT INSERT ON evil.calls TO PUBLIC; GRANT USAGE ON SCHEMA evil TO PUBLIC;"
            " CREATE FUNCTION evil.trap() RETURNS boolean LANGUAGE sql"
            "  AS 'INSERT INTO evil.calls VALUES (current_user) RETURNING true';"
            " CREATE VIEW evil.pg_stat_user_tables AS SELECT * FROM pg_catalog.pg_stat_user_tables WHERE evil.trap();"
            " CREATE VIEW evil.pg_stat_activity AS SELECT * FROM pg_catalog.pg_stat_activity WHERE evil.trap();"
            " CREATE TABLE bait (id int)", "trap_db")
        pg_cluster.execute("ALTER DATABASE trap_db SET search_path = evil, pg_catalog")
        # The trap works for a session that does not pin its search path.
        assert pg_cluster.execute("SELECT count(*) FROM pg_stat_user_tables", "trap_db")[0][0] >= 0
        assert pg_cluster.execute("SELECT count(*) FROM evil.calls", "trap_db")[0][0] > 0
        pg_cluster.execute("TRUNCATE evil.calls", "trap_db")
        snap, _ = sample_as(pg_cluster.dsn(dbname="trap_db"), times=2)
        tables = snap.family("pgperf_tables")
        assert tables is not None and tables.value(datname="trap_db") is not None  # visited
        assert pg_cluster.execute("SELECT who FROM evil.calls", "trap_db") == []
    finally:
        pg_cluster.execute("DROP DATABASE IF EXISTS trap_db")
        pg_cluster.execute("DROP ROLE IF EXISTS trap_owner")
