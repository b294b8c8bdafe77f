"""The fleet topology of prometheus/remote-write/: per-site Prometheus agents remote-write to
a central Prometheus that evaluates the bundle's rules, with real processes.

A real pgperf samples the test suite's PostgreSQL; two site agents (site.yml, each with its
own ``site`` label) scrape it and forward the samples; the central server (central.yml, with
the remote-write receiver) answers queries for each site's series and evaluates every rule
group of prometheus/rules/ over them. Only addresses, paths and intervals differ from the
committed files.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from fix_bundle import PROMETHEUS, Process
from helpers import Exporter, make_config, running_exporter, wait_until
from tools.cluster import Cluster, free_port

pytestmark = [pytest.mark.bundle, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = ROOT / "prometheus" / "remote-write"
RULE_FILES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
SITES = ("site-a", "site-b")


def committed(name: str) -> dict[str, Any]:
    data = yaml.safe_load((TOPOLOGY / name).read_text())
    assert isinstance(data, dict)
    return data


def central_config(port: int) -> dict[str, Any]:
    """central.yml with absolute rule paths, scraping itself on *port*, every second."""
    config = copy.deepcopy(committed("central.yml"))
    config["rule_files"] = [str((TOPOLOGY / pattern).resolve()) for pattern in config["rule_files"]]
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
    config.pop("alerting")  # no Alertmanager in this test: alerts are evaluated, not sent
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    return config


def site_config(site: str, exporter: str, central: str) -> dict[str, Any]:
    """site.yml for *site*, scraping *exporter* and writing to *central*, every second."""
    config = copy.deepcopy(committed("site.yml"))
    config["global"]["external_labels"]["site"] = site
    config["global"]["scrape_interval"] = "1s"
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [exporter]}]
    (remote,) = config["remote_write"]
    remote["url"] = central + "/api/v1/write"
    return config


def start(name: str, workdir: Path, config: dict[str, Any], port: int, *flags: str) -> Process:
    workdir.mkdir()
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    args = [PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}", f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn", *flags]
    return Process(args, f"http://127.0.0.1:{port}", "/-/ready", workdir)


def query(prometheus: Process, expr: str) -> list[dict[str, Any]]:
    response = requests.get(prometheus.url + "/api/v1/query", params={"query": expr}, timeout=5)
    response.raise_for_status()
    return response.json()["data"]["result"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def exporter(pg_cluster: Cluster) -> Iterator[Exporter]:
    with running_exporter(make_config(pg_cluster.dsn(), sampling_interval=1)) as running:
        wait_until(lambda: running.value("pg_up") == 1, timeout=30, message="pgperf sampling PostgreSQL")
        yield running


@pytest.fixture(scope="module")
def fleet(exporter: Exporter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """The central Prometheus, fed by one agent per site; yields the central server (shared
    by the tests of this module: the rule group with a one-minute interval takes that long
    to be evaluated once)."""
    bundle_dir = tmp_path_factory.mktemp("fleet")
    started: list[Process] = []
    try:
        port = free_port()
        central = start("central", bundle_dir / "central", central_config(port), port,
                        f"--storage.tsdb.path={bundle_dir / 'central' / 'data'}", "--web.enable-remote-write-receiver")
        started.append(central)
        for site in SITES:
            port = free_port()
            started.append(start(site, bundle_dir / site, site_config(site, exporter.url.removeprefix("http://"),
                                                                      central.url), port,
                                 "--enable-feature=agent", f"--storage.agent.path={bundle_dir / site / 'wal'}"))
        yield central
    finally:
        for process in reversed(started):
            process.stop()


def test_committed_topology_files() -> None:
    """What the test relies on is what the files say: the agent has a site label and no
    rules, the central server loads the bundle's rules and sends to the Alertmanager pair."""
    site, central = committed("site.yml"), committed("central.yml")
    assert site["global"]["external_labels"]["site"]
    assert not {"rule_files", "alerting"} & set(site), "an agent evaluates no rules and sends no alerts"
    assert [job["job_name"] for job in site["scrape_configs"]] == ["pgperf"]
    assert site["remote_write"][0]["url"].endswith("/api/v1/write")
    assert "site" not in central["global"].get("external_labels", {})
    resolved = sorted(p for pattern in central["rule_files"] for p in TOPOLOGY.glob(pattern))
    assert [p.resolve() for p in resolved] == [p.resolve() for p in RULE_FILES]
    targets = [t for am in central["alerting"]["alertmanagers"] for c in am["static_configs"] for t in c["targets"]]
    assert targets == ["alertmanager-1:9093", "alertmanager-2:9093"]


def test_central_prometheus_sees_every_site(fleet: Process, exporter: Exporter) -> None:
    central = fleet
    instance = exporter.url.removeprefix("http://")
    for site in SITES:
        result = wait_until(partial(query, central, f'pg_up{{site="{site}"}}'), timeout=60, interval=0.5,
                            message=f"pg_up of {site} on the central Prometheus")
        assert [(r["metric"]["job"], r["metric"]["instance"], r["value"][1]) for r in result] == \
               [("pgperf", instance, "1")]
        # Remote write sends series in shards of their own: up may come a moment after pg_up.
        (up,) = wait_until(partial(query, central, f'up{{job="pgperf",site="{site}"}}'), timeout=30, interval=0.5,
                           message=f"up of {site} on the central Prometheus")
        assert up["value"][1] == "1"
    # The central server scrapes nothing of the sites itself: every pgperf series came by
    # remote write, with its site.
    assert not query(central, 'pg_up{site=""}')
    assert {r["metric"]["site"] for r in query(central, "pgperf_threshold_slow_query_seconds")} == set(SITES)


def test_bundle_rules_run_on_the_central_prometheus(fleet: Process) -> None:
    central = fleet
    expected = {group["name"] for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]}

    def evaluated() -> list[dict[str, Any]]:
        groups = requests.get(central.url + "/api/v1/rules", timeout=5).json()["data"]["groups"]
        every_rule = [r for g in groups for r in g["rules"]]
        done = every_rule and all(r.get("lastEvaluation", "").startswith("20") for r in every_rule)
        return groups if done and query(central, 'pg_up{site="site-b"}') else []

    groups = wait_until(evaluated, timeout=120, interval=1, message="every rule evaluated on the central server")
    assert {g["name"] for g in groups} == expected
    failing = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r.get("health") != "ok"]
    assert not failing
    # A recording rule over the remote-written series: one result per site, each keeping
    # its site label (the rules aggregate with without (...), so labels they do not know survive).
    # A rate needs two samples of a site; the sites start a few seconds apart, so the
    # second site's result may follow the first by one evaluation: wait for every site.
    def every_site() -> list[dict[str, Any]]:
        result = query(central, "instance:pg_stat_database_xact:rate5m")
        return result if len({r["metric"].get("site", "") for r in result}) >= len(SITES) else []

    recorded = wait_until(every_site, timeout=60, interval=1,
                          message="a recording rule's output for every site on the central server")
    assert sorted(r["metric"].get("site", "") for r in recorded) == sorted(SITES)
