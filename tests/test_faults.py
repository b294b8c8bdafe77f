"""Fault injection with real processes: what pgperf does when its database, its store or
Alertmanager misbehave.

For each fault: ``pg_up`` 0 within one sampling interval with ``pgperf_connection_error``
naming the kind of error; pgperf's backends never above its pool size; no sample lost
(samples taken = rows stored + spooled + dropped at the bound, and dropped is 0 unless the
bound is the fault); log lines that say what happened and hold no secret; recovery
without a restart. The measured times go to docs/reliability.md (``make reliability``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from helpers import Exporter, make_config, parse, value, wait_until
from logfmt_reader import parse_logfmt
from pgperf.collectors import REGISTRY, CollectorResult, CollectorSpec
from pgperf.logs import LogFormat, StructuredFormatter
from pgperf.redact import RedactingFilter
from tools.cluster import Cluster, free_port

pytestmark = [pytest.mark.faults, pytest.mark.slow]

SECRET = "Fault-Secret-9d2f"  # the monitoring role's password
STORE_SECRET = "Store-Secret-71ab"  # the store role's password
OTHER_SECRET = "Client-Secret-55e0"
INTERVAL = 1.0
POOL = 2

RESULTS: dict[str, dict[str, Any]] = {}
LOG_TEXT: list[str] = []
STRUCTURED: dict[LogFormat, io.StringIO] = {"logfmt": io.StringIO(), "json": io.StringIO()}


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def captured_logs() -> Iterator[io.StringIO]:
    """Everything pgperf logs during the suite, as ``pgperf serve`` would print it (with
    its redacting filter) and raw (without), to look for secrets at the end."""
    printed, raw = io.StringIO(), io.StringIO()
    handlers = []
    for stream, redacting in ((printed, True), (raw, False)):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        if redacting:
            handler.addFilter(RedactingFilter())
        handlers.append(handler)
    # And as --log.format logfmt and json would write them, with the same filter.
    for fmt, stream in STRUCTURED.items():
        handler = logging.StreamHandler(stream)
        handler.setFormatter(StructuredFormatter(fmt))
        handler.addFilter(RedactingFilter())
        handlers.append(handler)
    for handler in handlers:
        logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    yield printed
    for handler in handlers:
        logging.getLogger().removeHandler(handler)
    LOG_TEXT.append(printed.getvalue())
    LOG_TEXT.append(raw.getvalue())


@pytest.fixture(scope="module")
def store(pg_bindir: Any) -> Iterator[Cluster]:
    cluster = Cluster(pg_bindir, name="pgperf-fault-store", preload_pg_stat_statements=False).start()
    cluster.execute(f"CREATE ROLE store LOGIN PASSWORD '{STORE_SECRET}'")
    cluster.execute("GRANT CREATE ON DATABASE postgres TO store")
    yield cluster
    cluster.destroy()


def _monitored(pg_bindir: Any, **settings: Any) -> Cluster:
    cluster = Cluster(pg_bindir, name="pgperf-fault", settings=settings).start()
    cluster.execute(f"CREATE ROLE pgperf LOGIN PASSWORD '{SECRET}' IN ROLE pg_monitor")
    cluster.execute(f"CREATE ROLE app LOGIN PASSWORD '{OTHER_SECRET}'")
    cluster.execute("CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 1000) g")
    cluster.execute("GRANT SELECT ON orders TO app")
    return cluster


@pytest.fixture
def monitored(pg_bindir: Any) -> Iterator[Cluster]:
    cluster = _monitored(pg_bindir)
    yield cluster
    cluster.destroy()


def fault_config(monitored_dsn: str, store_cluster: Cluster, tmp_path: Path, name: str, **flags: Any) -> Any:
    store_flags = {"enabled": True, "dsn": store_cluster.dsn(user="store", password=STORE_SECRET),
                   "schema": "faults", "spool_dir": str(tmp_path / "spool"), **flags.pop("store", {})}
    connection = {"pool_size": POOL, "max_database_connections": POOL, "connect_timeout": 2,
                  **flags.pop("connection", {})}
    return make_config(monitored_dsn, target_name=name, sampling_interval=INTERVAL, store=store_flags,
                       connection=connection, **flags)


def pgperf_dsn(cluster: Cluster) -> str:
    return cluster.dsn(user="pgperf", password=SECRET)


class Watch:
    """Polls pgperf's backends on the monitored server (highest count seen)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.cluster.dsn(), connect_timeout=1, autocommit=True) as conn:
                    while not self._stop.is_set():
                        n = conn.execute("SELECT count(*) FROM pg_stat_activity"
                                         " WHERE application_name LIKE 'pgperf%' AND usename = 'pgperf'").fetchone()
                        self.peak = max(self.peak, int(n[0]) if n else 0)
                        time.sleep(0.02)
            except psycopg.Error:
                time.sleep(0.1)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


