"""The alert lifecycle: Alertmanager's webhook into performance_alerts, acknowledge with a
silence, resolve, reconciliation — with a real Alertmanager and real PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from fix_bundle import Process, post_alerts
from helpers import LocalHTTPServer, make_config, running_exporter, wait_until
from pgperf.alerts.webhook import WebhookError, parse_webhook
from tools.cluster import Cluster, free_port

TOKEN = "test-token-1234567"


def payload(status: str = "firing", *, name: str = "PgperfSlowQueries", severity: str = "warning",
            starts: str = "2026-11-29T10:00:00.123456789Z", fingerprint: str = "abc123", **annotations: str) -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {"alertname": name, "severity": severity, "instance": "db1:9187", "datname": "app"},
        "annotations": {"summary": "2 statements slower than 2s", "threshold": "2", "value": "3.5", **annotations},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-29T10:05:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint,
    }
    return {"version": "4", "status": status, "receiver": "pgperf", "groupKey": "{}", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "truncatedAlerts": 0,
            "alerts": [alert]}


# -- parsing, no I/O --------------------------------------------------------------------

def test_parse_webhook() -> None:
    (event,) = parse_webhook(payload())
    assert event.name == "PgperfSlowQueries" and event.severity == "warning" and event.status == "firing"
    assert event.target == "db1:9187" and event.threshold_value == 2 and event.current_value == 3.5
    assert event.starts_at == datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=UTC)
    assert event.ends_at is None
    (again,) = parse_webhook(payload())
    assert again.alert_id == event.alert_id  # stable per fingerprint and start
    (other,) = parse_webhook(payload(starts="2026-11-29T11:00:00Z"))
    assert other.alert_id != event.alert_id


@pytest.mark.parametrize("body, message", [
    ([], "expected a JSON object"),
    ({"version": "3", "alerts": []}, 'version: expected "4"'),
    ({"version": "4", "alerts": {}}, "alerts: expected a list"),
    ({"version": "4", "alerts": [{"status": "firing", "labels": {}, "startsAt": "2026-01-01T00:00:00Z"}]},
     "alerts[0].labels.alertname: missing"),
    ({"version": "4", "alerts": [{"status": "odd", "labels": {"alertname": "x"}, "startsAt": "2026-01-01T00:00:00Z"}]},
     "alerts[0].status"),
    ({"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "x"}, "startsAt": "yesterday"}]},
     "alerts[0].startsAt: not an RFC 3339 time"),
    ({"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": 5}, "startsAt": "2026-01-01T00:00:00Z"}]},
     "alerts[0].labels.alertname: expected a string"),
    (payload(starts="9999-12-31T23:59:59-05:00"), "alerts[0].startsAt: 9999-12-31T23:59:59-05:00 is out of range"),
    (payload(starts="0001-01-01T00:00:00+05:00"), "alerts[0].startsAt: 0001-01-01T00:00:00+05:00 is out of range"),
    (payload(starts="9500-01-01T00:00:00Z"), "times must lie between the years 1970 and 9000"),
    ({"version": "4", "alerts": [{**payload()["alerts"][0], "endsAt": "9999-12-31T23:59:59-05:00"}]},
     "alerts[0].endsAt: 9999-12-31T23:59:59-05:00 is out of range"),
])
def test_parse_webhook_errors(body: Any, message: str) -> None:
    with pytest.raises(WebhookError, match=re.escape(message)):
        parse_webhook(body)


# -- the API ------------------------------------------------------------------------------

@pytest.fixture
def alerts_schema(pg_cluster: Cluster, request: pytest.FixtureRequest) -> str:
    schema = "alerts_" + request.node.name.split("[")[0].removeprefix("test_")[:40]
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return schema


def exporter_config(pg_cluster: Cluster, schema: str, tmp_path: Path, **alerts: Any) -> Any:
    return make_config(pg_cluster.dsn(), sampling_interval=30, api={"token": TOKEN},
                       store={"enabled": True, "schema": schema, "spool_dir": str(tmp_path / "spool")},
                       alerts=alerts)


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rows(cluster: Cluster, schema: str) -> list[tuple[Any, ...]]:
    return cluster.execute(f"SELECT alert_id, status, severity, metric, message, threshold_value, current_value,"
                           f" acknowledged_by, resolved_by, silence_id FROM {schema}.performance_alerts ORDER BY 1")


def test_webhook_records_the_lifecycle(pg_cluster: Cluster, alerts_schema: str, tmp_path: Path) -> None:
    with running_exporter(exporter_config(pg_cluster, alerts_schema, tmp_path)) as exporter:
        fired: list[Any] = []
        exporter.monitor.on("alert", fired.append)
        url = exporter.url + "/api/v1/alerts/webhook"
        wait_until(lambda: exporter.monitor.store and exporter.monitor.store.up and
                   pg_cluster.execute(f"SELECT to_regclass('{alerts_schema}.performance_alerts')")[0][0],
                   message="store migrated")
        assert requests.post(url, json=payload(), timeout=5).status_code == 401
        assert requests.post(url, json=payload(), headers=auth("wrong"), timeout=5).status_code == 401
        for _ in range(2):  # Alertmanager repeats notifications: one row, one event
            response = requests.post(url, json=payload(), headers=auth(), timeout=5)
            assert response.status_code == 200, response.text
        (row,) = rows(pg_cluster, alerts_schema)
        assert row[1:7] == ("firing", "warning", "PgperfSlowQueries", "2 statements slower than 2s", 2, 3.5)
        assert len(fired) == 1 and fired[0].alert_id == row[0]

        listed = requests.get(exporter.url + "/api/v1/alerts", params={"state": "firing", "since": "3650d"},
                              headers=auth(), timeout=5)
        assert listed.status_code == 200 and [a["alert_id"] for a in listed.json()["alerts"]] == [row[0]]
        assert requests.get(exporter.url + "/api/v1/alerts", params={"state": "bogus"}, headers=auth(),
                            timeout=5).status_code == 400
        assert requests.get(exporter.url + f"/api/v1/alerts/{row[0]}", headers=auth(), timeout=5).json()["metric"] \
            == "PgperfSlowQueries"

        ack = requests.post(exporter.url + f"/api/v1/alerts/{row[0]}/ack", json={"by": "alice"}, headers=auth(), timeout=5)
        assert ack.status_code == 200 and ack.json()["acknowledged_by"] == "alice"
        assert requests.post(exporter.url + f"/api/v1/alerts/{row[0]}/ack", json={}, headers=auth(),
                             timeout=5).status_code == 400  # who acts is required

        resolved = requests.post(url, json=payload("resolved"), headers=auth(), timeout=5)
        assert resolved.status_code == 200
        (row,) = rows(pg_cluster, alerts_schema)
        assert row[1] == "resolved" and row[7] == "alice" and row[8] == "alertmanager"
        assert requests.post(exporter.url + f"/api/v1/alerts/{row[0]}/ack", json={"by": "bob"}, headers=auth(),
                             timeout=5).status_code == 409
        assert requests.post(exporter.url + "/api/v1/alerts/nope/resolve", json={"by": "bob"}, headers=auth(),
                             timeout=5).status_code == 404


def test_an_alert_resolved_by_hand_reopens_when_alertmanager_notifies_it_again(
        pg_cluster: Cluster, alerts_schema: str, tmp_path: Path) -> None:
    """Without an Alertmanager to ask, a resolution by hand is recorded as given; when
    Alertmanager notifies the same episode again (Prometheus still fires it), pgperf
    reopens it rather than say "resolved" against Prometheus's "firing". An automatic
    resolution (by alertmanager) is not reopened by a late notification."""
    with running_exporter(exporter_config(pg_cluster, alerts_schema, tmp_path)) as exporter:
        fired: list[Any] = []
        exporter.monitor.on("alert", fired.append)
        url = exporter.url + "/api/v1/alerts/webhook"
        wait_until(lambda: exporter.monitor.store and exporter.monitor.store.up, message="store up")
        assert requests.post(url, json=payload(), headers=auth(), timeout=5).status_code == 200
        (row,) = rows(pg_cluster, alerts_schema)
        ack = requests.post(f"{exporter.url}/api/v1/alerts/{row[0]}/ack", json={"by": "alice"}, headers=auth(),
                            timeout=5)
        assert ack.status_code == 200
        resolved = requests.post(f"{exporter.url}/api/v1/alerts/{row[0]}/resolve", json={"by": "bob"},
                                 headers=auth(), timeout=5)
        assert resolved.status_code == 200 and resolved.json()["resolved_by"] == "bob"

        assert requests.post(url, json=payload(), headers=auth(), timeout=5).status_code == 200
        (row,) = rows(pg_cluster, alerts_schema)
        assert (row[1], row[7], row[8]) == ("firing", None, None)
        assert [a.alert_id for a in fired] == [row[0], row[0]]  # fired, then reopened
        audit = requests.get(exporter.url + "/api/v1/audit", headers=auth(), timeout=5).json()["entries"]
        assert [(e["action"], e["actor"]) for e in audit][:3] == [("reopen", "alertmanager"), ("resolve", "operator"),
                                                                  ("acknowledge", "operator")]
        assert audit[0]["detail"] == {"resolved_by": "bob", "reason": "Alertmanager still notifies it as firing"}

        assert requests.post(url, json=payload("resolved"), headers=auth(), timeout=5).status_code == 200
        assert requests.post(url, json=payload(), headers=auth(), timeout=5).status_code == 200
        (row,) = rows(pg_cluster, alerts_schema)
        assert (row[1], row[8]) == ("resolved", "alertmanager")


def test_webhook_rejects_bad_input_without_500(pg_cluster: Cluster, alerts_schema: str, tmp_path: Path) -> None:
    config = exporter_config(pg_cluster, alerts_schema, tmp_path)
    with running_exporter(config) as exporter:
        url = exporter.url + "/api/v1/alerts/webhook"
        for body in (b"{not json", b'{"version": "3"}', b"[1, 2]", b'{"version": "4", "alerts": [{}]}', "\udcff"):
            data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogateescape")
            response = requests.post(url, data=data, headers={**auth(), "Content-Type": "application/json"}, timeout=5)
            assert response.status_code == 400, (body, response.status_code, response.text)
            assert "error" in response.json()
        big = b'{"version": "4", "alerts": [' + b'{"x": "' + b"y" * (config.web.max_request_bytes + 10) + b'"}]}'
        response = requests.post(url, data=big, headers=auth(), timeout=10)
        assert response.status_code == 413
        assert response.headers["Content-Type"] == "application/json"
        assert response.json() == {"error": f"request body too large: at most {config.web.max_request_bytes} bytes "
                                            "(web.max_request_bytes)"}
        too_big = requests.post(exporter.url + "/api/v1/reports", data=big, headers=auth(), timeout=10)
        assert too_big.status_code == 413 and "web.max_request_bytes" in too_big.json()["error"]
        wrong_method = requests.delete(url, headers=auth(), timeout=5)
        assert wrong_method.status_code == 405 and "error" in wrong_method.json()
        assert "POST" in wrong_method.headers["Allow"]
        assert requests.get(exporter.url + "/api/v1/nothing", timeout=5).json()["error"].startswith("Not Found")
        assert requests.get(exporter.url + "/nothing", timeout=5).headers["Content-Type"].startswith("text/html")
        far = requests.post(url, json=payload(starts="9999-12-31T23:59:59-05:00"), headers=auth(), timeout=5)
        assert far.status_code == 400, far.text
        assert "startsAt: 9999-12-31T23:59:59-05:00 is out of range" in far.json()["error"]


@pytest.mark.parametrize("since", ["inf", "1e300", "99999999999d", "-1e300", "nan", "0001-01-01T00:00:00+05:00",
                                   "9999-12-31T23:59:59-05:00", "1900-01-01T00:00:00Z"])
def test_out_of_range_since_is_400(pg_cluster: Cluster, alerts_schema: str, tmp_path: Path, since: str) -> None:
    from werkzeug.test import Client

    from pgperf.app import App

    app = App(exporter_config(pg_cluster, alerts_schema, tmp_path))
    try:
        client = Client(app.web)
        for path in ("/api/v1/alerts", "/api/v1/audit"):
            response = client.get(path, query_string={"since": since}, headers=auth())
            assert response.status_code == 400, (path, response.get_data(as_text=True))
            assert response.get_json()["error"].startswith("since: "), response.get_json()
            assert "out of range" in response.get_json()["error"] or "expected" in response.get_json()["error"]
    finally:
        app.stop()


def _am_config(webhook_url: str, token_file: Path) -> str:
    return f"""
