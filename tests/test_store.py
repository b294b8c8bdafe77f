"""The sample store against real PostgreSQL: schema, writer, spool, outage, retention."""

from __future__ import annotations

import gzip
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers import make_config, wait_until
from pgperf.monitor import Monitor
from pgperf.store import (
    MIGRATIONS,
    QueryRow,
    ResourceRow,
    SampleBatch,
    Spool,
    StoreClient,
    StoreSessions,
    StoreWriter,
    apply_retention,
    ensure_partitions,
    list_partitions,
    migrate,
)
from tools.cluster import Cluster

SEED_COLUMNS = {
    "query_performance_metrics": {"id", "query_id", "query_text", "calls", "total_time", "mean_time", "min_time",
                                  "max_time", "stddev_time", "rows_affected", "cache_hits", "cache_misses",
                                  "recorded_at"},
    "resource_metrics": {"id", "timestamp", "cpu_usage_percent", "memory_usage_bytes", "memory_usage_percent",
                         "disk_usage_bytes", "disk_usage_percent", "network_bytes_sent", "network_bytes_received",
                         "connection_count", "connection_utilization"},
    "performance_alerts": {"id", "alert_id", "severity", "metric", "message", "threshold_value", "current_value",
                           "timestamp", "acknowledged", "acknowledged_by", "acknowledged_at", "resolved_at",
                           "resolved_by"},
    "performance_reports": {"id", "report_id", "generated_at", "period_start", "period_end", "report_data"},
}


def store_config(monitored: str, store_dsn: str, spool: Path, **flags: Any) -> Any:
    return make_config(monitored, store={"enabled": True, "dsn": store_dsn, "spool_dir": str(spool),
                                         **flags.pop("store", {})}, **flags)


def test_migrations_idempotent_in_a_configured_schema(pg_cluster: Cluster, pg_conn: Any) -> None:
    pg_conn.execute("DROP SCHEMA IF EXISTS monitoring CASCADE")
    assert migrate(pg_conn, "monitoring") == [m.version for m in MIGRATIONS]
    assert migrate(pg_conn, "monitoring") == []
    for table, columns in SEED_COLUMNS.items():
        rows = pg_conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'monitoring' AND table_name = %s",
            (table,)).fetchall()
        present = {r[0] for r in rows}
        assert columns <= present, columns - present
        assert "target" in present
    assert pg_conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'uuid-ossp'").fetchone()[0] == 0


def test_restarts_add_no_partitions(pg_conn: Any) -> None:
    pg_conn.execute("DROP SCHEMA IF EXISTS restarts CASCADE")
    migrate(pg_conn, "restarts")
    today = datetime.now(UTC).date()
    days = [today + timedelta(days=i) for i in range(4)]
    ensure_partitions(pg_conn, "restarts", days)
    before = list_partitions(pg_conn, "restarts")
    assert len(before) == 12  # three partitioned tables, four days
    for _ in range(10):
        migrate(pg_conn, "restarts")
        assert ensure_partitions(pg_conn, "restarts", days) == []
    assert list_partitions(pg_conn, "restarts") == before


def test_retention_drops_exactly_the_expired_partitions(pg_conn: Any) -> None:
    pg_conn.execute("DROP SCHEMA IF EXISTS retention CASCADE")
    migrate(pg_conn, "retention")
    now = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
    days = [date(2026, 6, 15) - timedelta(days=i) for i in range(0, 45)]
    ensure_partitions(pg_conn, "retention", days)
    pg_conn.execute("INSERT INTO retention.performance_alerts (alert_id, severity, metric, message, status, \"timestamp\")"
                    " VALUES ('old', 'warning', 'x', 'old', 'resolved', %s), ('open', 'warning', 'x', 'open', 'firing', %s)",
                    (now - timedelta(days=100), now - timedelta(days=100)))
    result = apply_retention(pg_conn, "retention", query_days=30, resource_days=7, alerts_days=30, reports_days=90,
                             now=now)
    remaining = list_partitions(pg_conn, "retention")
    # A partition goes once its whole day is before the cut-off day (now - N days).
    q_cut, r_cut = date(2026, 5, 16), date(2026, 6, 8)
    assert {d for (t, d) in remaining if t == "query_samples"} == {d for d in days if d >= q_cut}
    assert {d for (t, d) in remaining if t == "resource_metrics"} == {d for d in days if d >= r_cut}
    # Wait profiles explain the statements' rows and are kept as long.
    assert {d for (t, d) in remaining if t == "statement_wait_profiles"} == {d for d in days if d >= q_cut}
    expected_dropped = {f"query_samples_p{d:%Y%m%d}" for d in days if d < q_cut} | \
                       {f"statement_wait_profiles_p{d:%Y%m%d}" for d in days if d < q_cut} | \
                       {f"resource_metrics_p{d:%Y%m%d}" for d in days if d < r_cut}
    assert set(result.dropped) == expected_dropped
    assert result.alerts_deleted == 1  # the resolved one; an open alert is kept whatever its age
    assert pg_conn.execute("SELECT alert_id FROM retention.performance_alerts").fetchall() == [("open",)]


