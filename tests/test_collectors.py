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
from tools.cluster import Cluster

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
    datid = str(pg_conn.execute("SELECT oid FROM pg_database WHERE datname = 'postgres'").fetchone()[0])
    assert result.records[datid]["xact_commit"] > 0  # per database (the store sums their changes)


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
    result, _ = _statements(pg_conn, top_n=10000)  # a cheap statement: make room for every one
    calls = family(result, "pg_stat_statements_calls_total")
    assert calls.labels == ("user", "datname", "queryid")
    assert (calls.value(queryid=str(qid), datname="postgres", user="postgres") or 0) >= 3
    assert family(result, "pg_stat_statements_seconds_total").value(queryid=str(qid)) is not None
    totals = family(result, "pg_stat_statements_all_calls_total")
    assert totals.labels == ("datname", "user")
    assert (totals.value(datname="postgres", user="postgres") or 0) >= 3
    assert family(result, "pg_stat_statements_entries").samples[0][1] > 0
    assert all("query" not in f.labels for f in result.families)  # no text label by default


def test_statements_of_dropped_databases_keep_distinct_labels(pg_cluster: Cluster,
                                                             pg_conn: psycopg.Connection[Any]) -> None:
    for name in ("gone_a", "gone_b"):
        pg_cluster.execute(f"DROP DATABASE IF EXISTS {name}")
        pg_cluster.execute(f"CREATE DATABASE {name}")
        pg_cluster.execute("SELECT 4242 AS dropped_db_marker", name)
        pg_cluster.execute(f"DROP DATABASE {name}")
    result, _ = _statements(pg_conn, top_n=10000)
    calls = family(result, "pg_stat_statements_calls_total")
    assert len({labels for labels, _ in calls.samples}) == len(calls.samples)  # no duplicate series
    orphans = [labels for labels, _ in calls.samples if labels[1].startswith("oid:")]
    assert len({labels[1] for labels in orphans}) >= 2


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


# -- locks --------------------------------------------------------------------------------