route:
  receiver: pgperf
  group_by: [alertname, instance]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: pgperf
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
        http_config:
          authorization:
            credentials_file: {token_file}
"""


STARTED = datetime.now(UTC) - timedelta(minutes=10)


def _am_alert(name: str, ends: datetime | None = None) -> dict[str, Any]:
    alert: dict[str, Any] = {"labels": {"alertname": name, "severity": "critical", "instance": "db1:9187"},
                             "annotations": {"summary": f"{name} fired", "value": "97", "threshold": "95"},
                             "startsAt": STARTED.isoformat()}
    if ends is not None:
        alert["endsAt"] = ends.isoformat()
    return alert


def test_acknowledge_silences_and_reconcile_resolves(pg_cluster: Cluster, alerts_schema: str, tmp_path: Path,
                                                     alertmanager_factory: Any) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    port = free_port()
    am: Process = alertmanager_factory(_am_config(f"http://127.0.0.1:{port}/api/v1/alerts/webhook", token_file))
    config = exporter_config(pg_cluster, alerts_schema, tmp_path, alertmanager_url=am.url,
                             reconcile_interval="500ms", resolve_after="1s")
    config = config.model_copy(update={"web": config.web.model_copy(update={"listen_address": f"127.0.0.1:{port}"})})
    from helpers import Exporter

    exporter = Exporter(config, address=f"127.0.0.1:{port}")
    exporter.start()
    try:
        wait_until(lambda: exporter.monitor.store and exporter.monitor.store.up, message="store up")
        post_alerts(am, [_am_alert("PgperfConnectionsExhausted")])
        row = wait_until(lambda: rows(pg_cluster, alerts_schema), timeout=20, message="webhook delivered by Alertmanager")[0]
        assert row[1:4] == ("firing", "critical", "PgperfConnectionsExhausted")

        ack = requests.post(f"{exporter.url}/api/v1/alerts/{row[0]}/ack", json={"by": "oncall"}, headers=auth(), timeout=10)
        assert ack.status_code == 200, ack.text
        silence_id = ack.json()["silence_id"]
        silence = requests.get(f"{am.url}/api/v2/silence/{silence_id}", timeout=5).json()
        assert silence["status"]["state"] == "active" and silence["createdBy"] == "oncall"
        assert {m["name"]: m["value"] for m in silence["matchers"]}["alertname"] == "PgperfConnectionsExhausted"

        # The condition clears: Alertmanager sends no resolved notification for a silenced
        # alert, so the reconciler notices the alert is gone.
        post_alerts(am, [_am_alert("PgperfConnectionsExhausted", ends=datetime.now(UTC) - timedelta(seconds=1))])
        row = wait_until(lambda: (r := rows(pg_cluster, alerts_schema)[0]) and r[1] == "resolved" and r, timeout=20,
                         message="resolved by reconciliation")
        assert row[8] == "alertmanager" and row[7] == "oncall"
        expired = requests.get(f"{am.url}/api/v2/silence/{silence_id}", timeout=5).json()
        assert expired["status"]["state"] == "expired"
    finally:
        exporter.stop()


def test_acknowledge_with_alertmanager_down_records_nothing(pg_cluster: Cluster, alerts_schema: str,
                                                            tmp_path: Path) -> None:
    config = exporter_config(pg_cluster, alerts_schema, tmp_path, alertmanager_url=f"http://127.0.0.1:{free_port()}",
                             request_timeout=1)
    with running_exporter(config) as exporter:
        wait_until(lambda: exporter.monitor.store and exporter.monitor.store.up, message="store up")
        assert requests.post(exporter.url + "/api/v1/alerts/webhook", json=payload(), headers=auth(),
                             timeout=5).status_code == 200
        (row,) = rows(pg_cluster, alerts_schema)
        response = requests.post(f"{exporter.url}/api/v1/alerts/{row[0]}/ack", json={"by": "alice"}, headers=auth(),
                                 timeout=10)
        assert response.status_code == 502
        assert "unreachable" in response.json()["error"] and "nothing was recorded" in response.json()["error"]
        (after,) = rows(pg_cluster, alerts_schema)
        assert after == row  # still firing, no acknowledgment half-recorded
        # Nor a resolution: whether Prometheus still fires the alert cannot be asked.
        resolved = requests.post(f"{exporter.url}/api/v1/alerts/{row[0]}/resolve", json={"by": "alice"},
                                 headers=auth(), timeout=10)
        assert resolved.status_code == 502, resolved.text
        assert "unreachable" in resolved.json()["error"] and "nothing was recorded" in resolved.json()["error"]
        assert rows(pg_cluster, alerts_schema) == [row]


def test_alerts_cli(pg_cluster: Cluster, alerts_schema: str, tmp_path: Path) -> None:
    config = exporter_config(pg_cluster, alerts_schema, tmp_path)
    with running_exporter(config) as exporter:
        wait_until(lambda: exporter.monitor.store and exporter.monitor.store.up, message="store up")
        requests.post(exporter.url + "/api/v1/alerts/webhook", json=payload(), headers=auth(), timeout=5)
    (row,) = rows(pg_cluster, alerts_schema)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGPERF_")}
    env["PGPERF_STORE_SCHEMA"] = alerts_schema

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pgperf", "alerts", *args, "--dsn", pg_cluster.dsn()],
                              capture_output=True, text=True, env=env, timeout=60)

    listed = cli("list", "--state", "firing")
    assert listed.returncode == 0 and row[0] in listed.stdout and "PgperfSlowQueries" in listed.stdout
    as_json = json.loads(cli("list", "--json").stdout)
    assert as_json[0]["alert_id"] == row[0]
    # No Alertmanager configured: said, with the fix, and nothing recorded.
    for action in ("ack", "resolve"):
        refused = cli(action, row[0], "--by", "carol")
        assert refused.returncode == 2, refused.stderr
        assert "no Alertmanager is configured" in refused.stderr and "alerts.alertmanager_urls" in refused.stderr
        assert "--no-alertmanager" in refused.stderr and "Traceback" not in refused.stderr
    assert rows(pg_cluster, alerts_schema) == [row]
    acked = cli("ack", row[0], "--by", "carol", "--no-alertmanager")
    assert acked.returncode == 0, acked.stderr
    assert acked.stdout.strip() == (f"alert {row[0]} (PgperfSlowQueries) is acknowledged by carol: in pgperf only: "
                                    "no silence, its notifications go on")
    resolved = cli("resolve", row[0], "--by", "carol", "--no-alertmanager")
    assert resolved.returncode == 0 and "resolved by carol: without asking Alertmanager" in resolved.stdout
    again = cli("ack", row[0], "--by", "carol", "--no-alertmanager")
    assert again.returncode == 1 and "cannot be acknowledged" in again.stderr
    assert cli("resolve", "missing-id", "--by", "x", "--no-alertmanager").returncode == 1
    final = rows(pg_cluster, alerts_schema)[0]
    assert final[1] == "resolved" and final[7] == "carol" and final[8] == "carol"


class _LoginPage(LocalHTTPServer):
    """A stand-in for a proxy or single sign-on page in front of Alertmanager: 200, HTML."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = b"<html><body>Please log in</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler)


