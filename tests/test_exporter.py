"""The exporter end to end in this process: sampler, exposition and HTTP against real
PostgreSQL."""

from __future__ import annotations

import gzip
import logging
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from helpers import make_config, parse, running_exporter, value, wait_until
from pgperf import collectors
from pgperf.collectors import CollectorResult, CollectorSpec
from pgperf.sampling import TargetSampler
from tools.cluster import Cluster, free_port


def pgperf_backends(cluster: Cluster) -> int:
    return int(cluster.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgperf%'")[0][0])


def test_serves_postgres_and_host_metrics_under_load(pg_cluster: Cluster, pgbench: Any) -> None:
    config = make_config(pg_cluster.dsn())
    with pgbench(clients=2), running_exporter(config) as exporter:
        samples = wait_until(
            lambda: (s := exporter.scrape()) and value(s, "pg_up") == 1
            and value(s, "pgperf_host_cpu_usage_ratio") is not None
            and s.get("pg_stat_statements_calls_total") and s,
            message="pg_up 1 with statement and host series",
        )
        assert all({"datname", "user", "queryid"} <= labels.keys()
                   for labels, _ in samples["pg_stat_statements_calls_total"])
        assert value(samples, "pgperf_host_memory_usage_ratio") is not None
        success = {labels["collector"]: v for labels, v in samples["pg_scrape_collector_success"]}
        assert len(success) >= 4 and all(v == 1 for v in success.values()), success
        assert exporter.get("/healthz").status_code == 200
        ready = exporter.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"ready": True}
        assert value(samples, "pgperf_threshold_slow_query_seconds") == 0.5
        assert value(samples, "pgperf_profile_info", profile="development") == 1


def test_concurrent_scrapes_do_not_reach_the_database(pg_cluster: Cluster) -> None:
    config = make_config(pg_cluster.dsn(), sampling_interval=30)
    with running_exporter(config) as exporter:
        wait_until(lambda: exporter.value("pg_up") == 1, message="first sample")
        before = pg_cluster.execute(
            "SELECT pid, state_change FROM pg_stat_activity WHERE application_name = 'pgperf'")
        peak = 0
        stop = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, pgperf_backends(pg_cluster))
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        with ThreadPoolExecutor(60) as pool:
            responses = list(pool.map(lambda _: requests.get(exporter.url + "/metrics", timeout=30), range(60)))
        stop.set()
        watcher.join()
        assert all(r.status_code == 200 for r in responses)
        assert len({r.text.split("\nprocess_")[0] for r in responses}) == 1  # one rendering served to all
        assert peak <= 3
        after = pg_cluster.execute(
            "SELECT pid, state_change FROM pg_stat_activity WHERE application_name = 'pgperf'")
        assert before == after  # no query ran on pgperf's session during the scrapes


def test_gzip_and_probe(pg_cluster: Cluster) -> None:
    with running_exporter(make_config(pg_cluster.dsn(), target_name="main")) as exporter:
        wait_until(lambda: exporter.value("pg_up") == 1, message="first sample")
        raw = requests.get(exporter.url + "/metrics", headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10)
        assert raw.headers["Content-Encoding"] == "gzip"
        assert b"pg_up 1.0" in gzip.decompress(raw.raw.read())
        probe = exporter.get("/probe", params={"target": "main"})
        assert probe.status_code == 200 and value(parse(probe.text), "pg_up") == 1
        missing = exporter.get("/probe", params={"target": "nope"})
        assert missing.status_code == 404 and "configured targets: main" in missing.text


def test_database_down_and_back_without_restart(make_cluster: Any) -> None:
    cluster: Cluster = make_cluster()
    config = make_config(cluster.dsn(), sampling_interval=1)
    with running_exporter(config) as exporter:
        wait_until(lambda: exporter.value("pg_up") == 1, message="pg_up 1")
        cluster.stop("fast")
        stopped = time.monotonic()
        samples = wait_until(lambda: (s := exporter.scrape()) and value(s, "pg_up") == 0 and s,
                             timeout=10, message="pg_up 0")
        detected = time.monotonic() - stopped
        assert detected <= 3 * config.sampling_interval + 1, detected
        assert value(samples, "pgperf_connection_error") == 1
        assert exporter.get("/readyz").status_code == 503
        assert exporter.get("/metrics").status_code == 200
        assert value(samples, "pgperf_host_memory_usage_ratio") is not None  # host still sampled
        cluster.start()
        wait_until(lambda: exporter.value("pg_up") == 1, timeout=20, message="pg_up back to 1")
        wait_until(lambda: exporter.get("/readyz").status_code == 200, timeout=5, message="ready again")


def test_database_down_at_start(pg_bindir: Any) -> None:
    port = free_port()
    config = make_config(f"postgresql://postgres@127.0.0.1:{port}/postgres", sampling_interval=1)
    with running_exporter(config) as exporter:
        samples = wait_until(lambda: (s := exporter.scrape()) and value(s, "pg_up") == 0 and s, message="pg_up 0")
        assert value(samples, "pgperf_connection_error", kind="connection_refused") == 1
        assert exporter.get("/readyz").status_code == 503
        cluster = Cluster(pg_bindir, port=port, name="pgperf-test")
        try:
            cluster.start()
            wait_until(lambda: exporter.value("pg_up") == 1, timeout=20, message="pg_up 1 after start")
        finally:
            cluster.destroy()


def _spec(name: str, fn: Any) -> CollectorSpec:
    return CollectorSpec(name=name, description="test", collect=fn, metrics=())