def test_samples_reach_a_separate_store_and_stay_consistent(pg_cluster: Cluster, make_cluster: Any,
                                                            pgbench: Any, tmp_path: Path) -> None:
    store: Cluster = make_cluster()
    config = store_config(pg_cluster.dsn(), store.dsn(), tmp_path / "spool", store={"schema": "separate"})
    monitor = Monitor(config)
    with pgbench(clients=2):
        monitor.initialize()
        try:
            wait_until(lambda: store.execute("SELECT count(*) FROM separate.query_performance_metrics")[0][0] > 0,
                       message="query rows in the store")
            pg_cluster.execute("SELECT pg_stat_statements_reset()")
            time.sleep(3)
        finally:
            monitor.stop()
    counts = store.execute("SELECT (SELECT count(*) FROM separate.resource_metrics),"
                           " (SELECT count(*) FROM separate.query_performance_metrics)")[0]
    assert counts[0] >= 4 and counts[1] > 0
    bad = store.execute("SELECT count(*) FROM separate.query_performance_metrics WHERE calls < 0 OR total_time < 0"
                        " OR (calls > 0 AND mean_time <> round(total_time / calls, 3))")[0][0]
    assert bad == 0
    if pg_cluster.major >= 14:
        assert store.execute("SELECT bool_or(statements_reset) FROM separate.resource_metrics")[0][0]
    targets = store.execute("SELECT DISTINCT target FROM separate.resource_metrics")
    assert targets == [(config.resolved_targets()[0].name,)]
    # Nothing was written into the monitored database.
    assert pg_cluster.execute("SELECT to_regclass('separate.resource_metrics')")[0][0] is None
    assert store.execute("SELECT sum(xact_commit) FROM separate.resource_metrics")[0][0] > 0


def test_store_outage_loses_nothing(pg_cluster: Cluster, make_cluster: Any, pgbench: Any, tmp_path: Path) -> None:
    store: Cluster = make_cluster()
    config = store_config(pg_cluster.dsn(), store.dsn(), tmp_path / "spool")
    monitor = Monitor(config)
    taken: list[float] = []
    monitor.on("sample", lambda snap: taken.append(snap.taken_at))
    with pgbench(clients=2):
        monitor.initialize()
        try:
            wait_until(lambda: store.execute("SELECT count(*) FROM pgperf.resource_metrics")[0][0] >= 2,
                       message="first rows")
            store.stop("fast")
            down_from = time.time()
            time.sleep(6)
            down_to = time.time()
            assert monitor.store is not None and not monitor.store.up
            assert len(monitor.store.spool) > 0
            store.start()
            wait_until(lambda: monitor.store is not None and len(monitor.store.spool) == 0 and monitor.store.up,
                       timeout=30, message="spool drained")
            during = [t for t in taken if down_from <= t <= down_to]
            rows = store.execute(
                'SELECT count(*) FROM pgperf.resource_metrics WHERE "timestamp" BETWEEN to_timestamp(%s) AND to_timestamp(%s)',
                params=(down_from, down_to))[0][0]
            assert len(during) >= 4
            assert rows >= 0.8 * len(during), (rows, len(during))
            families = {f.name: f for f in monitor.store.families()}
            assert families["pgperf_store_spool_dropped_samples_total"].samples[0][1] == 0
        finally:
            monitor.stop()
    # Written in order with their original timestamps: no duplicates, one row per sample.
    dupes = store.execute('SELECT count(*) - count(DISTINCT "timestamp") FROM pgperf.resource_metrics')[0][0]
    assert dupes == 0


