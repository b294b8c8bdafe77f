"""The bundle with real processes: pgperf -> Prometheus (the rules) -> Alertmanager (the
routes) -> receivers, against the test session's PostgreSQL.

The receivers are one HTTP server in this process standing in for pgperf's lifecycle
webhook, Slack, PagerDuty and the generic webhook; Alertmanager reads their URLs and the
tokens from secret files, as in production. Configurations are the committed ones,
rendered for loopback addresses by tools.bundle.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from helpers import make_config, running_exporter, wait_until
from pgperf.config import load_config
from tools import bundle
from tools.cluster import Cluster, free_port
from tools.demo import LocalSink
from tools.demo import alertmanager_config as demo_alertmanager_config

pytestmark = [pytest.mark.bundle, pytest.mark.slow]

TOKEN = "test-api-token-0123"
WEBHOOK_TOKEN = "test-webhook-token"
ROUTING_KEY = "test-routing-key"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receivers:
    """An HTTP server recording every notification posted to it."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def alerts(self, path: str) -> list[tuple[Received, dict[str, Any]]]:
        return [(r, a) for r in list(self.received) if r.path == path for a in r.body.get("alerts", [])]

    def names(self, path: str, status: str = "firing") -> set[tuple[str, str]]:
        return {(a["labels"]["alertname"], a["labels"].get("severity", "")) for _, a in self.alerts(path)
                if a["status"] == status}


@pytest.fixture(scope="module")
def receivers() -> Iterator[Receivers]:
    received: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(Received(self.path, dict(self.headers), json.loads(body or b"{}")))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status": "success", "ok": true}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receivers(server, received)
    finally:
        server.shutdown()
        server.server_close()


