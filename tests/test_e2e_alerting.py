"""End to end with real processes and the bundle's own files: PostgreSQL, pgperf,
Prometheus (the committed rules) and Alertmanager (the committed routes). A slow-query
workload fires PgperfSlowQueries; the alert is recorded in performance_alerts, acknowledged
(the silence exists in Alertmanager) and resolved after the workload stops.

Timing changes only, for a test of seconds instead of minutes: sampling every second,
Prometheus scraping and evaluating every second, Alertmanager's fast notification timings,
reconciliation every half second.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from helpers import Exporter, make_config, wait_until
from tools import bundle
from tools.cluster import Cluster, free_port

pytestmark = pytest.mark.bundle

TOKEN = "e2e-token-0123456789"


def test_slow_queries_alert_lifecycle(pg_cluster: Cluster, tmp_path: Path, alertmanager_factory: Any,
                                      prometheus_factory: Any) -> None:
    schema = "e2e"
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    port = free_port()
    pgperf_url = f"http://127.0.0.1:{port}"
    secrets = tmp_path / "secrets"
    bundle.write_secrets(secrets, {"pgperf-api-token": TOKEN, "slack-webhook-url": "http://127.0.0.1:9/slack",
                                   "pagerduty-routing-key": "test-key", "webhook-token": "x", "smtp-password": "x"})
    am = alertmanager_factory(bundle.dump(bundle.alertmanager_config(
        pgperf_url, secrets_dir=secrets, webhook_url="http://127.0.0.1:9/webhook", fast=True)))

    config = make_config(pg_cluster.dsn(), sampling_interval=1, api={"token": TOKEN},
                         store={"enabled": True, "schema": schema, "spool_dir": str(tmp_path / "spool")},
                         alerts={"alertmanager_url": am.url, "reconcile_interval": "500ms", "resolve_after": "2s"})
    exporter = Exporter(config, address=f"127.0.0.1:{port}")
    exporter.start()
    stop = threading.Event()

    def slow_workload() -> None:
        with pg_cluster.connect() as conn:
            while not stop.is_set():
                conn.execute("SELECT pg_sleep(0.6)")  # over development's 500 ms threshold

    worker = threading.Thread(target=slow_workload)
    try:
        prom = prometheus_factory(bundle.dump(bundle.prometheus_config(
            [f"127.0.0.1:{port}"], am.url.removeprefix("http://"), interval="1s")))
        started = time.monotonic()
        worker.start()

        def alert_row() -> Any:
            rows = pg_cluster.execute(
                f"SELECT alert_id, status, severity, message, threshold_value, current_value, labels->>'datname'"
                f" FROM {schema}.performance_alerts WHERE metric = 'PgperfSlowQueries'")
            return rows[0] if rows else None

        row = wait_until(alert_row, timeout=60, interval=0.2, message="PgperfSlowQueries recorded by the webhook")
        fired_after = time.monotonic() - started
        alert_id, status, severity, message, threshold, value, datname = row
        assert (status, severity, datname) == ("firing", "warning", "postgres")
        assert message == "Slow statements in database postgres"
        assert threshold == 0.5 and value is not None and value >= 0.5

        ack = requests.post(f"{pgperf_url}/api/v1/alerts/{alert_id}/ack", json={"by": "oncall"},
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert ack.status_code == 200, ack.text
        silence = requests.get(f"{am.url}/api/v2/silence/{ack.json()['silence_id']}", timeout=5).json()
        assert silence["status"]["state"] == "active" and silence["createdBy"] == "oncall"
        silenced = requests.get(f"{am.url}/api/v2/alerts", params={"filter": 'alertname="PgperfSlowQueries"'},
                                timeout=5).json()
        assert silenced and all(a["status"]["state"] == "suppressed" for a in silenced)

        stop.set()
        worker.join()
        stopped = time.monotonic()
        resolved = wait_until(
            lambda: (r := pg_cluster.execute(f"SELECT status, resolved_by, acknowledged_by FROM {schema}.performance_alerts"
                                             f" WHERE alert_id = %s", params=(alert_id,))[0]) and r[0] == "resolved" and r,
            timeout=60, interval=0.2, message="alert resolved after the workload stopped")
        assert resolved == ("resolved", "alertmanager", "oncall")
        rules = requests.get(prom.url + "/api/v1/rules", timeout=5).json()["data"]["groups"]
        # No rule failed to evaluate (groups with a longer interval may not have run yet).
        assert rules and not [r["name"] for g in rules for r in g["rules"] if r.get("health") == "err"]
        print(f"alert recorded {fired_after:.1f}s after the slow workload started; "
              f"resolved {time.monotonic() - stopped:.1f}s after it stopped; "
              f"whole lifecycle {time.monotonic() - started:.1f}s")
    finally:
        stop.set()
        if worker.is_alive():
            worker.join()
        exporter.stop()
