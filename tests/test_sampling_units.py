"""The parts of a target's sampler that stand on their own: its health bookkeeping (counters
and the once-per-change log of the database going down and up) and the database discovery
(against a real server)."""

from __future__ import annotations

import logging

import pytest

from fix_pg import Cluster
from pgperf.config import Databases
from pgperf.db import SessionSettings
from pgperf.sampling.health import SampleHealth
from pgperf.sampling.visit import discover


def test_counters_add_up_and_old_copies_do_not_change() -> None:
    health = SampleHealth("t1")
    first = health.count(samples=1, success_at=100.0)
    second = health.count(samples=1, failed=1, connection_error="refused", collector_errors=["locks", "locks"])
    third = health.count(overruns=2, collector_errors=["wal"])
    assert (first.samples, first.failed_samples, dict(first.collector_errors)) == (1, 0, {})
    assert (second.samples, second.failed_samples, second.last_success) == (2, 1, 100.0)
    assert dict(second.connection_errors) == {"refused": 1}
    assert dict(third.collector_errors) == {"locks": 2, "wal": 1}
    assert third.overruns == 2 and health.counters is third
    with pytest.raises(TypeError):  # a snapshot's copy is read-only
        third.collector_errors["wal"] = 5  # type: ignore[index]


def test_reachability_is_logged_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    health = SampleHealth("t1")
    caplog.set_level(logging.INFO, logger="pgperf.sampling.health")
    health.connection(True, None, None)  # up from the start: nothing to say
    health.connection(False, "refused", "connection refused")
    health.connection(False, "refused", "connection refused")  # still down, same reason
    health.connection(False, "timeout", "timed out")  # down for another reason
    health.connection(True, None, None)
    health.connection(True, None, None)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("ERROR", "target t1: database unreachable (refused): connection refused"),
        ("ERROR", "target t1: database unreachable (timeout): timed out"),
        ("INFO", "target t1: database reachable again"),
    ]
    assert caplog.records[0].error_kind == "refused"  # type: ignore[attr-defined]


def test_discover_lists_the_selected_connectable_databases(pg_cluster: Cluster) -> None:
    pg_cluster.execute("DROP DATABASE IF EXISTS disc_a")
    pg_cluster.execute("DROP DATABASE IF EXISTS disc_b")
    pg_cluster.execute("CREATE DATABASE disc_a")
    pg_cluster.execute("CREATE DATABASE disc_b ALLOW_CONNECTIONS false")
    try:
        with pg_cluster.connect() as conn:
            every = discover(conn, SessionSettings(), Databases(), "t1")
            only = discover(conn, SessionSettings(), Databases(include=("disc_*",)), "t1")
        assert every is not None and "disc_a" in every and "postgres" in every
        assert "disc_b" not in every and "template0" not in every and "template1" not in every
        assert only == ("disc_a",)
    finally:
        pg_cluster.execute("DROP DATABASE IF EXISTS disc_a")
        pg_cluster.execute("DROP DATABASE IF EXISTS disc_b")


def test_discover_answers_none_when_the_catalog_cannot_be_read(pg_cluster: Cluster,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pgperf.sampling.visit")
    with pg_cluster.connect() as conn:
        # A view that shadows the catalog in this session only, and takes longer than the
        # statement timeout: the query fails, the connection lives on.
        conn.execute("CREATE TEMP VIEW pg_database AS SELECT pg_sleep(1)::text AS datname, true AS datallowconn,"
                     " false AS datistemplate")
        conn.execute("SET search_path = pg_temp, pg_catalog")
        conn.execute("SET statement_timeout = '50ms'")
        assert discover(conn, SessionSettings(), Databases(), "t1") is None
        assert not conn.broken
    assert any("t1: cannot list databases" in r.getMessage() for r in caplog.records)