def _binary(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    raise AssertionError(f"none of {names} is installed: install the Debian packages (make deps)")


class Process:
    """A server process of this test module, stopped (and its log shown) at the end."""

    def __init__(self, args: list[str], log: Path, ready_url: str) -> None:
        self.log = log
        self.ready_url = ready_url
        with log.open("wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        wait_until(self._ready, timeout=30, message=f"{Path(args[0]).name} ready ({log})")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
        try:
            return requests.get(self.ready_url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def alertmanager(receivers: Receivers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Alertmanager with the committed configuration, notifying `receivers`."""
    work = tmp_path_factory.mktemp("alertmanager")
    secrets = bundle.write_secrets(work / "secrets", {
        "pgperf-api-token": TOKEN,
        "webhook-token": WEBHOOK_TOKEN,
        "pagerduty-routing-key": ROUTING_KEY,
        "slack-webhook-url": receivers.url + "/slack",
    })
    config = bundle.alertmanager_config(receivers.url, secrets_dir=secrets["pgperf-api-token"].parent,
                                        webhook_url=receivers.url + "/webhook", fast=True)
    # PagerDuty's events API and the SMTP server are not reachable from a test: PagerDuty
    # posts to the stand-in; e-mail goes to a closed port (delivery fails, routing does not).
    for receiver in config["receivers"]:
        for pd in receiver.get("pagerduty_configs", []):
            pd["url"] = receivers.url + "/pagerduty"
    config["global"]["smtp_smarthost"] = f"127.0.0.1:{free_port()}"
    config["global"]["smtp_require_tls"] = False
    (work / "alertmanager.yml").write_text(bundle.dump(config))
    port = free_port()
    process = Process([
        _binary("prometheus-alertmanager", "alertmanager"),
        f"--config.file={work / 'alertmanager.yml'}", f"--storage.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
    ], work / "alertmanager.log", f"http://127.0.0.1:{port}/-/ready")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.stop()


def _post_alerts(alertmanager: str, *alerts: dict[str, Any]) -> None:
    response = requests.post(f"http://{alertmanager}/api/v2/alerts", json=list(alerts), timeout=10)
    assert response.status_code == 200, response.text


def _alert(name: str, severity: str, category: str, instance: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": severity, "category": category, "instance": instance,
                   "job": "pgperf", **labels},
        "annotations": {"summary": f"{name} summary", "description": f"{name} on {instance}",
                        "value": "1", "threshold": "0.5",
                        "runbook_url": "https://github.com/pgperf/pgperf/blob/main/docs/runbook.md#" + name.lower(),
                        "dashboard_url": f"http://localhost:3000/d/pgperf-overview?var-instance={instance}"},
    }


def test_alertmanager_routes_inhibits_and_notifies(alertmanager: str, receivers: Receivers) -> None:
    _post_alerts(
        alertmanager,
        # A critical mutes the warning of the same alert on the same server.
        _alert("PgperfTransactionIdWraparound", "critical", "maintenance", "db1:9187", datname="app"),
        _alert("PgperfTransactionIdWraparound", "warning", "maintenance", "db1:9187", datname="app"),
        # PostgreSQL down mutes the rest of its server, except host resources.
        _alert("PgperfPostgresDown", "critical", "availability", "db3:9187"),
        _alert("PgperfCacheHitRatioLow", "warning", "cache", "db3:9187"),
        _alert("PgperfDiskUsageHigh", "error", "resources", "db3:9187", path="/data"),
        # Another server: nothing mutes its warning; and an info notification.
        _alert("PgperfCacheHitRatioLow", "warning", "cache", "db4:9187"),
        _alert("PgperfCheckpointsTooFrequent", "info", "maintenance", "db4:9187"),
    )
    hook = bundle.WEBHOOK_PATH
    expected = {("PgperfTransactionIdWraparound", "critical"), ("PgperfPostgresDown", "critical"),
                ("PgperfDiskUsageHigh", "error"), ("PgperfCacheHitRatioLow", "warning"),
                ("PgperfCheckpointsTooFrequent", "info")}
    def delivered() -> bool:
        paths = [r.path for r in receivers.received]
        return (receivers.names(hook) >= expected and paths.count("/slack") >= 4
                and "/pagerduty" in paths and "/webhook" in paths)

    wait_until(delivered, timeout=30, message="notifications at every receiver")
    time.sleep(3)  # a few group intervals: anything muted would have arrived by now

    # pgperf: every alert not muted, with its token, in the version-4 webhook payload.
    assert receivers.names(hook) == expected
    muted = [a for _, a in receivers.alerts(hook)
             if a["labels"]["instance"] in ("db1:9187", "db3:9187") and a["labels"]["severity"] == "warning"]
    assert not muted, muted
    for request, _ in receivers.alerts(hook):
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.body["version"] == "4"
    # PagerDuty: the critical alerts only, with the routing key from its file.
    pages = [r.body for r in receivers.received if r.path == "/pagerduty"]
    assert {p["payload"]["severity"] for p in pages} == {"critical"}
    assert {p["routing_key"] for p in pages} == {ROUTING_KEY}
    assert {p["payload"]["summary"].split(" ")[0] for p in pages} == {"PgperfTransactionIdWraparound",
                                                                      "PgperfPostgresDown"}
    # Slack: critical, error and warning, rendered by the pgperf templates.
    slack = [r.body for r in receivers.received if r.path == "/slack"]
    titles = {a["title"] for s in slack for a in s["attachments"]}
    assert "[FIRING:1] CRITICAL PgperfPostgresDown on db3:9187" in titles
    assert "[FIRING:1] WARNING PgperfCacheHitRatioLow on db4:9187" in titles
    assert not any("INFO" in t for t in titles)
    assert {s["channel"] for s in slack} == {"#pgperf-alerts"}
    # The generic webhook: info only, with its own token.
    assert receivers.names("/webhook") == {("PgperfCheckpointsTooFrequent", "info")}
    assert {r.headers["Authorization"] for r in receivers.received if r.path == "/webhook"} == {
        f"Bearer {WEBHOOK_TOKEN}"}
    # Alertmanager's own view: the muted alerts are suppressed by an inhibition.
    listed = requests.get(f"http://{alertmanager}/api/v2/alerts", timeout=10).json()
    suppressed = {(a["labels"]["alertname"], a["labels"]["instance"]) for a in listed
                  if a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]}
    assert suppressed == {("PgperfTransactionIdWraparound", "db1:9187"), ("PgperfCacheHitRatioLow", "db3:9187")}


@pytest.fixture
def slow_statements(pg_cluster: Cluster) -> Iterator[None]:
    """A statement taking 20 ms, run every 100 ms while the test runs."""
    stop = threading.Event()

    def work() -> None:
        with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
            while not stop.wait(0.1):
                conn.execute("SELECT pg_sleep(0.02) AS bundle_slow_marker")

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def test_rules_alert_from_a_real_exporter_through_alertmanager(
    pg_cluster: Cluster, alertmanager: str, receivers: Receivers, slow_statements: None,
    tmp_path: Path,
) -> None:
    """The slow-query threshold is lowered to 5 ms in pgperf's configuration: the rules
    follow it. One exporter has one target, the other two: the threshold joins work for
    both shapes of the series."""
    thresholds = {"slow_query_time_ms": 5}
    single = make_config(pg_cluster.dsn(), thresholds=thresholds)
    multi = load_config(flags={
        "profile": "development", "sampling_interval": 1, "store": {"enabled": False}, "thresholds": thresholds,
        "targets": [{"name": "main", "dsn": pg_cluster.dsn()}, {"name": "second", "dsn": pg_cluster.dsn()}],
    }, env={})
    with running_exporter(single) as one, running_exporter(multi) as two:
        addresses = [e.url.removeprefix("http://") for e in (one, two)]
        config = bundle.prometheus_config(addresses, alertmanager, interval="1s")
        (tmp_path / "prometheus.yml").write_text(bundle.dump(config))
        port = free_port()
        api = f"http://127.0.0.1:{port}/api/v1"
        process = Process([
            _binary("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        ], tmp_path / "prometheus.log", f"http://127.0.0.1:{port}/-/ready")
        try:
            _check_prometheus(api, addresses, receivers)
        finally:
            process.stop()


def _firing(api: str, name: str) -> list[dict[str, Any]]:
    alerts = requests.get(f"{api}/alerts", timeout=10).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]


def _check_prometheus(api: str, addresses: list[str], receivers: Receivers) -> None:
    def slow_everywhere() -> list[dict[str, Any]] | None:
        alerts = [a for a in _firing(api, "PgperfSlowQueries") if a["labels"]["severity"] == "warning"
                  and a["labels"]["user"] == "postgres"]
        where = {(a["labels"]["instance"], a["labels"].get("target", "")) for a in alerts}
        return alerts if where >= {(addresses[0], ""), (addresses[1], "main"), (addresses[1], "second")} else None

    alerts = wait_until(slow_everywhere, timeout=60, interval=0.5, message="PgperfSlowQueries from both exporters")
    for alert in alerts:
        notes = alert["annotations"]
        assert notes["threshold"] == "0.005"
        assert float(notes["value"]) > 0.005
        assert "averaged more than 5ms per call" in notes["description"]
        assert notes["runbook_url"].endswith("docs/runbook.md#pgperfslowqueries")
        assert notes["dashboard_url"].startswith(
            f"http://localhost:3000/d/pgperf-queries?var-instance={alert['labels']['instance']}")

    # The thresholds join the series of one target and of several alike.
    query = ("pg_stat_activity_connection_utilization_ratio < on (job, instance, target) group_left "
             "max by (job, instance, target) (pgperf_threshold_connection_utilization_warning_ratio)")
    result = requests.get(f"{api}/query", params={"query": query}, timeout=10).json()["data"]["result"]
    assert {(r["metric"]["instance"], r["metric"].get("target", "")) for r in result} == {
        (addresses[0], ""), (addresses[1], "main"), (addresses[1], "second")}

    # Every rule evaluates without error on real series (no duplicate matches in a join).
    def evaluated() -> list[dict[str, Any]] | None:
        groups = requests.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
        rules = [r | {"group": g["name"]} for g in groups for r in g["rules"]]
        return rules if all(r["health"] == "ok" for r in rules if r["group"] != "pgperf.queries.baseline") else None

    rules = wait_until(evaluated, timeout=30, message="every rule evaluated")
    errors = {r.get("name"): r.get("lastError") for r in rules if r["health"] == "err" or r.get("lastError")}
    assert not errors, errors
    assert len({r["name"] for r in rules if r["type"] == "alerting"}) >= 27

    # ... and Alertmanager hands the alert to pgperf's webhook.
    wait_until(lambda: any(a["labels"]["alertname"] == "PgperfSlowQueries"
                           and a["labels"].get("instance") == addresses[1]
                           for _, a in receivers.alerts(bundle.WEBHOOK_PATH)),
               timeout=30, message="PgperfSlowQueries at the pgperf webhook")


# -- the demo's Alertmanager: every channel to the local sink ------------------------------

def _endpoints(config: dict[str, Any]) -> dict[str, str]:
    """Where each channel of *config* would deliver: receiver/kind -> URL or SMTP host,
    Alertmanager's defaults included (PagerDuty's events API, the global relay)."""
    glob = config.get("global", {})
    defaults = {"slack_configs": glob.get("slack_api_url", "(Slack URL from api_url_file)"),
                "pagerduty_configs": glob.get("pagerduty_url", "https://events.pagerduty.com/v2/enqueue"),
                "email_configs": glob.get("smtp_smarthost", "")}
    out = {}
    for receiver in config["receivers"]:
        for kind, items in receiver.items():
            if kind == "name":
                continue
            for i, item in enumerate(items):
                where = item.get("url") or item.get("api_url") or item.get("smarthost") or defaults.get(kind, "")
                out[f"{receiver['name']}/{kind}[{i}]"] = where
    return out


def test_demo_alertmanager_notifies_only_the_local_sink(alertmanager_factory: Any, tmp_path: Path) -> None:
    """make demo's Alertmanager: pgperf's receiver posts to pgperf; Slack, PagerDuty, the
    webhook and e-mail all reach the demo's local sink (HTTP and SMTP), and none fails."""
    sink = LocalSink().start()
    try:
        secrets = tmp_path / "secrets"
        bundle.write_secrets(secrets)
        config = demo_alertmanager_config("http://127.0.0.1:9", secrets, sink)
        endpoints = _endpoints(config)
        assert endpoints.pop("pgperf/webhook_configs[0]") == "http://127.0.0.1:9" + bundle.WEBHOOK_PATH
        outside = {name: where for name, where in endpoints.items()
                   if not (where.startswith(sink.url + "/") or where == sink.smtp)}
        assert not outside, outside
        assert {name.split("/")[0] for name in endpoints} == {"slack", "pagerduty", "email", "webhook"}
        text = bundle.dump(config)
        (tmp_path / "alertmanager.yml").write_text(text)
        checked = subprocess.run([_binary("amtool"), "check-config", str(tmp_path / "alertmanager.yml")],
                                 capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr

        am = alertmanager_factory(text)
        _post_alerts(am.url.removeprefix("http://"),
                     _alert("PgperfPostgresDown", "critical", "availability", "db1:9187"),
                     _alert("PgperfCheckpointsTooFrequent", "info", "maintenance", "db2:9187"))

        def delivered() -> set[str]:
            channels = {n.channel for n in sink.notifications()}
            return channels if channels >= {"slack", "pagerduty", "webhook", "email"} else set()

        wait_until(delivered, timeout=30, message="notifications at every channel of the sink")
        summaries = {n.channel: n.summary for n in sink.notifications()}
        assert summaries["email"] == (
            "to dba-team@example.com: [pgperf] [FIRING:1] INFO PgperfCheckpointsTooFrequent on db2:9187")
        assert summaries["pagerduty"].startswith("trigger: PgperfPostgresDown on db1:9187")
        assert summaries["slack"] == "[FIRING:1] CRITICAL PgperfPostgresDown on db1:9187"
        # Alertmanager logs each failed delivery attempt ("Notify attempt failed", a warning)
        # at once; pgperf's receiver is expected to fail: nothing listens at 127.0.0.1:9.
        failed = [line for line in am.log().splitlines()
                  if "Notify" in line and "failed" in line and "receiver=pgperf" not in line]
        assert not failed, failed
    finally:
        sink.stop()