def test_one_failing_collector_does_not_fail_the_sample(pg_cluster: Cluster) -> None:
    def broken(ctx: Any) -> CollectorResult:
        ctx.conn.execute("SELECT * FROM no_such_view_for_pgperf")  # UndefinedTable -> disabled
        return CollectorResult(())

    def timeout(ctx: Any) -> CollectorResult:
        ctx.conn.execute("SELECT pg_sleep(2)")  # beyond statement_timeout
        return CollectorResult(())

    def buggy(ctx: Any) -> CollectorResult:
        raise KeyError("bug")

    config = make_config(pg_cluster.dsn(), connection={"statement_timeout": "300ms"})
    registry = (*collectors.REGISTRY, _spec("broken", broken), _spec("slow", timeout), _spec("buggy", buggy))
    sampler = TargetSampler(config.resolved_targets()[0], config, registry=registry)
    sampler.open()
    try:
        snap = sampler.sample()
        assert snap is not None and snap.up
        status = {s.name: s for s in snap.statuses}
        assert status["broken"].disabled == "unsupported"
        assert status["slow"].error == "statement_timeout"
        assert status["buggy"].error == "internal_error"
        assert all(status[n].success for n in ("database", "activity", "settings", "statements"))
        again = sampler.sample()
        assert again is not None
        assert {s.name: s for s in again.statuses}["broken"].disabled == "unsupported"
    finally:
        sampler.close()


def test_disabled_collector_logged_once_with_reason(pg_cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    pg_cluster.execute("DROP DATABASE IF EXISTS without_pgss")
    pg_cluster.execute("CREATE DATABASE without_pgss")
    config = make_config(pg_cluster.dsn(dbname="without_pgss"))
    sampler = TargetSampler(config.resolved_targets()[0], config)
    sampler.open()
    try:
        with caplog.at_level(logging.WARNING, logger="pgperf.sampling"):
            for _ in range(4):
                sampler.sample()
        lines = [r for r in caplog.records if "collector statements disabled" in r.getMessage()]
        assert len(lines) == 1
        assert "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" in lines[0].getMessage()
        snap = sampler.latest
        assert snap is not None
        fam = snap.families
        from pgperf.exposition import self_families

        disabled = next(f for f in self_families(snap, config) if f.name == "pgperf_collector_disabled")
        assert (("statements", "extension_missing"), 1.0) in disabled.samples
        assert not any(f.name.startswith("pg_stat_statements") for f in fam)
    finally:
        sampler.close()


def test_overruns_are_skipped_and_counted(pg_cluster: Cluster) -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def slow(ctx: Any) -> CollectorResult:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.5)
        with lock:
            running -= 1
        return CollectorResult(())

    config = make_config(pg_cluster.dsn(), sampling_interval="200ms")
    sampler = TargetSampler(config.resolved_targets()[0], config, registry=(_spec("slow", slow),))
    sampler.open()
    stop = threading.Event()
    thread = threading.Thread(target=sampler.run, args=(stop,))
    thread.start()
    extra = [threading.Thread(target=sampler.sample) for _ in range(3)]  # direct calls overlap too
    for t in extra:
        t.start()
    time.sleep(1.6)
    stop.set()
    thread.join()
    for t in extra:
        t.join()
    sampler.close()
    assert peak == 1
    assert sampler.counters.overruns >= 3


def test_promtool_check_metrics(pg_cluster: Cluster, pgbench: Any) -> None:
    compat = {m.name for spec in collectors.REGISTRY for m in spec.metrics if m.compat}
    compat |= {"pg_stat_activity_count"}
    with pgbench(), running_exporter(make_config(pg_cluster.dsn())) as exporter:
        wait_until(lambda: exporter.value("pg_stat_statements_seconds_total") is not None, message="statements")
        text = exporter.get("/metrics").text
    proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    unexpected = [p for p in problems
                  if p.split()[0] not in compat and not p.startswith("pg_settings_")]
    assert not unexpected, unexpected


def test_a_chunked_body_past_the_limit_is_413(pg_cluster: Cluster) -> None:
    """A body streamed with ``Transfer-Encoding: chunked`` is held to web.max_request_bytes
    like one with a Content-Length: 20 MB is refused with 413, and the client, still sending,
    reads that answer (the body used to be cut at the limit and parsed: 400, "not valid JSON")."""
    token = "chunked-token-0123456789"
    auth = {"Authorization": f"Bearer {token}"}
    config = make_config(pg_cluster.dsn(), sampling_interval=60, api={"token": token})
    limit = config.web.max_request_bytes
    piece = b" " * 65536

    def body(size: int) -> Any:
        start, end = b'{"from": "yesterday", "to": "1h"', b"}"
        yield start
        left = size - len(start) - len(end)
        while left > 0:
            yield piece[:left]
            left -= len(piece)
        yield end

    with running_exporter(config) as exporter:
        url = exporter.url + "/api/v1/reports"
        big = requests.post(url, data=body(20 * 1024 * 1024), headers=auth, timeout=60)
        assert big.request.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in big.request.headers
        assert big.status_code == 413, big.text
        assert big.json() == {"error": f"request body too large: at most {limit} bytes (web.max_request_bytes)"}
        assert requests.post(url, data=body(limit + 1), headers=auth, timeout=60).status_code == 413
        # Up to the limit, a chunked body is read whole: here the reason is the time, not the size.
        exact = requests.post(url, data=body(limit), headers=auth, timeout=60)
        assert exact.status_code == 400 and exact.json()["error"].startswith("from: expected"), exact.text
        assert exporter.get("/healthz").status_code == 200
