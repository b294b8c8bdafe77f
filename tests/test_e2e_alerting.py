"""End to end with real processes and the bundle's own files: PostgreSQL, pgperf,
Prometheus (the committed rules) and Alertmanager (the committed routes). A slow-query
workload fires PgperfSlowQueries; the alert is recorded in performance_alerts for the
target it is about, counted by that target's report, acknowledged (the silence exists in
Alertmanager) and resolved after the workload stops.

Timing changes only, for a test of seconds instead of minutes: sampling every second,
Prometheus scraping and evaluating every second, Alertmanager's fast notification timings,
reconciliation every half second.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from helpers import Exporter, make_config, wait_until
from pgperf.alerts.webhook import attribute
from pgperf.config import Config
from tools import bundle
from tools.cluster import Cluster, free_port

pytestmark = pytest.mark.bundle

TOKEN = "e2e-token-0123456789"


# -- attribution, no I/O -------------------------------------------------------------------

@pytest.mark.parametrize(("labels", "targets", "expected"), [
    # Several targets in one process: every series, so every alert, has the target label.
    ({"instance": "pgperf:9187", "target": "main"}, ("main", "replica"), "main"),
    ({"instance": "pgperf:9187", "target": "replica"}, ("main", "replica"), "replica"),
    # /probe?target=NAME with the README's relabelling: instance is the target's name.
    ({"instance": "replica"}, ("main", "replica"), "replica"),
    # One target: no target label, instance is the exporter's address, not the target.
    ({"instance": "127.0.0.1:9187"}, ("127.0.0.1:5432/postgres",), "127.0.0.1:5432/postgres"),
    # Several targets and no target label: about pgperf itself (PgperfExporterDown).
    ({"instance": "pgperf:9187", "job": "pgperf"}, ("main", "replica"), None),
    # The targets unknown: the labels as they are.
    ({"instance": "db1:9187"}, (), "db1:9187"),
])
def test_alerts_are_attributed_to_their_target(labels: dict[str, str], targets: tuple[str, ...],
                                               expected: str | None) -> None:
    assert attribute({"alertname": "PgperfSlowQueries", **labels}, targets) == expected


# -- real processes -------------------------------------------------------------------------

@contextmanager
def slow_workload(cluster: Cluster, seconds: float = 0.6) -> Iterator[threading.Event]:
    """A statement over development's 500 ms threshold, run back to back until the event
    is set (or the block ends)."""
    stop = threading.Event()

    def run() -> None:
        with cluster.connect() as conn:
            while not stop.is_set():
                conn.execute(f"SELECT pg_sleep({seconds})")

    worker = threading.Thread(target=run)
    worker.start()
    try:
        yield stop
    finally:
        stop.set()
        worker.join()


@contextmanager
def pgperf_with_alerting(config_for: Callable[[str], Config], port: int, alertmanager_factory: Any,
                         prometheus_factory: Any, tmp_path: Path) -> Iterator[tuple[Exporter, Any, Any]]:
    """pgperf on *port* with the configuration ``config_for(alertmanager_url)``, scraped by
    Prometheus with the bundle's rules, its alerts routed by the bundle's Alertmanager back
    to pgperf's webhook."""
    pgperf_url = f"http://127.0.0.1:{port}"
    secrets = tmp_path / "secrets"
    bundle.write_secrets(secrets, {"pgperf-api-token": TOKEN})
    # The other receivers notify a closed port: only pgperf's receiver matters here.
    sink = bundle.Sink(f"http://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
    am = alertmanager_factory(bundle.dump(bundle.alertmanager_config(
        pgperf_url, secrets_dir=secrets, fast=True, sink=sink)))
    exporter = Exporter(config_for(am.url), address=f"127.0.0.1:{port}")
    exporter.start()
    try:
        prom = prometheus_factory(bundle.dump(bundle.prometheus_config(
            [f"127.0.0.1:{port}"], am.url.removeprefix("http://"), interval="1s")))
        yield exporter, am, prom
    finally:
        exporter.stop()


def alert_rows(cluster: Cluster, schema: str, name: str = "PgperfSlowQueries") -> Callable[[], list[tuple[Any, ...]]]:
    """The stored alerts named *name*; none while the store's schema is still being created
    (pgperf's writer applies the migrations in the background, after it starts)."""
    def rows() -> list[tuple[Any, ...]]:
        try:
            return cluster.execute(
                f"SELECT alert_id, status, severity, message, threshold_value, current_value, labels->>'datname',"
                f" target FROM {schema}.performance_alerts WHERE metric = %s ORDER BY target", params=(name,))
        except psycopg.errors.UndefinedTable:
            return []
    return rows


def slow_query_alerts_in_report(exporter: Exporter, target: str | None, since: datetime) -> dict[str, Any]:
    """The alerts section of the report of *target* from *since* to now."""
    report = exporter.monitor.generate_performance_report(since, datetime.now(UTC) + timedelta(seconds=1), target)
    return dict(report.data["alerts"])


def test_slow_queries_alert_lifecycle(pg_cluster: Cluster, tmp_path: Path, alertmanager_factory: Any,
                                      prometheus_factory: Any) -> None:
    """One target, as in ``make demo``: its series have no target label, and the alert's
    instance is pgperf's address; the alert is still the target's, and its report counts it."""
    schema = "e2e"
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    port = free_port()

    def config_for(alertmanager_url: str) -> Config:
        return make_config(pg_cluster.dsn(), sampling_interval=1, api={"token": TOKEN},
                           store={"enabled": True, "schema": schema, "spool_dir": str(tmp_path / "spool")},
                           alerts={"alertmanager_url": alertmanager_url, "reconcile_interval": "500ms",
                                   "resolve_after": "2s"})

    begin = datetime.now(UTC) - timedelta(seconds=1)
    with pgperf_with_alerting(config_for, port, alertmanager_factory, prometheus_factory,
                              tmp_path) as (exporter, am, prom):
        started = time.monotonic()
        with slow_workload(pg_cluster) as stop:
            rows = wait_until(alert_rows(pg_cluster, schema), timeout=60, interval=0.2,
                              message="PgperfSlowQueries recorded by the webhook")
            fired_after = time.monotonic() - started
            alert_id, status, severity, message, threshold, value, datname, target = rows[0]
            assert (status, severity, datname) == ("firing", "warning", "postgres")
            assert message == "Slow statements in database postgres"
            assert threshold == 0.5 and value is not None and value >= 0.5
            # The target pgperf names it, not the exporter's address (the instance label).
            assert target == exporter.config.resolved_targets()[0].name
            assert target == pg_cluster.dsn().removeprefix("postgresql://postgres@")
            alerts = slow_query_alerts_in_report(exporter, None, begin)
            assert [(m["metric"], m["count"]) for m in alerts["by_metric"] if m["metric"] == "PgperfSlowQueries"] == [
                ("PgperfSlowQueries", 1)], alerts

            ack = requests.post(f"http://127.0.0.1:{port}/api/v1/alerts/{alert_id}/ack", json={"by": "oncall"},
                                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
            assert ack.status_code == 200, ack.text
            silence = requests.get(f"{am.url}/api/v2/silence/{ack.json()['silence_id']}", timeout=5).json()
            assert silence["status"]["state"] == "active" and silence["createdBy"] == "oncall"
            silenced = requests.get(f"{am.url}/api/v2/alerts", params={"filter": 'alertname="PgperfSlowQueries"'},
                                    timeout=5).json()
            assert silenced and all(a["status"]["state"] == "suppressed" for a in silenced)
            stop.set()
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


def test_alerts_of_two_targets_land_on_their_own(pg_cluster: Cluster, make_cluster: Callable[..., Cluster],
                                                 tmp_path: Path, alertmanager_factory: Any,
                                                 prometheus_factory: Any) -> None:
    """Two servers watched by one pgperf, each with its own slow statement: each target gets
    its own PgperfSlowQueries, and each target's report counts its own alert only."""
    schema = "e2e_two"
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    other = make_cluster()
    port = free_port()

    def config_for(alertmanager_url: str) -> Config:
        return make_config(None, sampling_interval=1, api={"token": TOKEN},
                           targets=[{"name": "main", "dsn": pg_cluster.dsn()}, {"name": "other", "dsn": other.dsn()}],
                           store={"enabled": True, "dsn": pg_cluster.dsn(), "schema": schema,
                                  "spool_dir": str(tmp_path / "spool")},
                           alerts={"alertmanager_url": alertmanager_url})

    rows = alert_rows(pg_cluster, schema)
    begin = datetime.now(UTC) - timedelta(seconds=1)
    with (pgperf_with_alerting(config_for, port, alertmanager_factory, prometheus_factory,
                               tmp_path) as (exporter, _, _),
          slow_workload(pg_cluster), slow_workload(other, 0.7)):
        recorded = wait_until(lambda: (r := rows()) and {row[7] for row in r} == {"main", "other"} and r,
                              timeout=90, interval=0.2, message="PgperfSlowQueries of both targets recorded")
        assert {row[6] for row in recorded} == {"postgres"}
        for target in ("main", "other"):
            before = len([r for r in rows() if r[7] == target])
            alerts = slow_query_alerts_in_report(exporter, target, begin)
            after = len([r for r in rows() if r[7] == target])
            counted = {m["metric"]: m["count"] for m in alerts["by_metric"]}
            # Its own alerts (a new episode may be recorded meanwhile), not the other's.
            assert before <= counted.get("PgperfSlowQueries", 0) <= after, (target, alerts, rows())


def _cli(*args: str, config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgperf", "alerts", *args, "--config", str(config)],
                          capture_output=True, text=True, env=env, timeout=60)


def test_resolving_by_hand_agrees_with_prometheus(pg_cluster: Cluster, tmp_path: Path, alertmanager_factory: Any,
                                                  prometheus_factory: Any) -> None:
    """What resolving means for an alert Prometheus still fires, from the command line with
    serve's configuration (the same file and PGPERF_* variables): refused, saying why and
    what to do, so that pgperf never says "resolved" while Prometheus says "firing".
    Acknowledging (--by: the operating-system user) silences it; once Prometheus stops
    firing it, resolving expires the silence, and the alert's next episode notifies again
    and is recorded firing."""
    schema = "e2e_resolve"
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    port = free_port()
    config_file = tmp_path / "pgperf.yaml"

    def config_for(alertmanager_url: str) -> Config:
        # resolve_after: long, so that the reconciler does not resolve the silenced alert
        # before the operator does.
        config_file.write_text(f"store:\n  schema: {schema}\nalerts:\n  alertmanager_urls: [{alertmanager_url}]\n")
        return make_config(pg_cluster.dsn(), sampling_interval=1, api={"token": TOKEN},
                           store={"enabled": True, "schema": schema, "spool_dir": str(tmp_path / "spool")},
                           alerts={"alertmanager_url": alertmanager_url, "reconcile_interval": "500ms",
                                   "resolve_after": "10m"})

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPERF_", "PG"))}
    env.update(PGPERF_DSN=pg_cluster.dsn(), PGPERF_PROFILE="development", LOGNAME="dba-on-call", USER="dba-on-call")
    rows = alert_rows(pg_cluster, schema)

    def state(alert_id: str) -> tuple[Any, ...]:
        return tuple(pg_cluster.execute(f"SELECT status, acknowledged_by, resolved_by, silence_id FROM "
                                        f"{schema}.performance_alerts WHERE alert_id = %s", params=(alert_id,))[0])

    with pgperf_with_alerting(config_for, port, alertmanager_factory, prometheus_factory,
                              tmp_path) as (_, am, prom):
        def in_prometheus() -> list[dict[str, Any]]:
            alerts = requests.get(prom.url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == "PgperfSlowQueries" and a["state"] == "firing"]

        def in_alertmanager() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = requests.get(f"{am.url}/api/v2/alerts", timeout=5,
                                                       params={"filter": 'alertname="PgperfSlowQueries"'}).json()
            return found

        with slow_workload(pg_cluster) as stop:
            (alert_id, *_), = wait_until(rows, timeout=60, interval=0.2, message="PgperfSlowQueries recorded")
            refused = _cli("resolve", alert_id, config=config_file, env=env)
            assert refused.returncode == 1, (refused.stdout, refused.stderr)
            assert f"alert {alert_id} (PgperfSlowQueries) is still firing: Prometheus still finds its condition " \
                   "true" in refused.stderr and "acknowledge it to silence its notifications" in refused.stderr
            assert state(alert_id)[0] == "firing" and in_prometheus()

            acked = _cli("ack", alert_id, config=config_file, env=env)
            assert acked.returncode == 0, acked.stderr
            status, by, _, silence_id = state(alert_id)
            assert (status, by) == ("acknowledged", "dba-on-call") and silence_id
            assert f"silenced in Alertmanager by silence {silence_id} for 1d" in acked.stdout
            silence = requests.get(f"{am.url}/api/v2/silence/{silence_id}", timeout=5).json()
            assert silence["status"]["state"] == "active" and silence["createdBy"] == "dba-on-call"
            again = _cli("resolve", alert_id, config=config_file, env=env)
            assert again.returncode == 1 and "silenced by its acknowledgement" in again.stderr, again.stderr
            stop.set()

        wait_until(lambda: not in_prometheus() and not in_alertmanager(), timeout=60, interval=0.2,
                   message="Prometheus to stop firing PgperfSlowQueries and Alertmanager to drop it")
        resolved = _cli("resolve", alert_id, config=config_file, env=env)
        assert resolved.returncode == 0, resolved.stderr
        assert resolved.stdout.strip() == (f"alert {alert_id} (PgperfSlowQueries) is resolved by dba-on-call: "
                                           f"silence {silence_id} expired")
        assert state(alert_id) == ("resolved", "dba-on-call", "dba-on-call", silence_id)
        silence = requests.get(f"{am.url}/api/v2/silence/{silence_id}", timeout=5).json()
        assert silence["status"]["state"] == "expired"

        # The next episode: the same labels, no longer silenced.
        with slow_workload(pg_cluster):
            new = wait_until(lambda: [r for r in rows() if r[0] != alert_id and r[1] == "firing"], timeout=60,
                             interval=0.2, message="the next episode of PgperfSlowQueries recorded")
            current = in_alertmanager()
            assert current and all(a["status"]["state"] == "active" for a in current), current
        assert state(alert_id)[0] == "resolved" and len(new) == 1
