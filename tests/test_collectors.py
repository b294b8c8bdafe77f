"""Each collector against the real PostgreSQL of the test session."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import psycopg
import pytest

from pgperf.collectors import BY_NAME, CollectContext, CollectorDisabled, CollectorResult
from pgperf.collectors.statements import StatementsOptions, TextCache
from pgperf.db import detect_server
from pgperf.devtools.cluster import Cluster

pytestmark = pytest.mark.collectors


def run(name: str, conn: psycopg.Connection[Any] | None, *, previous: tuple[float, Any] | None = None,
        options: Any = None, settings: dict[str, Any] | None = None) -> tuple[CollectorResult, float]:
    spec = BY_NAME[name]
    now = time.time()
    ctx = CollectContext(
        target="test", conn=conn, server=detect_server(conn) if conn is not None else None,
        options=options or spec.options(), previous=previous[1] if previous else None,
        previous_at=previous[0] if previous else None, now=now, settings=settings or {},
    )
    return spec.collect(ctx), now


def family(result: CollectorResult, name: str) -> Any:
    for fam in result.families:
        if fam.name == name:
            return fam
    raise AssertionError(f"{name} not in {[f.name for f in result.families]}")


# -- database -----------------------------------------------------------------------------

def test_database_collector(pg_conn: psycopg.Connection[Any]) -> None:
    # Up to PostgreSQL 14 a statistics collector process receives the counters up to
    # 500 ms after a transaction ends: poll rather than read once.
    deadline = time.monotonic() + 5
    while True:
        result, _ = run("database", pg_conn)
        commits = family(result, "pg_stat_database_xact_commit")
        if (commits.value(datname="postgres") or 0) > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert commits.labels == ("datid", "datname")
    assert (commits.value(datname="postgres") or 0) > 0
    assert family(result, "pg_stat_database_numbackends").type == "gauge"
    assert family(result, "pg_stat_database_blks_hit").type == "counter"
    family(result, "pg_stat_database_conflicts_confl_lock")
    names = {f.name for f in result.families}
    if pg_conn.info.server_version >= 140000:
        assert "pg_stat_database_session_time" in names
    else:
        assert "pg_stat_database_session_time" not in names
    assert result.records["xact_commit"] > 0


def test_database_null_is_no_sample(pg_conn: psycopg.Connection[Any]) -> None:
    result, _ = run("database", pg_conn)
    # checksum_last_failure is NULL when no failure ever happened: no sample, not 0.
    names = {f.name: f for f in result.families}
    fam = names.get("pg_stat_database_checksum_last_failure")
    assert fam is None or all(v > 0 for _, v in fam.samples)


# -- activity -----------------------------------------------------------------------------

def test_activity_states_and_idle_in_transaction(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    with pg_cluster.connect() as idle:
        idle.autocommit = False
        idle.execute("SELECT 1")  # now idle in transaction
        time.sleep(0.6)
        result, _ = run("activity", pg_conn, settings={"idle_in_transaction_seconds": 0.5,
                                                        "long_running_query_seconds": 60})
        idle.rollback()
    count = family(result, "pg_stat_activity_count")
    assert count.labels == ("datname", "state")
    assert (count.value(datname="postgres", state="idle in transaction") or 0) >= 1
    assert count.value(datname="template1", state="active") == 0  # zero samples kept
    assert (family(result, "pg_stat_activity_idle_in_transaction_sessions").value(datname="postgres") or 0) >= 1
    assert (family(result, "pg_stat_activity_oldest_idle_in_transaction_age_seconds").value(datname="postgres") or 0) >= 0.5
    ratio = family(result, "pg_stat_activity_connection_utilization_ratio").samples[0][1]
    assert 0 < ratio < 1
    assert result.records["connection_count"] >= 2
    assert result.records["max_connections"] == 100


def test_activity_long_running_query(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    def sleeper() -> None:
        with pg_cluster.connect() as c:
            c.execute("SELECT pg_sleep(1.5)")

    thread = threading.Thread(target=sleeper)
    thread.start()
    time.sleep(0.8)
    result, _ = run("activity", pg_conn, settings={"long_running_query_seconds": 0.5,
                                                    "idle_in_transaction_seconds": 60})
    thread.join()
    assert (family(result, "pg_stat_activity_long_running_queries").value(datname="postgres") or 0) >= 1
    assert (family(result, "pg_stat_activity_oldest_query_age_seconds").value(datname="postgres") or 0) >= 0.5


# -- settings -----------------------------------------------------------------------------

def test_settings_units_like_postgres_exporter(pg_conn: psycopg.Connection[Any]) -> None:
    result, _ = run("settings", pg_conn)
    by_name = {f.name: f.samples[0][1] for f in result.families}
    assert by_name["pg_settings_shared_buffers_bytes"] == 64 * 1024 * 1024  # 8kB blocks -> bytes
    assert by_name["pg_settings_max_connections"] == 100
    assert by_name["pg_settings_fsync"] == 0  # bool, off in the test cluster
    assert by_name["pg_settings_track_io_timing"] == 1
    assert by_name["pg_settings_log_min_duration_statement_seconds"] == -1  # -1 kept as is
    assert by_name["pg_settings_checkpoint_timeout_seconds"] == 300
    assert by_name["pg_settings_pg_stat_statements_max"] == 5000  # dotted names flattened
    assert all(f.type == "gauge" for f in result.families)


def test_settings_normalise() -> None:
    from pgperf.collectors.settings import normalise

    assert normalise("128", "8kB") == (128 * 8192, "bytes")
    assert normalise("4", "MB") == (4 * 1024 * 1024, "bytes")
    assert normalise("200", "ms") == (0.2, "seconds")
    assert normalise("1", "min") == (60, "seconds")
    assert normalise("-1", "ms") == (-1, "seconds")
    assert normalise("0.9", "") == (0.9, "")
    with pytest.raises(ValueError):
        normalise("1", "furlongs")


# -- host ---------------------------------------------------------------------------------

def test_host_collector(pg_conn: psycopg.Connection[Any], pg_cluster: Cluster) -> None:
    first, t1 = run("host", pg_conn)
    assert family(first, "pgperf_host_cpu_usage_ratio").samples == ()  # needs two readings
    time.sleep(0.3)
    second, _ = run("host", pg_conn, previous=(t1, first.state))
    cpu = family(second, "pgperf_host_cpu_usage_ratio").samples[0][1]
    assert 0 <= cpu <= 1
    mem = family(second, "pgperf_host_memory_usage_ratio").samples[0][1]
    assert 0 < mem < 1
    disk = family(second, "pgperf_host_disk_usage_ratio")
    assert disk.samples[0][0] == (str(pg_cluster.data),)
    assert 0 < disk.samples[0][1] < 1
    assert family(second, "pgperf_host_network_sent_bytes_total").samples[0][1] >= 0
    records = second.records
    assert records["cpu_usage_percent"] is not None
    assert records["memory_usage_bytes"] > 0
    assert records["disk_usage_bytes"] > 0
    assert records["network_bytes_sent"] >= 0


def test_host_collector_without_database() -> None:
    result, _ = run("host", None)
    assert family(result, "pgperf_host_memory_total_bytes").samples[0][1] > 0
    assert not any(f.name == "pgperf_host_disk_usage_ratio" for f in result.families)


# -- statements ---------------------------------------------------------------------------

def _statements(conn: psycopg.Connection[Any], previous: tuple[float, Any] | None = None, **options: Any
                ) -> tuple[CollectorResult, float]:
    return run("statements", conn, previous=previous, options=StatementsOptions(**options),
               settings={"slow_query_time_ms": 50, "statement_text_cache": TextCache()})


def _marker(conn: psycopg.Connection[Any], name: str) -> str:
    """A one-row table named *name*: statements reading it get their own queryid (constants
    and column aliases do not change a queryid; the relations read do)."""
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} AS SELECT 1 AS x")
    return name


def _queryid(conn: psycopg.Connection[Any], fragment: str) -> int:
    row = conn.execute("SELECT queryid FROM pg_stat_statements WHERE query ILIKE 'select%%' AND query LIKE %s LIMIT 1",
                       (f"%{fragment}%",)).fetchone()
    assert row is not None, f"no statement like {fragment!r}"
    return int(row[0])


def test_statements_per_queryid_series(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    with pg_cluster.connect() as work:
        for _ in range(3):
            work.execute("SELECT count(*) AS per_queryid_marker FROM pg_class")
    qid = _queryid(pg_conn, "per_queryid_marker")
    result, _ = _statements(pg_conn)
    calls = family(result, "pg_stat_statements_calls_total")
    assert calls.labels == ("user", "datname", "queryid")
    assert (calls.value(queryid=str(qid), datname="postgres", user="postgres") or 0) >= 3
    assert family(result, "pg_stat_statements_seconds_total").value(queryid=str(qid)) is not None
    totals = family(result, "pg_stat_statements_all_calls_total")
    assert totals.labels == ("datname", "user")
    assert (totals.value(datname="postgres", user="postgres") or 0) >= 3
    assert family(result, "pg_stat_statements_entries").samples[0][1] > 0
    assert all("query" not in f.labels for f in result.families)  # no text label by default


def test_statements_interval_deltas(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    _marker(pg_conn, "delta_marker")
    base, t0 = _statements(pg_conn)
    assert base.records is None  # the first sample is a baseline
    with pg_cluster.connect() as work:
        for _ in range(5):
            work.execute("SELECT pg_sleep(0.02) FROM delta_marker")
    second, _ = _statements(pg_conn, previous=(t0, base.state))
    qid = _queryid(pg_conn, "delta_marker")
    deltas = {d.queryid: d for d in second.records.deltas}
    d = deltas[qid]
    assert d.calls == 5
    assert 100 <= d.total_ms < 1000
    assert math.isclose(d.mean_ms, d.total_ms / d.calls)
    assert d.stddev_ms >= 0
    assert second.records.texts[qid].startswith("SELECT pg_sleep")
    assert not second.records.stats_reset


def test_statements_reset_never_negative(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    _marker(pg_conn, "reset_marker")
    with pg_cluster.connect() as work:
        for _ in range(20):
            work.execute("SELECT x FROM reset_marker")
    first, t0 = _statements(pg_conn)
    total_before = family(first, "pg_stat_statements_all_calls_total").value(datname="postgres", user="postgres")
    pg_conn.execute("SELECT pg_stat_statements_reset()")
    with pg_cluster.connect() as work:
        for _ in range(3):
            work.execute("SELECT x FROM reset_marker")
    second, _ = _statements(pg_conn, previous=(t0, first.state))
    assert all(d.calls > 0 and d.total_ms >= 0 and d.rows >= 0 for d in second.records.deltas)
    qid = _queryid(pg_conn, "reset_marker")
    assert {d.queryid: d.calls for d in second.records.deltas}[qid] == 3
    if pg_conn.info.server_version >= 140000:
        assert second.records.stats_reset
    total_after = family(second, "pg_stat_statements_all_calls_total").value(datname="postgres", user="postgres")
    assert total_after is not None and total_before is not None and total_after >= total_before


def test_statements_slow_count_and_top_n(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    _marker(pg_conn, "slow_marker")
    first, t0 = _statements(pg_conn, top_n=2)
    with pg_cluster.connect() as work:
        work.execute("SELECT pg_sleep(0.12) FROM slow_marker")
        for i in range(30):
            work.execute(f"SELECT {i} FROM (VALUES (1){', (2)' * (i % 5)}) v")
    second, _ = _statements(pg_conn, previous=(t0, first.state), top_n=2)
    slow_qid = _queryid(pg_conn, "slow_marker")
    assert (family(second, "pg_stat_statements_slow_statements").value(datname="postgres") or 0) >= 1
    assert (family(second, "pg_stat_statements_slowest_mean_seconds").value(datname="postgres") or 0) >= 0.1
    calls = family(second, "pg_stat_statements_calls_total")
    assert len(calls.samples) == 2
    assert calls.value(queryid=str(slow_qid)) == 1  # slow statements are always served
    assert family(second, "pg_stat_statements_selected_statements").samples[0][1] == 2


def test_statements_include_query(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    with pg_cluster.connect() as work:
        work.execute("SELECT 42 AS include_query_marker")
    result, _ = _statements(pg_conn, include_query=True, query_length=30)
    fam = family(result, "pg_stat_statements_query_id")
    assert fam.labels == ("queryid", "query")
    assert all(len(labels[1]) <= 30 for labels, _ in fam.samples)


def test_statements_disabled_without_extension(pg_cluster: Cluster) -> None:
    pg_cluster.execute("DROP DATABASE IF EXISTS no_pgss")
    pg_cluster.execute("CREATE DATABASE no_pgss")
    with pg_cluster.connect("no_pgss") as conn, pytest.raises(CollectorDisabled) as info:
        _statements(conn)
    assert info.value.reason == "extension_missing"
    assert "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" in info.value.detail