@contextmanager
def exporter(config: Any, extra: tuple[CollectorSpec, ...] = ()) -> Iterator[Exporter]:
    """pgperf serving *config* in this process, with the collectors of *extra* beside the registry's."""
    running = Exporter(config, registry=(*REGISTRY, *extra)).start()
    try:
        yield running
    finally:
        running.stop()


def metrics(running: Exporter) -> dict[str, list[tuple[dict[str, str], float]]]:
    return parse(requests.get(running.url + "/metrics", timeout=5).text)


def up(running: Exporter) -> float | None:
    return value(metrics(running), "pg_up")


def error_kind(running: Exporter) -> str | None:
    for labels, v in metrics(running).get("pgperf_connection_error", []):
        if v == 1:
            return labels["kind"]
    return None


def timed(check: Callable[[], Any], timeout: float, message: str) -> float:
    """Seconds until *check* holds."""
    started = time.monotonic()
    wait_until(check, timeout=timeout, interval=0.05, message=message)
    return time.monotonic() - started


def accounting(running: Exporter, store: Cluster, name: str) -> dict[str, int]:
    """Stop the exporter (writing or spooling what it holds) and count: samples taken,
    rows stored, samples spooled and dropped."""
    running.stop()
    sampler = running.monitor.sampler.targets[name]
    writer = running.monitor.store
    assert writer is not None
    taken = sampler.counters.samples
    stored = store.execute("SELECT count(*) FROM faults.resource_metrics WHERE target = %s", params=(name,))[0][0]
    spooled = len(list(Path(writer.spool.dir).glob("*.json.gz")))
    return {"taken": taken, "stored": stored, "spooled": spooled, "dropped": writer.spool.dropped}


def record(name: str, detect: float | None, recover: float | None, counts: dict[str, int], note: str = "") -> None:
    lost = counts["taken"] - counts["stored"] - counts["spooled"] - counts["dropped"]
    RESULTS[name] = {"detect_s": detect, "recover_s": recover, "lost": lost, "dropped": counts["dropped"],
                     "taken": counts["taken"], "note": note}
    assert lost == 0, (name, counts)


def _terminate_pgperf(cluster: Cluster) -> None:
    cluster.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'pgperf'")


# -- database faults ---------------------------------------------------------------------

def connection_fault(name: str, cluster: Cluster, store: Cluster, tmp_path: Path, kind: str,
                     inject: Callable[[], None], heal: Callable[[], None]) -> None:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    config = fault_config(pgperf_dsn(cluster), store, tmp_path, slug)
    watch = Watch(cluster)
    with exporter(config) as running:
        wait_until(lambda: up(running) == 1, timeout=20, message="pg_up 1")
        started = time.monotonic()
        inject()
        detect = timed(lambda: up(running) == 0, 10, f"{name}: pg_up 0")
        assert time.monotonic() - started <= INTERVAL + 2.5  # within one interval (+ connect time)
        assert error_kind(running) == kind
        assert running.get("/readyz").status_code == 503
        assert running.get("/metrics").status_code == 200
        time.sleep(2 * INTERVAL)  # a few failed samples: logged once, counted
        heal()
        recover = timed(lambda: up(running) == 1, 30, f"{name}: pg_up back to 1")
        wait_until(lambda: running.monitor.store and len(running.monitor.store.spool) == 0, timeout=20,
                   message="store caught up")
        counts = accounting(running, store, slug)
    peak = watch.stop()
    assert peak <= POOL, f"{name}: {peak} pgperf backends with a pool of {POOL}"
    record(name, detect, recover, counts)