def test_locks_counts_and_blocked_sessions(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    pg_conn.execute("DROP TABLE IF EXISTS lock_target")
    pg_conn.execute("CREATE TABLE lock_target (id int)")
    with pg_cluster.connect() as holder, pg_cluster.connect() as waiter:
        holder.autocommit = False
        holder.execute("LOCK TABLE lock_target IN ACCESS EXCLUSIVE MODE")
        blocked = threading.Thread(target=lambda: waiter.execute("SELECT count(*) FROM lock_target"))
        blocked.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            result, _ = run("locks", pg_conn)
            if family(result, "pg_locks_blocked_sessions").value(datname="postgres"):
                break
            time.sleep(0.1)
        time.sleep(0.3)
        result, _ = run("locks", pg_conn)
        holder.rollback()
        blocked.join()
    count = family(result, "pg_locks_count")
    assert count.labels == ("datname", "mode")
    assert (count.value(datname="postgres", mode="accessexclusivelock") or 0) >= 1
    assert count.value(datname="template1", mode="sireadlock") == 0  # a zero for every database and mode
    assert len({labels[1] for labels, _ in count.samples}) == 9
    assert family(result, "pg_locks_blocked_sessions").value(datname="postgres") == 1
    assert family(result, "pg_locks_blocked_sessions").value(datname="template1") == 0
    assert (family(result, "pg_locks_longest_wait_seconds").value(datname="postgres") or 0) >= 0.3


# -- bgwriter, checkpointer, wal, archiver, postmaster -------------------------------------

def test_checkpoint_families_on_every_version(pg_conn: psycopg.Connection[Any]) -> None:
    before, _ = run("checkpointer", pg_conn)
    pg_conn.execute("CHECKPOINT")
    deadline = time.monotonic() + 5
    while True:  # up to 14 the statistics collector gets the counts asynchronously
        after, _ = run("checkpointer", pg_conn)
        grown = (family(after, "pg_stat_bgwriter_checkpoints_req_total").samples[0][1]
                 > family(before, "pg_stat_bgwriter_checkpoints_req_total").samples[0][1])
        if grown or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert grown
    names = {f.name for f in after.families}
    assert {"pg_stat_bgwriter_checkpoint_write_time_total", "pg_stat_bgwriter_checkpoint_sync_time_total",
            "pg_stat_bgwriter_buffers_checkpoint_total", "pg_stat_bgwriter_checkpoints_timed_total"} <= names
    if pg_conn.info.server_version >= 170000:
        assert family(after, "pg_stat_checkpointer_num_requested_total").samples[0][1] >= 1
        assert "pg_stat_checkpointer_restartpoints_done_total" in names
    else:
        assert not any(n.startswith("pg_stat_checkpointer_") for n in names)
    bgwriter, _ = run("bgwriter", pg_conn)
    bg_names = {f.name for f in bgwriter.families}
    assert {"pg_stat_bgwriter_buffers_clean_total", "pg_stat_bgwriter_buffers_alloc_total",
            "pg_stat_bgwriter_stats_reset_total"} <= bg_names
    assert ("pg_stat_bgwriter_buffers_backend_total" in bg_names) == (pg_conn.info.server_version < 170000)
    assert not bg_names & names  # each family from one collector only


def test_wal(pg_conn: psycopg.Connection[Any]) -> None:
    result, _ = run("wal", pg_conn)
    assert family(result, "pg_wal_segments").samples[0][1] >= 1
    assert family(result, "pg_wal_size_bytes").samples[0][1] >= 16 * 1024 * 1024 * family(result, "pg_wal_segments").samples[0][1] / 2
    assert family(result, "pg_wal_lsn_location_bytes").samples[0][1] > 0
    names = {f.name for f in result.families}
    version = pg_conn.info.server_version
    if version >= 140000:
        assert family(result, "pg_stat_wal_records_total").samples[0][1] > 0
        assert family(result, "pg_stat_wal_bytes_total").samples[0][1] > 0
        assert {"pg_stat_wal_fpi_total", "pg_stat_wal_buffers_full_total"} <= names
        assert ("pg_stat_wal_write_total" in names) == (version < 180000)
    else:
        assert not any(n.startswith("pg_stat_wal_") for n in names)


def test_archiver_without_archiving(pg_conn: psycopg.Connection[Any]) -> None:
    result, _ = run("archiver", pg_conn)
    assert family(result, "pg_stat_archiver_archived_count").samples == (((), 0.0),)
    assert family(result, "pg_stat_archiver_failed_count").samples[0][1] == 0
    assert family(result, "pg_stat_archiver_last_archive_age").samples == ()  # never archived: no sample
    assert family(result, "pg_stat_archiver_archiving").samples[0][1] == 0


def test_postmaster_and_roles(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    result, _ = run("postmaster", pg_conn)
    started = family(result, "pg_postmaster_start_time_seconds").samples[0][1]
    assert time.time() - 3600 < started <= time.time()
    pg_conn.execute("DROP ROLE IF EXISTS limited_role")
    pg_conn.execute("CREATE ROLE limited_role LOGIN CONNECTION LIMIT 5 PASSWORD 'x'")
    roles, _ = run("roles", pg_conn)
    assert family(roles, "pg_roles_connection_limit").value(rolname="limited_role") == 5
    assert family(roles, "pg_roles_connection_limit").value(rolname="postgres") == -1
    assert family(roles, "pg_roles_connections").value(rolname="limited_role") == 0
    assert (family(roles, "pg_roles_connections").value(rolname="postgres") or 0) >= 1
    assert family(roles, "pg_roles_connections").value(rolname="pg_monitor") is None  # cannot log in
    assert family(roles, "pg_database_connection_limit").value(datname="postgres") == -1


def test_wraparound(pg_conn: psycopg.Connection[Any]) -> None:
    result, _ = run("wraparound", pg_conn)
    age = family(result, "pg_database_xid_age").value(datname="postgres")
    assert age is not None and age > 0
    assert family(result, "pg_database_xid_wraparound_ratio").value(datname="postgres") == age / 2**31
    assert family(result, "pg_database_xid_age").value(datname="template0") is not None  # no connections, still ages
    assert family(result, "pg_database_mxid_age").value(datname="postgres") is not None
    assert family(result, "pg_database_wraparound_age_datfrozenxid_seconds").value(datname="postgres") == age


def test_database_size_of_selected_databases(pg_conn: psycopg.Connection[Any]) -> None:
    spec = BY_NAME["database_size"]
    ctx = CollectContext(target="t", conn=pg_conn, server=detect_server(pg_conn), options=spec.options(),
                         previous=None, previous_at=None, now=time.time(), databases=("postgres",))
    result = spec.collect(ctx)
    sizes = family(result, "pg_database_size_bytes")
    assert [labels for labels, _ in sizes.samples] == [("postgres",)]
    assert sizes.samples[0][1] > 1024 * 1024
    # The store's resource_metrics.database_size_bytes: the total over the measured databases.
    assert result.records == {"total_bytes": sizes.samples[0][1], "databases": 1}
    assert spec.options().interval == 300  # pg_database_size is costly: every 5 minutes by default


# -- tables -------------------------------------------------------------------------------

def test_tables_statistics_sizes_and_vacuum_times(pg_cluster: Cluster) -> None:
    pg_cluster.execute("DROP DATABASE IF EXISTS tables_db")
    pg_cluster.execute("CREATE DATABASE tables_db")
    with pg_cluster.connect("tables_db") as conn:
        conn.execute("CREATE TABLE busy (id int PRIMARY KEY, payload text)")
        conn.execute("INSERT INTO busy SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g")
        conn.execute("DELETE FROM busy WHERE id <= 100")
        conn.execute("CREATE TABLE quiet (id int)")
        conn.execute("ANALYZE busy")
        deadline = time.monotonic() + 5
        while True:  # up to 14 the statistics collector gets the counts asynchronously
            result, _ = run("tables", conn)
            dead = family(result, "pg_stat_user_tables_n_dead_tup").value(relname="busy")
            if (dead or 0) >= 100 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    busy = {"datname": "tables_db", "schemaname": "public", "relname": "busy"}
    assert family(result, "pg_stat_user_tables_n_dead_tup").labels == ("datname", "schemaname", "relname")
    assert family(result, "pg_stat_user_tables_n_tup_ins").value(**busy) == 1000
    assert family(result, "pg_stat_user_tables_n_dead_tup").value(**busy) == 100
    assert (family(result, "pg_stat_user_tables_table_size_bytes").value(**busy) or 0) > 8192
    assert (family(result, "pg_stat_user_tables_index_size_bytes").value(**busy) or 0) >= 8192
    assert (family(result, "pg_stat_user_tables_last_analyze").value(**busy) or 0) > time.time() - 600
    assert family(result, "pg_stat_user_tables_last_vacuum").value(**busy) is None  # NULL: no sample
    assert family(result, "pg_statio_user_tables_heap_blocks_hit").value(**busy) is not None
    assert family(result, "pg_stat_user_tables_seq_scan").value(relname="quiet") is not None
    assert family(result, "pgperf_tables").value(datname="tables_db") == 2
    assert family(result, "pgperf_tables_truncated").value(datname="tables_db") == 0


def test_tables_limit_keeps_largest_and_busiest(pg_cluster: Cluster) -> None:
    from pgperf.collectors.tables import TablesOptions

    pg_cluster.execute("DROP DATABASE IF EXISTS limit_db")
    pg_cluster.execute("CREATE DATABASE limit_db")
    with pg_cluster.connect("limit_db") as conn:
        for i in range(6):
            conn.execute(f"CREATE TABLE small_{i} (id int)")
        conn.execute("CREATE TABLE large (id int)")
        conn.execute("INSERT INTO large SELECT generate_series(1, 50000)")
        conn.execute("VACUUM large")  # relpages, the size ranking's input, is set by VACUUM/ANALYZE
        deadline = time.monotonic() + 5
        while True:
            for _ in range(3):
                conn.execute("SELECT * FROM small_3")
            result, _ = run("tables", conn, options=TablesOptions(limit=2))
            served = {labels[2] for labels, _ in family(result, "pg_stat_user_tables_seq_scan").samples}
            if served == {"large", "small_3"} or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    assert served == {"large", "small_3"}
    assert family(result, "pgperf_tables").value(datname="limit_db") == 7
    assert family(result, "pgperf_tables_truncated").value(datname="limit_db") == 1
    assert family(result, "pgperf_tables_served").value(datname="limit_db") == 2


# -- every collector under load -------------------------------------------------------------

def test_every_collector_succeeds_under_pgbench(pg_cluster: Cluster, pgbench: Any) -> None:
    from helpers import make_config
    from pgperf import collectors
    from pgperf.sampler import TargetSampler

    config = make_config(pg_cluster.dsn())
    sampler = TargetSampler(config.resolved_targets()[0], config)
    sampler.open()
    try:
        with pgbench(clients=2):
            deadline = time.monotonic() + 8
            while True:  # the statistics of pgbench's sessions reach the views within seconds
                snap = sampler.sample()
                assert snap is not None and snap.up
                updates = snap.family("pg_stat_user_tables_n_tup_upd")
                if (updates and updates.value(relname="pgbench_accounts")) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        statuses = {s.name: s for s in snap.statuses}
        assert set(statuses) == {spec.name for spec in collectors.REGISTRY}
        failed = {n: s.error or s.disabled for n, s in statuses.items() if not s.success}
        assert not failed, failed
        names = {f.name for f in snap.families}
        assert snap.server is not None
        for spec in collectors.REGISTRY:  # every collector served something this version has
            expected = {m.name for m in spec.metrics if m.exists_on(snap.server.version_num)}
            assert spec.dynamic_metrics or not expected or names & expected, spec.name
        assert (snap.family("pg_stat_user_tables_n_tup_upd").value(relname="pgbench_accounts") or 0) > 0
    finally:
        sampler.close()


def test_tables_rows_mapped_by_name() -> None:
    """Canned rows: unknown columns are ignored, missing ones not served, NULL is no sample."""
    from datetime import UTC, datetime

    from pgperf.collectors.tables import families_from_rows

    row = {"datname": "d", "schemaname": "s", "relname": "r", "seq_scan": 3, "n_dead_tup": 7,
           "last_vacuum": None, "last_analyze": datetime(2024, 1, 1, tzinfo=UTC),
           "a_column_of_postgresql_99": 1, "table_size": 8192}
    fams = {f.name: f for f in families_from_rows([row], "d", total=5, limit=1)}
    assert fams["pg_stat_user_tables_seq_scan"].value(relname="r") == 3
    assert fams["pg_stat_user_tables_last_vacuum"].samples == ()
    assert fams["pg_stat_user_tables_last_analyze"].value(relname="r") == 1704067200
    assert "pg_stat_user_tables_idx_scan" not in fams  # column absent: family absent
    assert not any("postgresql_99" in name for name in fams)
    assert fams["pgperf_tables_truncated"].value(datname="d") == 1
    assert fams["pgperf_tables_served"].value(datname="d") == 1
