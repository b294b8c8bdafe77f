"""Alertmanager as an HA pair: two real Alertmanagers in one gossip cluster, and pgperf
configured with both (``alerts.alertmanager_urls``).

Silences are gossiped between the members, alerts are not (Prometheus sends every alert to
every member). So: acknowledging creates the silence on the first member that answers and
the other sees it; with the first member stopped, acknowledging still works; the
reconciler's view of current alerts is that of every member that answers.

Gossip timings are shortened (settle, push-pull, gossip intervals) so a restarted member
catches up in seconds; nothing else differs from a production pair.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from fix_bundle import ALERTMANAGER, Process, post_alerts
from helpers import make_config, running_exporter, wait_until
from pgperf.alerts import AlertStore
from pgperf.alerts.alertmanager import AlertmanagerClient, AlertmanagerError, Alertmanagers
from pgperf.alerts.service import AlertService
from pgperf.config import ConfigError, load_config
from pgperf.store import StoreClient
from tools.cluster import Cluster, free_port

TOKEN = "ha-test-token-0123456789"
# Alertmanager needs a receiver; notifications are not what these tests look at.
CONFIG = "route:\n  receiver: none\nreceivers:\n  - name: none\n"
GOSSIP_FLAGS = ["--cluster.settle-timeout=2s", "--cluster.pushpull-interval=1s", "--cluster.gossip-interval=100ms",
                "--cluster.reconnect-interval=1s", "--cluster.peer-timeout=1s"]


class Member:
    """One Alertmanager of the pair: its web and gossip ports survive a restart, and so
    does its data directory (silences are kept on disk, as in production)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port, self.cluster_port = free_port(), free_port()
        self.peers: list[Member] = []
        self.process: Process | None = None
        (workdir / "alertmanager.yml").write_text(CONFIG)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [ALERTMANAGER, f"--config.file={self.workdir / 'alertmanager.yml'}",
                f"--storage.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                f"--cluster.listen-address=127.0.0.1:{self.cluster_port}", "--log.level=info", *GOSSIP_FLAGS,
                *(f"--cluster.peer=127.0.0.1:{peer.cluster_port}" for peer in self.peers)]
        self.process = Process(args, self.url, "/-/ready", self.workdir)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def cluster(self) -> dict[str, Any]:
        status = requests.get(self.url + "/api/v2/status", timeout=5).json()
        return status["cluster"]  # type: ignore[no-any-return]

    def silence(self, silence_id: str) -> dict[str, Any] | None:
        response = requests.get(f"{self.url}/api/v2/silence/{silence_id}", timeout=5)
        found: dict[str, Any] | None = response.json() if response.status_code == 200 else None
        return found

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        assert self.process is not None, "the member is stopped"
        post_alerts(self.process, alerts)

    def log(self) -> str:
        return self.process.log() if self.process else (self.workdir / "process.log").read_text(errors="replace")


def wait_clustered(members: list[Member]) -> None:
    """Every running member sees all of them and has settled."""
    running = [m for m in members if m.process is not None]

    def settled() -> bool:
        return all((c := m.cluster())["status"] == "ready" and len(c["peers"]) == len(running) for m in running)

    try:
        wait_until(settled, timeout=30, interval=0.2, message="the Alertmanager pair to form one cluster")
    except AssertionError:
        raise AssertionError("\n\n".join(m.log() for m in running)) from None


@pytest.fixture
def alertmanager_pair(bundle_dir: Path) -> Iterator[list[Member]]:
    """Two Alertmanagers, each the other's peer, settled into one cluster."""
    members = []
    for i in (1, 2):
        workdir = bundle_dir / f"alertmanager-{i}"
        workdir.mkdir()
        members.append(Member(workdir))
    members[0].peers, members[1].peers = [members[1]], [members[0]]
    try:
        for member in members:
            member.start()
        wait_clustered(members)
        yield members
    finally:
        for member in members:
            member.stop()