def test_stop_during_outage_leaves_the_spool_for_the_next_start(pg_cluster: Cluster, make_cluster: Any,
                                                                 tmp_path: Path) -> None:
    store: Cluster = make_cluster()
    spool = tmp_path / "spool"
    config = store_config(pg_cluster.dsn(), store.dsn(), spool)
    first = Monitor(config)
    first.initialize()
    wait_until(lambda: store.execute("SELECT count(*) FROM pgperf.resource_metrics")[0][0] >= 1, message="rows")
    store.stop("fast")
    time.sleep(2.5)
    first.stop(timeout=2)
    left = sorted(spool.glob("*.json.gz"))
    assert left, "samples taken during the outage must stay on disk"
    left_data = [gzip.decompress(p.read_bytes()) for p in left]
    store.start()
    second = Monitor(config)
    second.start()
    try:
        wait_until(lambda: not list(spool.glob("*.json.gz")), timeout=20, message="spool drained by the next start")
    finally:
        second.stop()
    taken = {round(SampleBatch.from_json(data).taken_at, 3) for data in left_data}
    stored = {round(r[0], 3) for r in store.execute('SELECT extract(epoch FROM "timestamp")::float8 FROM pgperf.resource_metrics')}
    assert taken <= stored  # every spooled sample written with its original time
    assert store.execute("SELECT count(*) FROM pgperf.resource_metrics")[0][0] >= len(left) + 1


def test_rejected_sample_is_kept_aside_and_others_written(pg_cluster: Cluster, tmp_path: Path) -> None:
    pg_cluster.execute("DROP SCHEMA IF EXISTS rejects CASCADE")
    config = store_config(pg_cluster.dsn(), pg_cluster.dsn(), tmp_path / "spool", store={"schema": "rejects"})
    from pgperf.store import StoreWriter

    writer = StoreWriter(config)
    writer.start()
    try:
        now = time.time()
        bad_row = QueryRow(config.resolved_targets()[0].name, now, 1.0, "1", "db", "u", "select", -5, 1.0, 1.0, 1.0,
                           1.0, 0.0, 0, 0, 0)  # negative calls violate a CHECK
        writer.submit(SampleBatch("t", 1, now, ResourceRow("t", now, pg_up=True), [bad_row]))
        writer.submit(SampleBatch("t", 2, now + 1, ResourceRow("t", now + 1, pg_up=True), []))
        wait_until(lambda: writer.counters.written == 1 and writer.counters.rejected == 1, message="one written, one rejected")
        assert len(list((tmp_path / "spool" / "rejected").glob("*.json.gz"))) == 1
    finally:
        writer.stop()


def test_spool_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=2000)
    batches = [SampleBatch("t", i, 1000.0 + i, ResourceRow("y" * 50, 1000.0 + i),
                           [QueryRow("t", 1000.0 + i, 1.0, str(i), None, None, "z" * 400, 1, 1.0, 1.0, 1.0, 1.0, 0.0,
                                     0, 0, 0)]) for i in range(30)]
    for b in batches:
        spool.append(b)
    assert spool.dropped > 0
    assert spool.bytes <= 2000
    oldest = spool.oldest()
    assert oldest is not None
    kept = []
    while (item := spool.oldest()) is not None:
        kept.append(item[1].seq)
        spool.remove(item[0])
    assert kept == sorted(kept) and kept[-1] == 29  # newest kept, in order
    assert len(kept) + spool.dropped == 30
    spool.close()


def test_spool_refuses_a_second_process(tmp_path: Path) -> None:
    from pgperf.store import SpoolLocked

    first = Spool(tmp_path, 10_000)
    with pytest.raises(SpoolLocked, match="in use by another pgperf process"):
        Spool(tmp_path, 10_000)
    first.close()


def test_store_client_reports_unreachable_store(tmp_path: Path) -> None:
    from pgperf.store import StoreUnavailable
    from tools.cluster import free_port

    config = make_config(f"postgresql://postgres:secret-pw@127.0.0.1:{free_port()}/postgres",
                         connection={"connect_timeout": 1}, store={"enabled": True, "spool_dir": str(tmp_path)})
    client = StoreClient(config)
    with pytest.raises(StoreUnavailable) as info:
        client.migrate()
    client.close()
    assert "unreachable" in str(info.value) and "secret-pw" not in str(info.value)


