"""API roles (viewer, operator), the audit trail, and configuration reload."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from helpers import make_config, parse, running_exporter, value, wait_until
from tools.cluster import Cluster, free_port

OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789"
NAMED = "named-operator-token-0123"

WEBHOOK = {"version": "4", "status": "firing", "alerts": [{
    "status": "firing", "labels": {"alertname": "PgperfCpuUsageHigh", "severity": "error", "instance": "db:9187"},
    "annotations": {"summary": "CPU high"}, "startsAt": "2026-11-29T10:00:00Z", "fingerprint": "f1"}]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit_rows(cluster: Cluster, schema: str) -> list[tuple[Any, ...]]:
    return cluster.execute(f"SELECT actor, role, action, subject, detail->>'by' FROM {schema}.audit_log ORDER BY id")


def test_roles_and_audit(pg_cluster: Cluster, tmp_path: Path) -> None:
    schema = "roles_audit"
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    config = make_config(pg_cluster.dsn(), sampling_interval=30,
                         api={"token": OPERATOR, "viewer_token": VIEWER,
                              "tokens": [{"name": "pager-bot", "role": "operator", "token": NAMED}]},
                         store={"enabled": True, "schema": schema, "spool_dir": str(tmp_path / "spool")})
    with running_exporter(config) as exporter:
        wait_until(lambda: exporter.monitor.store and exporter.monitor.store.up, message="store up")
        url = exporter.url
        # The viewer reads, but cannot write.
        assert requests.post(url + "/api/v1/alerts/webhook", json=WEBHOOK, headers=bearer(VIEWER), timeout=5).status_code == 403
        assert requests.post(url + "/api/v1/alerts/webhook", json=WEBHOOK, headers=bearer(OPERATOR), timeout=5).status_code == 200
        alerts = requests.get(url + "/api/v1/alerts", headers=bearer(VIEWER), timeout=5)
        assert alerts.status_code == 200
        alert_id = alerts.json()["alerts"][0]["alert_id"]
        denied = requests.post(f"{url}/api/v1/alerts/{alert_id}/ack", json={"by": "v"}, headers=bearer(VIEWER), timeout=5)
        assert denied.status_code == 403 and "viewer role" in denied.json()["error"]
        assert requests.get(url + "/api/v1/alerts", headers=bearer("nope"), timeout=5).status_code == 401
        # Operators act; each action is audited with the token's name.
        assert requests.post(f"{url}/api/v1/alerts/{alert_id}/ack", json={"by": "alice"}, headers=bearer(NAMED),
                             timeout=5).status_code == 200
        assert requests.post(f"{url}/api/v1/alerts/{alert_id}/resolve", json={"by": "bob"}, headers=bearer(OPERATOR),
                             timeout=5).status_code == 200
        assert requests.get(url + "/api/v1/audit", headers=bearer(VIEWER), timeout=5).status_code == 403
        entries = requests.get(url + "/api/v1/audit", headers=bearer(OPERATOR), timeout=5).json()["entries"]
        assert [(e["actor"], e["action"], e["subject"]) for e in entries] == [
            ("operator", "resolve", alert_id), ("pager-bot", "acknowledge", alert_id)]
        assert entries[0]["source"] == "127.0.0.1"
    assert audit_rows(pg_cluster, schema) == [("pager-bot", "operator", "acknowledge", alert_id, "alice"),
                                              ("operator", "operator", "resolve", alert_id, "bob")]


def test_python_and_cli_actions_are_audited(pg_cluster: Cluster, tmp_path: Path) -> None:
    schema = "audit_api"
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    config = make_config(pg_cluster.dsn(), sampling_interval=30, api={"token": OPERATOR},
                         store={"enabled": True, "schema": schema, "spool_dir": str(tmp_path / "spool")})
    with running_exporter(config) as exporter:
        wait_until(lambda: exporter.monitor.store and exporter.monitor.store.up, message="store up")
        requests.post(exporter.url + "/api/v1/alerts/webhook", json=WEBHOOK, headers=bearer(OPERATOR), timeout=5)
        alert_id = exporter.monitor.list_alerts()[0].alert_id
        exporter.monitor.acknowledge_alert(alert_id, "carol")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGPERF_")}
    env["PGPERF_STORE_SCHEMA"] = schema
    # No Alertmanager here: --no-alertmanager records the resolution without asking one.
    proc = subprocess.run([sys.executable, "-m", "pgperf", "alerts", "resolve", alert_id, "--by", "dave",
                           "--no-alertmanager", "--dsn", pg_cluster.dsn()], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = audit_rows(pg_cluster, schema)
    assert rows[0] == ("python", None, "acknowledge", alert_id, "carol")
    assert rows[1][0].startswith("cli:") and rows[1][2:] == ("resolve", alert_id, "dave")


def test_reload_by_signal_and_endpoint(pg_cluster: Cluster, tmp_path: Path) -> None:
    schema = "reload_audit"
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    config_file = tmp_path / "pgperf.yaml"

    def write(slow_ms: int, store_schema: str = schema, extra: str = "") -> None:
        config_file.write_text(
            f"profile: development\ndsn: {pg_cluster.dsn()}\nsampling_interval: 1\n"
            f"store:\n  schema: {store_schema}\n  spool_dir: {tmp_path / 'spool'}\n"
            f"thresholds:\n  slow_query_time_ms: {slow_ms}\n{extra}")

    write(500)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGPERF_")}
    env["PGPERF_API_TOKEN"] = OPERATOR
    proc = subprocess.Popen([sys.executable, "-m", "pgperf", "serve", "--config", str(config_file),
                             "--web.listen-address", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"

    def threshold() -> float | None:
        try:
            return value(parse(requests.get(url + "/metrics", timeout=2).text), "pgperf_threshold_slow_query_seconds")
        except requests.ConnectionError:
            return None

    try:
        wait_until(lambda: threshold() == 0.5, timeout=30, message="exporter up with 500 ms")
        write(700)
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: threshold() == 0.7, timeout=10, message="threshold reloaded by SIGHUP")
        write(900)
        response = requests.post(url + "/-/reload", headers=bearer(OPERATOR), timeout=10)
        assert response.status_code == 200 and response.json()["changed"] == ["thresholds"]
        assert threshold() == 0.9
        write(900, store_schema="elsewhere")
        refused = requests.post(url + "/-/reload", headers=bearer(OPERATOR), timeout=10)
        assert refused.status_code == 409 and refused.json()["keys"] == ["store"]
        write(900, extra="bogus_key: 1\n")
        invalid = requests.post(url + "/-/reload", headers=bearer(OPERATOR), timeout=10)
        assert invalid.status_code == 400 and "bogus_key: unknown key" in invalid.json()["problems"][0]
        assert threshold() == 0.9  # the running configuration stayed
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    rows = pg_cluster.execute(f"SELECT actor, action, detail->>'result' FROM {schema}.audit_log ORDER BY id")
    assert rows == [("signal:SIGHUP", "config_reload", "applied"), ("operator", "config_reload", "applied"),
                    ("operator", "config_reload", "refused"), ("operator", "config_reload", "refused")]