@pytest.fixture
def ha_schema(pg_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    schema = "ha_" + request.node.name.removeprefix("test_")[:40]
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    yield schema
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


STARTED = datetime.now(UTC) - timedelta(minutes=5)


def am_alert(name: str, *, ended: bool = False) -> dict[str, Any]:
    """An alert as Prometheus posts it to Alertmanager (the same start each time: one alert)."""
    alert: dict[str, Any] = {
        "labels": {"alertname": name, "severity": "warning", "instance": "db1:9187", "job": "pgperf"},
        "annotations": {"summary": f"{name} fired", "threshold": "1", "value": "2"},
        "startsAt": STARTED.isoformat(),
    }
    if ended:
        alert["endsAt"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    return alert


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def ha_config(pg_cluster: Cluster, schema: str, tmp_path: Path, urls: list[str], **alerts: Any) -> Any:
    return make_config(pg_cluster.dsn(), sampling_interval=30, api={"token": TOKEN},
                       store={"enabled": True, "schema": schema, "spool_dir": str(tmp_path / "spool")},
                       alerts={"alertmanager_urls": urls, **alerts})


# -- configuration ------------------------------------------------------------------------

def _alerts(**env: str) -> Any:
    return load_config(env={"PGPERF_DSN": "host=db1", **env}).alerts


def test_one_url_is_the_one_element_list() -> None:
    assert _alerts().alertmanagers == ()
    single = _alerts(PGPERF_ALERTS_ALERTMANAGER_URL="http://am:9093/")
    assert single.alertmanagers == ("http://am:9093",) and single.alertmanager_urls == ()
    pair = _alerts(PGPERF_ALERTS_ALERTMANAGER_URLS="http://am-1:9093/, https://am-2:9093")
    assert pair.alertmanagers == ("http://am-1:9093", "https://am-2:9093")
    assert _alerts(PGPERF_ALERTS_ALERTMANAGER_URLS="").alertmanagers == ()
    flags = load_config(flags={"dsn": "host=db1", "alerts": {"alertmanager_urls": ["http://a:9093", "http://b:9093"]}},
                        env={})
    assert flags.alerts.alertmanagers == ("http://a:9093", "http://b:9093")


def test_file_lists_the_pair(tmp_path: Path) -> None:
    path = tmp_path / "pgperf.yml"
    path.write_text("dsn: host=db1\nalerts:\n  alertmanager_urls:\n    - http://am-1:9093\n    - http://am-2:9093\n")
    assert load_config(config_file=str(path), env={}).alerts.alertmanagers == ("http://am-1:9093", "http://am-2:9093")
    path.write_text("dsn: host=db1\nalerts:\n  alertmanager_urls:\n    - http://am-1:9093\n"
                    "    - ftp://admin:hunter2@am-2:9093\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_file=str(path), env={})
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:3: alerts.alertmanager_urls: expected an http:// or https:// URL")
    assert "item 2: 'ftp://admin:***@am-2:9093'" in problem and "hunter2" not in problem


@pytest.mark.parametrize(("env", "message"), [
    ({"PGPERF_ALERTS_ALERTMANAGER_URLS": "http://am-1:9093,http://am-1:9093/"},
     "environment variable PGPERF_ALERTS_ALERTMANAGER_URLS: alerts.alertmanager_urls: each Alertmanager once: "
     "http://am-1:9093 is listed more than once"),
    ({"PGPERF_ALERTS_ALERTMANAGER_URLS": "http://am-1:9093,,http://am-2:9093"}, "(item 2 is empty)"),
    ({"PGPERF_ALERTS_ALERTMANAGER_URLS": "http://am-1:9093", "PGPERF_ALERTS_ALERTMANAGER_URL": "http://am-2:9093"},
     "alertmanager_url and alertmanager_urls are both set: list every Alertmanager in alertmanager_urls"),
])
def test_bad_alertmanager_lists(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _alerts(**env)
    assert message in str(info.value)


# -- the pair, real processes ----------------------------------------------------------

@pytest.mark.bundle
def test_a_silence_created_on_one_member_is_visible_on_the_other(alertmanager_pair: list[Member]) -> None:
    first, second = alertmanager_pair
    silence_id = AlertmanagerClient(first.url).create_silence(
        {"alertname": "PgperfGossip"}, created_by="oncall", comment="gossip", duration=timedelta(hours=1))
    replicated = wait_until(lambda: second.silence(silence_id), timeout=10, message="the silence on the second member")
    assert replicated["status"]["state"] == "active" and replicated["createdBy"] == "oncall"
    AlertmanagerClient(second.url).expire_silence(silence_id)
    wait_until(lambda: (s := first.silence(silence_id)) and s["status"]["state"] == "expired", timeout=10,
               message="the expiry on the first member")


@pytest.mark.bundle
def test_acknowledge_with_the_first_alertmanager_stopped(pg_cluster: Cluster, ha_schema: str, tmp_path: Path,
                                                          alertmanager_pair: list[Member]) -> None:
    first, second = alertmanager_pair
    config = ha_config(pg_cluster, ha_schema, tmp_path, [first.url, second.url], reconcile_interval="300ms",
                       request_timeout=2)
    with running_exporter(config) as exporter:
        wait_until(lambda: pg_cluster.execute(f"SELECT to_regclass('{ha_schema}.performance_alerts')")[0][0],
                   timeout=30, message="the store's tables")
        # Prometheus sends every alert to every member; the reconciler records what it finds.
        for member in alertmanager_pair:
            member.post_alerts([am_alert("PgperfPairA"), am_alert("PgperfPairB")])

        def recorded() -> dict[str, str]:
            return dict(pg_cluster.execute(f"SELECT metric, alert_id FROM {ha_schema}.performance_alerts"))

        alert_ids = wait_until(lambda: recorded() if len(recorded()) == 2 else None, timeout=30,
                               message="both alerts recorded")

        def ack(name: str) -> requests.Response:
            return requests.post(f"{exporter.url}/api/v1/alerts/{alert_ids[name]}/ack", json={"by": "oncall"},
                                 headers=auth(), timeout=30)

        # Both up: the silence is made on the first member and gossiped to the second.
        response = ack("PgperfPairA")
        assert response.status_code == 200, response.text
        silence_a = response.json()["silence_id"]
        assert first.silence(silence_a) is not None
        wait_until(lambda: second.silence(silence_a), timeout=10, message="silence A gossiped to the second member")

        # The first member stops: acknowledging still creates the silence, on the second.
        first.stop()
        started = time.monotonic()
        response = ack("PgperfPairB")
        ack_seconds = time.monotonic() - started
        assert response.status_code == 200, response.text
        silence_b = response.json()["silence_id"]
        on_second = second.silence(silence_b)
        assert on_second is not None and on_second["status"]["state"] == "active"
        assert on_second["createdBy"] == "oncall"
        assert {m["name"]: m["value"] for m in on_second["matchers"]}["alertname"] == "PgperfPairB"
        suppressed = requests.get(second.url + "/api/v2/alerts", params={"filter": 'alertname="PgperfPairB"'},
                                  timeout=5).json()
        assert suppressed and all(a["status"]["state"] == "suppressed" for a in suppressed)
        (row,) = pg_cluster.execute(f"SELECT status, acknowledged_by, silence_id FROM {ha_schema}.performance_alerts"
                                    " WHERE metric = 'PgperfPairB'")
        assert row == ("acknowledged", "oncall", silence_b)

        # Resolving by hand is refused while an Alertmanager that answers still holds A:
        # Prometheus still fires it.
        def resolve_a() -> requests.Response:
            return requests.post(f"{exporter.url}/api/v1/alerts/{alert_ids['PgperfPairA']}/resolve",
                                 json={"by": "oncall"}, headers=auth(), timeout=30)

        response = resolve_a()
        assert response.status_code == 409 and "is still firing" in response.json()["error"], response.text
        # Once it has ended, resolving expires A's silence on every member that answers (the
        # stopped one catches up through the cluster, below).
        second.post_alerts([am_alert("PgperfPairA", ended=True)])
        response = resolve_a()
        assert response.status_code == 200, response.text
        assert second.silence(silence_a)["status"]["state"] == "expired"  # type: ignore[index]

        # The first member comes back and catches up through the cluster.
        first.start()
        wait_clustered(alertmanager_pair)
        wait_until(lambda: (b := first.silence(silence_b)) and b["status"]["state"] == "active"
                   and (a := first.silence(silence_a)) and a["status"]["state"] == "expired",
                   timeout=30, interval=0.2, message="the restarted member to catch up with the silences")
    print(f"acknowledged with the first Alertmanager stopped in {ack_seconds * 1000:.0f} ms")


@pytest.mark.bundle
def test_acknowledge_fails_clearly_when_no_alertmanager_answers(pg_cluster: Cluster, ha_schema: str,
                                                                tmp_path: Path) -> None:
    down = [f"http://127.0.0.1:{free_port()}", f"http://admin:hunter2@127.0.0.1:{free_port()}"]
    config = ha_config(pg_cluster, ha_schema, tmp_path, down, request_timeout=1)
    payload = {"version": "4", "status": "firing", "receiver": "pgperf", "alerts": [{
        "status": "firing", "labels": {"alertname": "PgperfNobodyHome", "severity": "warning"},
        "annotations": {"summary": "x"}, "startsAt": datetime.now(UTC).isoformat(), "fingerprint": "f00d"}]}
    with running_exporter(config) as exporter:
        wait_until(lambda: pg_cluster.execute(f"SELECT to_regclass('{ha_schema}.performance_alerts')")[0][0],
                   timeout=30, message="the store's tables")
        response = requests.post(exporter.url + "/api/v1/alerts/webhook", json=payload, headers=auth(), timeout=5)
        assert response.status_code == 200, response.text
        ((alert_id,),) = pg_cluster.execute(f"SELECT alert_id FROM {ha_schema}.performance_alerts")
        response = requests.post(f"{exporter.url}/api/v1/alerts/{alert_id}/ack", json={"by": "oncall"},
                                 headers=auth(), timeout=30)
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert "no Alertmanager could create the silence" in error and "nothing was recorded" in error
    assert f"Alertmanager at {down[0]} unreachable" in error
    assert f"Alertmanager at {down[1].replace('hunter2', '***')} unreachable" in error
    assert "hunter2" not in response.text
    (row,) = pg_cluster.execute(f"SELECT status, acknowledged_by FROM {ha_schema}.performance_alerts")
    assert row == ("firing", None)


@pytest.mark.bundle
def test_reconciler_sees_the_alerts_of_every_member(pg_cluster: Cluster, ha_schema: str, tmp_path: Path,
                                                    alertmanager_pair: list[Member],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A member that has just restarted holds no alerts until Prometheus sends them again:
    an alert the other member still has is not taken for resolved."""
    first, second = alertmanager_pair
    config = ha_config(pg_cluster, ha_schema, tmp_path, [first.url, second.url], resolve_after=60, request_timeout=2)
    client = StoreClient(config)
    client.migrate()
    service = AlertService(AlertStore(client), config)

    def status() -> list[tuple[Any, ...]]:
        return pg_cluster.execute(f"SELECT status, resolved_by FROM {ha_schema}.performance_alerts")

    try:
        second.post_alerts([am_alert("PgperfOnlyOnTheSecond")])
        assert service.reconcile(now=0) == 0
        assert status() == [("firing", None)]  # recorded though the first member answered without it
        assert service.reconcile(now=600) == 0
        assert status() == [("firing", None)]  # not resolved: the second member still has it

        second.stop()
        first.post_alerts([am_alert("PgperfOnlyOnTheSecond")])
        assert service.reconcile(now=1200) == 0  # the first member answers and has it
        assert "using the other Alertmanagers" in caplog.text
        first.post_alerts([am_alert("PgperfOnlyOnTheSecond", ended=True)])
        assert service.reconcile(now=1800) == 0  # absent from now on
        assert service.reconcile(now=1861) == 1
        assert status() == [("resolved", "alertmanager")]
    finally:
        service.stop()
        client.close()


# -- the client, no processes ------------------------------------------------------------

def test_the_cluster_needs_a_member() -> None:
    with pytest.raises(ValueError, match="at least one Alertmanager URL"):
        Alertmanagers([])


def test_one_member_keeps_its_own_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(AlertmanagerError) as info:
        Alertmanagers([url], timeout=1).alerts()
    assert str(info.value) == f"Alertmanager at {url} unreachable: ConnectionError"



@pytest.mark.bundle
def test_resolving_expires_the_silence_on_every_alertmanager(pg_cluster: Cluster, ha_schema: str, tmp_path: Path,
                                                             bundle_dir: Path) -> None:
    """Two Alertmanagers that are not one cluster: the silence made when acknowledging is on
    the first only. With the first down, the second answers without it, which does not
    show that the silence is gone (it would hold back the alert's next episode for the
    rest of silence_duration): resolving is refused, nothing recorded. With the first back,
    resolving expires the silence there."""
    members = []
    for i in (1, 2):
        (bundle_dir / f"apart-{i}").mkdir()
        members.append(Member(bundle_dir / f"apart-{i}"))  # no peers: two clusters of one
    first, second = members
    config = ha_config(pg_cluster, ha_schema, tmp_path, [first.url, second.url], request_timeout=1)
    client = StoreClient(config)
    client.migrate()
    service = AlertService(AlertStore(client), config)
    try:
        for member in members:
            member.start()
            member.post_alerts([am_alert("PgperfApart")])
        service.reconcile(now=0)
        ((alert_id,),) = pg_cluster.execute(f"SELECT alert_id FROM {ha_schema}.performance_alerts")
        silence_id = service.acknowledge(alert_id, "oncall").silence_id
        assert silence_id and first.silence(silence_id)["status"]["state"] == "active"  # type: ignore[index]
        assert second.silence(silence_id) is None

        for member in members:
            member.post_alerts([am_alert("PgperfApart", ended=True)])
        first.stop()
        with pytest.raises(AlertmanagerError) as info:
            service.resolve(alert_id, "oncall")
        assert f"silence {silence_id} may still be active: no Alertmanager that answered has it" in str(info.value)
        assert f"Alertmanager at {first.url} unreachable" in str(info.value)
        assert pg_cluster.execute(f"SELECT status FROM {ha_schema}.performance_alerts") == [("acknowledged",)]

        first.start()
        assert service.resolve(alert_id, "oncall").status == "resolved"
        assert first.silence(silence_id)["status"]["state"] == "expired"  # type: ignore[index]
    finally:
        service.stop()
        client.close()
        for member in members:
            member.stop()