def test_database_down_at_start(monitored: Cluster, store: Cluster, tmp_path: Path, captured_logs: io.StringIO) -> None:
    monitored.stop("fast")
    config = fault_config(pgperf_dsn(monitored), store, tmp_path, "down-at-start")
    with exporter(config) as running:
        started = time.monotonic()
        detect = timed(lambda: up(running) == 0, 10, "pg_up 0 at start")
        assert error_kind(running) == "connection_refused"
        monitored.start()
        healed = time.monotonic()
        recover = timed(lambda: up(running) == 1, 30, "pg_up 1 once PostgreSQL started")
        assert healed - started < 30
        wait_until(lambda: running.monitor.store and len(running.monitor.store.spool) == 0, timeout=20,
                   message="store caught up")
        counts = accounting(running, store, "down-at-start")
    record("database down at start", detect, recover, counts)
    assert "database unreachable (connection_refused)" in captured_logs.getvalue()


def test_database_restarted_mid_sample(monitored: Cluster, store: Cluster, tmp_path: Path,
                                       captured_logs: io.StringIO) -> None:
    """pg_ctl restart -m immediate: a crash-like stop and a recovery. The sample in flight
    loses its connection; the next ones reconnect."""
    slow = CollectorSpec(name="slow_scan", description="a long-running collector query",
                         collect=lambda ctx: (ctx.conn.execute("SELECT pg_sleep(0.9)"), CollectorResult(()))[1],
                         metrics=())
    config = fault_config(pgperf_dsn(monitored), store, tmp_path, "restart")
    watch = Watch(monitored)
    with exporter(config, extra=(slow,)) as running:  # the slow collector keeps a query in flight most of the time
        wait_until(lambda: up(running) == 1, timeout=20, message="pg_up 1")
        before = value(metrics(running), "pg_postmaster_start_time_seconds")
        errors_before = sum(v for _, v in metrics(running).get("pgperf_connection_errors_total", []))
        started = time.monotonic()
        monitored.restart("immediate")
        restarted = time.monotonic() - started
        detect = timed(lambda: value(metrics(running), "pg_postmaster_start_time_seconds") not in (None, before),
                       20, "new postmaster start time")
        recover = timed(lambda: up(running) == 1, 20, "pg_up 1 after the restart")
        errors = sum(v for _, v in metrics(running).get("pgperf_connection_errors_total", []))
        wait_until(lambda: running.monitor.store and len(running.monitor.store.spool) == 0, timeout=20,
                   message="store caught up")
        counts = accounting(running, store, "restart")
    assert watch.stop() <= POOL
    # When the restart falls between two samples no sample fails: the pool drops the dead
    # connection and the next sample reconnects. Either way nothing is lost.
    record("database restarted mid-sample (pg_ctl restart -m immediate)", detect, recover, counts,
           note=f"restart took {restarted:.1f}s; {int(errors - errors_before)} sample(s) failed during it")


def test_pg_hba_entry_removed(monitored: Cluster, store: Cluster, tmp_path: Path) -> None:
    hba = monitored.data / "pg_hba.conf"
    original = hba.read_text()

    def inject() -> None:
        hba.write_text(original.replace("host all all 127.0.0.1/32 scram-sha-256\n", ""))
        monitored.reload()
        _terminate_pgperf(monitored)  # existing sessions keep working; new ones are refused

    def heal() -> None:
        hba.write_text(original)
        monitored.reload()

    connection_fault("pg_hba entry removed", monitored, store, tmp_path, "rejected_by_pg_hba", inject, heal)


def test_wrong_password(monitored: Cluster, store: Cluster, tmp_path: Path) -> None:
    def inject() -> None:
        monitored.execute("ALTER ROLE pgperf PASSWORD 'rotated-elsewhere'")
        _terminate_pgperf(monitored)

    def heal() -> None:
        monitored.execute(f"ALTER ROLE pgperf PASSWORD '{SECRET}'")

    connection_fault("wrong password", monitored, store, tmp_path, "authentication_failed", inject, heal)


def test_max_connections_exhausted(pg_bindir: Any, store: Cluster, tmp_path: Path) -> None:
    cluster = _monitored(pg_bindir, max_connections=20)
    hogs: list[psycopg.Connection[Any]] = []

    def inject() -> None:
        _terminate_pgperf(cluster)
        time.sleep(0.2)
        while True:  # other clients take every slot left to non-superusers
            try:
                hogs.append(psycopg.connect(cluster.dsn(user="app", password=OTHER_SECRET), connect_timeout=2))
            except psycopg.OperationalError:
                break
        _terminate_pgperf(cluster)

    def heal() -> None:
        for conn in hogs:
            conn.close()

    try:
        connection_fault("max_connections exhausted by other clients", cluster, store, tmp_path,
                         "too_many_connections", inject, heal)
    finally:
        heal()
        cluster.destroy()