def test_client_turns_a_non_json_answer_into_an_error() -> None:
    from pgperf.alerts.alertmanager import AlertmanagerClient, AlertmanagerError

    with _LoginPage() as page:
        client = AlertmanagerClient(f"http://admin:hunter2@127.0.0.1:{page.port}", timeout=5)
        for call in (client.alerts, lambda: client.silence("x"),
                     lambda: client.create_silence({"a": "b"}, created_by="x", comment="y", duration=timedelta(1))):
            with pytest.raises(AlertmanagerError) as info:
                call()
            assert "not JSON (text/html)" in str(info.value)
            assert "hunter2" not in str(info.value) and f"http://admin:***@127.0.0.1:{page.port}" in str(info.value)


def test_ack_behind_a_login_page_is_502_and_the_reconciler_lives_on(
        pg_cluster: Cluster, alerts_schema: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with _LoginPage() as page:
        config = exporter_config(pg_cluster, alerts_schema, tmp_path, reconcile_interval=0.2, request_timeout=2,
                                 alertmanager_url=f"http://admin:hunter2@127.0.0.1:{page.port}")
        with running_exporter(config) as exporter:
            wait_until(lambda: exporter.monitor.store and exporter.monitor.store.up, message="store up")
            assert requests.post(exporter.url + "/api/v1/alerts/webhook", json=payload(), headers=auth(),
                                 timeout=5).status_code == 200
            (row,) = rows(pg_cluster, alerts_schema)
            response = requests.post(f"{exporter.url}/api/v1/alerts/{row[0]}/ack", json={"by": "alice"},
                                     headers=auth(), timeout=10)
            assert response.status_code == 502, response.text
            assert "not JSON" in response.json()["error"] and "hunter2" not in response.text
            service = exporter.monitor.alert_service
            assert service is not None and service._thread is not None
            wait_until(lambda: "alert reconciliation paused" in caplog.text, message="reconciliation paused")
            assert service._thread.is_alive()
        assert "hunter2" not in caplog.text


def test_reconciler_survives_an_unexpected_error(pg_cluster: Cluster, alerts_schema: str, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from pgperf.alerts import AlertStore
    from pgperf.alerts.service import AlertService
    from pgperf.store import StoreClient

    config = exporter_config(pg_cluster, alerts_schema, tmp_path, reconcile_interval=0.05,
                             alertmanager_url="http://127.0.0.1:9")
    client = StoreClient(config)
    service = AlertService(AlertStore(client), config)
    rounds: list[int] = []

    def reconcile(now: float | None = None) -> int:
        rounds.append(1)
        if len(rounds) <= 2:
            raise RuntimeError("unexpected")
        return 0

    service.reconcile = reconcile  # type: ignore[method-assign]
    try:
        service.start()
        wait_until(lambda: len(rounds) >= 4, message="rounds after a failing one")
        assert service._thread is not None and service._thread.is_alive()
        assert "alert reconciliation round failed" in caplog.text and "RuntimeError: unexpected" in caplog.text
    finally:
        service.stop()
        client.close()
