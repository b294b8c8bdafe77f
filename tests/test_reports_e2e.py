"""The issue's acceptance check, end to end: sample a pgbench workload plus 40 runs of
``select pg_sleep(0.12)`` with the exporter's Monitor (one sample a second), then run
``pgperf report`` as a user would, in JSON, text and HTML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from browser import Browser
from console_client import ConsoleClient
from helpers import make_config, wait_until
from pgperf.monitor import Monitor
from tools.cluster import Cluster

SCHEMA = "report_e2e"


def pgperf_report(dsn: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgperf", "report", "--dsn", dsn, "--store-dsn", dsn,
                           "--profile", "development", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


@pytest.mark.slow
def test_report_of_a_pgbench_and_pg_sleep_workload(pg_cluster: Cluster, pgbench: Any, tmp_path: Path) -> None:
    dsn = pg_cluster.dsn()
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    # The development profile's slow-query threshold is 500 ms; 100 ms makes pg_sleep(0.12) a slow query.
    settings = {"PGPERF_STORE_SCHEMA": SCHEMA, "PGPERF_THRESHOLDS_SLOW_QUERY_TIME_MS": "100"}
    config = make_config(dsn, store={"enabled": True, "schema": SCHEMA, "spool_dir": str(tmp_path / "spool")},
                         thresholds={"slow_query_time_ms": 100}, reports={"daily": False, "weekly": False})
    monitor = Monitor(config)
    start = datetime.now(UTC)
    with pgbench(clients=2, rate=100):
        monitor.initialize()
        try:
            time.sleep(3)
            with pg_cluster.connect() as conn:
                for _ in range(40):
                    conn.execute("select pg_sleep(0.12)")
            time.sleep(3)
            wait_until(lambda: pg_cluster.execute(
                f"SELECT count(*) FROM {SCHEMA}.query_performance_metrics WHERE query_text LIKE '%%pg_sleep%%'")[0][0],
                message="pg_sleep rows in the store")
        finally:
            monitor.stop()
    end = datetime.now(UTC) + timedelta(seconds=1)
    window = ["--from", start.isoformat(), "--to", end.isoformat()]

    proc = pgperf_report(dsn, *window, "--format", "json", env=settings)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    slowest = data["queries"]["slowest_by_mean"][0]
    assert "pg_sleep" in slowest["query_text"] and slowest["calls"] == 40
    assert 120 <= slowest["mean_time_ms"] < 200
    assert data["summary"]["slowest_query"]["query_id"] == slowest["query_id"]
    assert data["summary"]["total_queries"] > 40 and data["summary"]["uptime_percent"] == 100.0
    recs = data["recommendations"]
    assert len(recs) >= 2, recs
    assert all(r["evidence"] for r in recs)
    slow = next(r for r in recs if r["rule"] == "slow_queries")
    assert slow["evidence"]["statements"][0]["query_id"] == slowest["query_id"]
    assert data["data_quality"]["catalog"]["available"] is True
    stored = pg_cluster.execute(f"SELECT report_data->'summary'->>'total_queries' FROM {SCHEMA}.performance_reports"
                                " WHERE report_id = %s", params=(data["report_id"],))
    assert stored == [(str(data["summary"]["total_queries"]),)]

    text = pgperf_report(dsn, *window, "--format", "text", env=settings)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("📊 On-demand Performance Report - perf-report-")
    first = lines.index("🐌 Top 5 Slowest Queries:")
    assert "pg_sleep" in lines[first + 2] and "- 40 calls" in lines[first + 1]
    assert "💡 Recommendations:" in lines and "⚠️ Anomalies Detected:" in lines

    page = tmp_path / "report.html"
    html = pgperf_report(dsn, *window, "--format", "html", "--output", str(page), env=settings)
    assert html.returncode == 0, html.stderr
    browser = Browser()
    try:  # the written file in a real browser: every chart drawn, no script error
        browser.get(page.resolve().as_uri())
        browser.wait(lambda: browser.js("return window.pgperfCharts && Object.keys(window.pgperfCharts.charts)"
                                        ".length") == 7, message="the report's seven charts drawn")
        assert browser.console_errors() == []
    finally:
        browser.quit()
    assert pg_cluster.execute(f"SELECT count(*) FROM {SCHEMA}.performance_reports")[0][0] == 3
    print(text.stdout)  # shown with -s: the report of the demo workload


def test_report_command_refuses_bad_windows(pg_cluster: Cluster) -> None:
    for args, message in ((["--from", "yesterday"], "--from: expected an RFC 3339 time"),
                          (["--from", "2024-01-02T00:00:00Z", "--to", "2024-01-01T00:00:00Z"], "must be after"),
                          (["--period", "daily", "--to", "2024-01-01T00:00:00Z"], "--to goes with --from")):
        proc = pgperf_report(pg_cluster.dsn(), *args, env={})
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    proc = pgperf_report(pg_cluster.dsn(), "--period", "hourly", env={})
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    unreachable = pgperf_report("postgresql://postgres@127.0.0.1:1/postgres", "--period", "daily", env={})
    assert unreachable.returncode == 1 and "unreachable" in unreachable.stderr


def test_report_command_refuses_unknown_targets_and_unwritable_outputs(pg_cluster: Cluster, tmp_path: Path) -> None:
    schema = "report_cli_refusals"
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    env = {"PGPERF_STORE_SCHEMA": schema, "PGPERF_TARGET_NAME": "main"}

    def stored() -> int:
        if not pg_cluster.execute(f"SELECT to_regclass('{schema}.performance_reports')")[0][0]:
            return 0
        return int(pg_cluster.execute(f"SELECT count(*) FROM {schema}.performance_reports")[0][0])

    unknown = pgperf_report(pg_cluster.dsn(), "--period", "daily", "--target", "nope", env=env)
    assert unknown.returncode == 2, unknown.stderr
    assert "unknown target 'nope'; configured targets: main" in unknown.stderr
    assert stored() == 0
    missing = tmp_path / "nonexistent" / "dir" / "x.html"
    unwritable = pgperf_report(pg_cluster.dsn(), "--period", "daily", "--format", "html", "--output", str(missing),
                               env=env)
    assert unwritable.returncode == 2, unwritable.stderr
    assert unwritable.stderr.strip() == (
        f"pgperf report: cannot write the report to {missing}: No such file or directory")
    assert stored() == 0 and not missing.parent.exists()
    out = tmp_path / "report.md"
    out.write_text("an older, longer file that the report replaces entirely\n" * 100)
    ok = pgperf_report(pg_cluster.dsn(), "--period", "daily", "--format", "md", "--target", "main",
                       "--output", str(out), env=env)
    assert ok.returncode == 0, ok.stderr
    assert out.read_text().startswith("#") and "an older, longer file" not in out.read_text()
    assert stored() == 1


def test_serve_generates_periodic_reports_and_serves_them(pg_cluster: Cluster, tmp_path: Path) -> None:
    """`pgperf serve` with reports.every: a report appears at /reports/ and in the API."""
    import requests

    from tools.cluster import free_port

    schema = "report_serve"
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    port = free_port()
    env = {**os.environ, "PGPERF_STORE_SCHEMA": schema, "PGPERF_STORE_SPOOL_DIR": str(tmp_path / "spool"),
           "PGPERF_REPORTS_EVERY": "3s", "PGPERF_API_TOKEN": "t0ken-0123456789"}
    proc = subprocess.Popen([sys.executable, "-m", "pgperf", "serve", "--dsn", pg_cluster.dsn(), "--profile",
                             "development", "--sampling-interval", "1", "--web.listen-address", f"127.0.0.1:{port}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def listed() -> list[Any] | None:
            try:
                response = requests.get(url + "/api/v1/reports?kind=periodic", timeout=5,
                                        headers={"Authorization": "Bearer t0ken-0123456789"})
            except requests.ConnectionError:
                return None
            return response.json()["reports"] if response.status_code == 200 else None

        reports = wait_until(listed, timeout=60, interval=0.5, message="a periodic report")
        report_id = reports[0]["report_id"]
        console = ConsoleClient(url)  # the report pages are the console's: signed in with the API token
        assert console.login("t0ken-0123456789").status_code == 303
        page = console.get("/reports/")
        assert page.status_code == 200 and report_id in page.text
        html = console.get(f"/reports/{report_id}")
        assert html.status_code == 200 and "Periodic Performance Report" in html.text
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