def test_access_exclusive_lock_for_60s(monitored: Cluster, store: Cluster, tmp_path: Path) -> None:
    """A table locked for 60 s: pgperf's queries that need it give up at lock_timeout
    (1 s) instead of queueing behind the lock; sampling goes on every second."""
    config = fault_config(pgperf_dsn(monitored), store, tmp_path, "lock",
                          collectors={"tables": {"enabled": True}, "database_size": {"enabled": True, "interval": 1}})
    stop = threading.Event()
    longest_wait = 0.0

    def watch_lock_waits() -> None:
        nonlocal longest_wait
        with monitored.connect() as conn:
            while not stop.is_set():
                row = conn.execute(
                    "SELECT max(extract(epoch FROM now() - state_change)) FROM pg_stat_activity"
                    " WHERE usename = 'pgperf' AND wait_event_type = 'Lock'").fetchone()
                if row and row[0]:
                    longest_wait = max(longest_wait, float(row[0]))
                time.sleep(0.05)

    with exporter(config) as running:
        wait_until(lambda: up(running) == 1, timeout=20, message="pg_up 1")
        samples_before = value(metrics(running), "pgperf_samples_total") or 0
        watcher = threading.Thread(target=watch_lock_waits)
        watcher.start()
        with monitored.connect() as holder:
            holder.autocommit = False
            holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert up(running) == 1
                time.sleep(1)
            holder.rollback()
        stop.set()
        watcher.join()
        after = metrics(running)
        samples = (value(after, "pgperf_samples_total") or 0) - samples_before
        wait_until(lambda: running.monitor.store and len(running.monitor.store.spool) == 0, timeout=20,
                   message="store caught up")
        counts = accounting(running, store, "lock")
    assert samples >= 50, samples  # sampling every second went on
    assert longest_wait <= config.connection.lock_timeout + 0.5, longest_wait
    record("ACCESS EXCLUSIVE lock held 60 s on a monitored table", None, None, counts,
           note=f"pg_up stayed 1; {int(samples)} samples in 60 s; longest lock wait of a pgperf query {longest_wait:.2f}s")


def test_collector_slower_than_statement_timeout(monitored: Cluster, store: Cluster, tmp_path: Path,
                                                 captured_logs: io.StringIO) -> None:
    healed = threading.Event()

    def too_slow(ctx: Any) -> CollectorResult:
        ctx.conn.execute("SELECT pg_sleep(0.01)" if healed.is_set() else "SELECT pg_sleep(5)")
        return CollectorResult(())

    spec = CollectorSpec(name="too_slow", description="a query slower than statement_timeout, until healed",
                         collect=too_slow, metrics=())
    config = fault_config(pgperf_dsn(monitored), store, tmp_path, "slow", connection={"statement_timeout": "500ms"})
    with exporter(config, extra=(spec,)) as running:
        started = time.monotonic()
        detect = timed(lambda: value(metrics(running), "pg_scrape_collector_success", collector="too_slow") == 0,
                       10, "the slow collector reported failing")
        samples = metrics(running)
        assert value(samples, "pg_up") == 1
        assert value(samples, "pg_scrape_collector_success", collector="database") == 1
        assert (value(samples, "pgperf_sampling_duration_seconds") or 9) < INTERVAL + 0.5
        running_queries = monitored.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'pgperf' AND query LIKE '%pg_sleep(5)%'"
            " AND state = 'active'")[0][0]
        assert running_queries == 0  # cancelled by the server, not left running
        healed.set()  # the query is fast again: the same collector succeeds on the next sample
        recover = timed(lambda: value(metrics(running), "pg_scrape_collector_success", collector="too_slow") == 1,
                        10, "the collector succeeding again")
        wait_until(lambda: running.monitor.store and len(running.monitor.store.spool) == 0, timeout=20,
                   message="store caught up")
        counts = accounting(running, store, "slow")
    assert time.monotonic() - started < 30
    assert "collector too_slow failed (statement_timeout)" in captured_logs.getvalue()
    record("a collector query slower than statement_timeout", detect, recover, counts,
           note="that collector reports success 0 (statement_timeout); pg_up and the others stay 1; "
                "recovery: success 1 again once its query is fast")