def test_monitor_api(pg_cluster: Cluster, pgbench: Any, tmp_path: Path) -> None:
    pg_cluster.execute("DROP SCHEMA IF EXISTS api CASCADE")
    monitor = Monitor.for_profile("production", pg_cluster.dsn(), env={}, sampling_interval=60,
                                  store={"schema": "api", "spool_dir": str(tmp_path / "spool")})
    samples: list[Any] = []
    monitor.on("sample", samples.append)
    with pytest.raises(ValueError, match="unknown event"):
        monitor.on("nope", print)
    monitor.initialize()
    try:
        with pgbench(clients=1):
            time.sleep(1)
            queries = monitor.track_query_performance()
        assert queries and all(q.calls > 0 for q in queries)
        assert any("pgbench_accounts" in q.query_text for q in queries)
        resources = monitor.monitor_resource_usage()
        assert resources.pg_up and resources.connection_count and resources.connection_count >= 1
        assert resources.memory_usage_percent is not None
        assert len(samples) >= 3
        with pg_cluster.connect() as conn:
            conn.execute("INSERT INTO api.performance_alerts (alert_id, severity, metric, message)"
                         " VALUES ('a1', 'warning', 'PgperfSlowQueries', 'slow')")
        acked: list[Any] = []
        monitor.on("alert_acknowledged", acked.append)
        alert = monitor.acknowledge_alert("a1", "admin-user")
        assert alert.acknowledged and alert.acknowledged_by == "admin-user" and alert.status == "acknowledged"
        assert acked == [alert]
        resolved = monitor.resolve_alert("a1", "admin-user")
        assert resolved.status == "resolved" and resolved.resolved_by == "admin-user" and resolved.resolved_at
        from pgperf.alerts import AlertNotFound, InvalidTransition

        with pytest.raises(InvalidTransition):
            monitor.acknowledge_alert("a1", "late")
        with pytest.raises(AlertNotFound):
            monitor.resolve_alert("missing", "x")
        wait_until(lambda: pg_cluster.execute("SELECT count(*) FROM api.resource_metrics")[0][0] >= 3,
                   message="API samples stored")
    finally:
        monitor.stop()


def test_concurrent_submit_keeps_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000_000)
    threads = [threading.Thread(target=lambda i=i: spool.append(SampleBatch("t", i, 1000.0 + i, ResourceRow("t", 1000.0 + i), [])))
               for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    order = []
    while (item := spool.oldest()) is not None:
        order.append(item[1].taken_at)
        spool.remove(item[0])
    assert order == sorted(order) and len(order) == 20
    spool.close()


def _session_settings(conn: Any) -> dict[str, Any]:
    names = ("application_name", "TimeZone", "statement_timeout", "lock_timeout",
             "idle_in_transaction_session_timeout")
    settings: dict[str, Any] = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in names}
    settings["autocommit"] = conn.autocommit
    return settings


def test_every_store_session_comes_from_one_factory(pg_cluster: Cluster, tmp_path: Path) -> None:
    """The writer, its maintenance and the client's pool open their sessions through
    StoreSessions: the same limits, UTC and autocommit on each, told apart by name."""
    config = store_config(pg_cluster.dsn(), pg_cluster.dsn(), tmp_path / "spool",
                          connection={"statement_timeout": 3})
    sessions = StoreSessions(config)
    expected = {"TimeZone": "UTC", "statement_timeout": "30s", "lock_timeout": "5s",
                "idle_in_transaction_session_timeout": "1min", "autocommit": True}
    with sessions.connect() as writer_session:
        assert _session_settings(writer_session) == {**expected, "application_name": "pgperf-store"}
    pool = sessions.pool()
    pool.open(wait=True)
    try:
        with pool.connection() as api_session:
            assert _session_settings(api_session) == {**expected, "application_name": "pgperf-api"}
    finally:
        pool.close()
    # The writer and the client use it: their sessions carry its names.
    writer = StoreWriter(config, spool_dir=tmp_path / "spool", sessions=sessions)
    client = StoreClient(config, sessions=sessions)
    writer.start()
    try:
        with client.connection() as conn:
            assert _session_settings(conn)["application_name"] == "pgperf-api"
            wait_until(lambda: pg_cluster.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgperf-store'")[0][0] >= 1,
                message="the writer's session")
    finally:
        writer.stop()
        client.close()