# -- store faults ---------------------------------------------------------------------------

def test_store_down_for_30s(monitored: Cluster, store: Cluster, tmp_path: Path, captured_logs: io.StringIO) -> None:
    config = fault_config(pgperf_dsn(monitored), store, tmp_path, "store-down")
    with exporter(config) as running:
        wait_until(lambda: running.monitor.store and running.monitor.store.up, timeout=20, message="store up")
        store.stop("fast")
        detect = timed(lambda: value(metrics(running), "pgperf_store_up") == 0, 10, "pgperf_store_up 0")
        time.sleep(30 - detect)
        assert up(running) == 1  # sampling is not affected
        spooled = value(metrics(running), "pgperf_store_spool_samples") or 0
        assert spooled >= 20
        store.start()
        recover = timed(lambda: running.monitor.store and len(running.monitor.store.spool) == 0, 60,
                        "spool drained into the store")
        counts = accounting(running, store, "store-down")
    assert counts["dropped"] == 0
    record("store database down for 30 s", detect, recover, counts,
           note=f"{int(spooled)} samples waited in the spool, written in order with their times")
    assert "samples go to the spool" in captured_logs.getvalue()


def test_spool_bound_reached(monitored: Cluster, store: Cluster, tmp_path: Path, captured_logs: io.StringIO) -> None:
    config = fault_config(pgperf_dsn(monitored), store, tmp_path, "spool-full", store={"spool_max_bytes": 8192})
    with exporter(config) as running:
        wait_until(lambda: running.monitor.store and running.monitor.store.up, timeout=20, message="store up")
        store.stop("fast")
        detect = timed(lambda: (value(metrics(running), "pgperf_store_spool_dropped_samples_total") or 0) > 0, 60,
                       "samples dropped at the spool's bound")
        store.start()
        recover = timed(lambda: running.monitor.store and len(running.monitor.store.spool) == 0, 60, "spool drained")
        counts = accounting(running, store, "spool-full")
    assert counts["dropped"] > 0
    record("the spool's size bound reached", detect, recover, counts,
           note=f"{counts['dropped']} oldest samples dropped, counted in pgperf_store_spool_dropped_samples_total")
    assert "store spool full" in captured_logs.getvalue()


def test_sigterm_during_store_outage(monitored: Cluster, store: Cluster, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGPERF_")}
    env.update(PGPERF_STORE_DSN=store.dsn(user="store", password=STORE_SECRET), PGPERF_STORE_SCHEMA="faults",
               PGPERF_STORE_SPOOL_DIR=str(spool), PGPERF_TARGET_NAME="sigterm")

    def serve() -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "pgperf", "serve", "--dsn", pgperf_dsn(monitored),
                                 "--profile", "development", "--sampling-interval", "1",
                                 "--web.listen-address", f"127.0.0.1:{port}"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _get(url + "/metrics") and "pg_up 1.0" in _get(url + "/metrics"), timeout=30,
                   message="serving")
        return proc, url

    first, url = serve()
    store.stop("fast")
    wait_until(lambda: "pgperf_store_up 0.0" in _get(url + "/metrics"), timeout=20, message="store down seen")
    time.sleep(3)
    taken_first = value(parse(_get(url + "/metrics")), "pgperf_samples_total") or 0
    stopped = time.monotonic()
    first.send_signal(signal.SIGTERM)
    out_first, _ = first.communicate(timeout=30)
    shutdown = time.monotonic() - stopped
    assert first.returncode == 0, out_first
    left = sorted(spool.glob("*.json.gz"))
    assert left, "the samples taken during the outage stay on disk"
    store.start()
    started = time.monotonic()
    second, url2 = serve()
    wait_until(lambda: not list(spool.glob("*.json.gz")), timeout=30, message="next start drains the spool")
    recover = time.monotonic() - started
    second.send_signal(signal.SIGTERM)
    out_second, _ = second.communicate(timeout=30)
    LOG_TEXT.extend([out_first, out_second])
    stored = store.execute("SELECT count(*) FROM faults.resource_metrics WHERE target = 'sigterm'")[0][0]
    assert stored >= taken_first
    assert "left in the spool" in out_first and "from an earlier run wait in" in out_second
    RESULTS["SIGTERM during a store outage"] = {
        "detect_s": None, "recover_s": recover, "lost": 0, "dropped": 0, "taken": int(taken_first),
        "note": f"exit 0 in {shutdown:.1f}s with {len(left)} samples left in the spool; the next start wrote them"}


def _get(url: str) -> str:
    try:
        return requests.get(url, timeout=2).text
    except requests.ConnectionError:
        return ""


# -- Alertmanager and HTTP ----------------------------------------------------------------------

def test_alertmanager_unreachable_while_acknowledging(monitored: Cluster, store: Cluster, tmp_path: Path) -> None:
    token = "fault-operator-token-1234"
    config = fault_config(pgperf_dsn(monitored), store, tmp_path, "am-down", api={"token": token},
                          alerts={"alertmanager_url": f"http://127.0.0.1:{free_port()}", "request_timeout": 1})
    payload = {"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "PgperfDiskUsageHigh",
                                                                          "severity": "error"},
                                           "annotations": {"summary": "disk"}, "startsAt": "2026-11-29T10:00:00Z",
                                           "fingerprint": "am-down"}]}
    headers = {"Authorization": f"Bearer {token}"}
    with exporter(config) as running:
        wait_until(lambda: running.monitor.store and running.monitor.store.up, timeout=20, message="store up")
        assert requests.post(running.url + "/api/v1/alerts/webhook", json=payload, headers=headers, timeout=5).ok
        alert_id = running.monitor.list_alerts()[0].alert_id
        started = time.monotonic()
        response = requests.post(f"{running.url}/api/v1/alerts/{alert_id}/ack", json={"by": "oncall"},
                                 headers=headers, timeout=10)
        detect = time.monotonic() - started
        assert response.status_code == 502 and "nothing was recorded" in response.json()["error"]
        alert = running.monitor.list_alerts()[0]
        assert alert.status == "firing" and alert.acknowledged_by is None and alert.silence_id is None
        audited = store.execute("SELECT count(*) FROM faults.audit_log WHERE subject = %s", params=(alert_id,))[0][0]
        assert audited == 0
        counts = accounting(running, store, "am-down")
    record("Alertmanager unreachable while acknowledging", detect, None, counts,
           note="502 with the reason; the alert stays firing, no silence, no audit row")


def test_burst_of_200_concurrent_scrapes(monitored: Cluster, store: Cluster, tmp_path: Path) -> None:
    config = fault_config(pgperf_dsn(monitored), store, tmp_path, "burst")
    watch = Watch(monitored)
    with exporter(config) as running:
        wait_until(lambda: up(running) == 1, timeout=20, message="pg_up 1")
        latencies: list[float] = []

        def scrape(_: int) -> int:
            t = time.monotonic()
            status = requests.get(running.url + "/metrics", timeout=60).status_code
            latencies.append(time.monotonic() - t)
            return status

        with ThreadPoolExecutor(200) as pool:
            statuses = list(pool.map(scrape, range(200)))
        counts = accounting(running, store, "burst")
    peak = watch.stop()
    assert statuses == [200] * 200
    assert peak <= POOL
    latencies.sort()
    record("200 concurrent scrapes in a burst", None, None, counts,
           note=f"all 200 answered 200; p50 {latencies[100] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
                f"at most {peak} pgperf backends")


# -- last: the logs of the whole suite ----------------------------------------------------------

def test_zz_logs_hold_no_secret(captured_logs: io.StringIO) -> None:
    """Runs last in this module: every log line of the suite, printed and raw."""
    text = "\n".join([*LOG_TEXT, captured_logs.getvalue()])
    assert len(text) > 1000  # the suite did log
    for secret in (SECRET, STORE_SECRET, OTHER_SECRET):
        assert secret not in text
    # Every line, as --log.format logfmt and json write it, parses and holds no secret.
    for fmt, parse_line in (("logfmt", parse_logfmt), ("json", json.loads)):
        lines = STRUCTURED[fmt].getvalue().splitlines()  # type: ignore[index]
        assert len(lines) > 10, fmt
        for line in lines:
            fields = parse_line(line)
            assert {"ts", "level", "msg"} <= fields.keys(), line
            assert not any(secret in line for secret in (SECRET, STORE_SECRET, OTHER_SECRET)), line
    out = os.environ.get("PGPERF_FAULT_RESULTS")
    if out:
        Path(out).write_text(json.dumps(RESULTS, indent=1) + "\n")
