"""Many targets in one process: per-target profiles, target files read again while
running, /sd for Prometheus's HTTP service discovery, sampling spread over the interval."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import yaml

from fix_bundle import Process, start_prometheus
from helpers import Exporter, make_config, wait_until
from pgperf.app import App
from pgperf.config import ConfigError, TargetFiles, load_config, load_profile
from pgperf.http.webconfig import load_web_config
from pgperf.sampling.fleet import spread
from tools.cluster import Cluster, destroy_all, fleet, free_port

ROOT = Path(__file__).resolve().parent.parent
DEV = load_profile("development")["thresholds"]
PROD = load_profile("production")["thresholds"]


def test_targets_spread_over_the_interval() -> None:
    # Whatever the number of targets started, no two crowd together and no gap is wide:
    # every gap between neighbours lies within a small factor of 1/n of the interval.
    for n in range(2, 301):
        places = sorted(spread(k) for k in range(n))
        gaps = [b - a for a, b in zip(places, [*places[1:], places[0] + 1], strict=True)]
        assert max(gaps) < 2 / n and min(gaps) > 0.4 / n, n


def test_a_target_profile_gives_its_thresholds() -> None:
    config = load_config(env={}, flags={
        "profile": "production", "store": {"enabled": False}, "thresholds": {"slow_query_time_ms": 3000},
        "targets": [
            {"name": "prod", "dsn": "postgresql://x@h1/postgres"},
            {"name": "dev", "dsn": "postgresql://x@h2/postgres", "profile": "development"},
            {"name": "dev-tuned", "dsn": "postgresql://x@h3/postgres", "profile": "development",
             "thresholds": {"cache_hit_ratio_min": 50}},
            {"name": "prod-tuned", "dsn": "postgresql://x@h4/postgres", "thresholds": {"error_rate_max": 3}},
        ]})
    of = config.thresholds_of
    assert of("prod").slow_query_time_ms == 3000  # the process's, with its override
    assert of("dev").slow_query_time_ms == DEV["slow_query_time_ms"] != PROD["slow_query_time_ms"]
    assert of("dev-tuned").cache_hit_ratio_min == 50
    assert of("dev-tuned").slow_query_time_ms == DEV["slow_query_time_ms"]
    assert of("prod-tuned").error_rate_max == 3 and of("prod-tuned").slow_query_time_ms == 3000
    assert config.several_targets


def test_a_bad_target_threshold_is_refused_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "pgperf.yaml"
    path.write_text("targets:\n  - name: a\n    dsn: postgresql://x@h/postgres\n    profile: development\n"
                    "    thresholds:\n      slow_query_time_ms: fast\n  - name: b\n    dsn: postgresql://x@h/b\n"
                    "    profile: staging\n")
    with pytest.raises(ConfigError) as raised:
        load_config(config_file=str(path), env={}, flags={"store": {"enabled": False}})
    text = "\n".join(raised.value.problems)
    assert f"{path}:6: targets.0.thresholds.slow_query_time_ms: Input should be a valid number" in text
    assert f"{path}:9: targets.1.profile: Input should be 'development', 'production' or 'analytics'" in text


def write(path: Path, *targets: tuple[str, str], extra: str = "") -> None:
    """A target file: (name, dsn) pairs; *extra* is appended to the last target."""
    lines = ["targets:"]
    for name, dsn in targets:
        lines += [f"  - name: {name}", f"    dsn: {dsn}"]
    path.write_text("\n".join(lines) + "\n" + extra)
    # Modification times can be equal within a filesystem's granularity: move it on.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_target_files_refuse_a_bad_file_and_keep_its_targets(tmp_path: Path) -> None:
    tdir = tmp_path / "targets.d"
    tdir.mkdir()
    write(tdir / "a.yml", ("a1", "postgresql://x@h/a1"), ("a2", "postgresql://x@h/a2"))
    write(tdir / "b.yaml", ("b1", "postgresql://x@h/b1"))
    (tdir / "notes.txt").write_text("not a target file")
    config = make_config(None, targets=[{"name": "static", "dsn": "postgresql://x@h/s"}], targets_dir=str(tdir))
    files = TargetFiles()
    read = files.read(config)
    assert [t.name for t in read.targets] == ["a1", "a2", "b1"] and read.problems == ()
    assert not files.changed(config)

    write(tdir / "b.yaml", ("b1", "postgresql://x@h/b1"), ("b2", "not a dsn = = ="))
    assert files.changed(config)
    read = files.read(config)
    assert [t.name for t in read.targets] == ["a1", "a2", "b1"]  # b.yaml as it was
    assert len(read.problems) == 1 and read.problems[0].startswith(f"{tdir / 'b.yaml'}:5: targets.1.dsn: not a valid")
    assert "= = =" not in read.problems[0]  # a DSN is never repeated (it can hold a password)

    write(tdir / "b.yaml", ("b1", "postgresql://x@h/b1"), ("static", "postgresql://x@h/other"))
    write(tdir / "c.yml", ("c1", "postgresql://x@h/c1"), extra="    profile: development\n    colour: red\n")
    read = files.read(config)
    assert [t.name for t in read.targets] == ["a1", "a2", "b1"]
    problems = "\n".join(read.problems)
    assert "b.yaml: targets: target name 'static' is already used in the configuration file" in problems
    assert f"{tdir / 'c.yml'}:5: targets.0.colour: unknown key" in problems

    (tdir / "a.yml").unlink()
    write(tdir / "c.yml", ("c1", "postgresql://x@h/c1"), extra="    profile: development\n")
    read = files.read(config)
    assert [t.name for t in read.targets] == ["b1", "c1"]  # b.yaml still as it was
    assert read.targets[1].thresholds is not None
    assert read.targets[1].thresholds.slow_query_time_ms == DEV["slow_query_time_ms"]


def test_a_bad_target_file_at_start_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "targets.yml").write_text("targets:\n  - name: a\n")
    config = make_config(None, targets_file=str(tmp_path / "targets.yml"))
    with pytest.raises(ConfigError) as raised:
        App(config)
    assert raised.value.problems == [f"{tmp_path / 'targets.yml'}:2: targets.0.dsn: Field required"]
    with pytest.raises(ConfigError) as raised:
        App(make_config(None, targets_dir=str(tmp_path), store={"enabled": True}))
    assert raised.value.problems == ["targets_dir: every target comes from target files, so the sample store has "
                                     "no default database: set store.dsn (--store-dsn) or disable the store "
                                     "(--no-store)"]
    empty = tmp_path / "empty.d"
    empty.mkdir()
    with pytest.raises(ConfigError) as raised:
        App(make_config(None, targets_dir=str(empty)))
    assert raised.value.problems == [f"targets_dir {empty}: no target: add a target file with 'targets:' "
                                     "(or set targets), then start pgperf"]


# -- a running process ---------------------------------------------------------------------


@pytest.fixture
def target_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pgperf-targets-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def samples(exporter: Exporter, path: str = "/metrics") -> dict[str, float]:
    """Sample lines of one scrape: ``name{labels}`` -> value."""
    out = {}
    for line in exporter.get(path).text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_targets_come_and_go_with_their_files(pg_cluster: Cluster, target_dir: Path) -> None:
    dsn = pg_cluster.dsn()
    write(target_dir / "main.yml", ("main", dsn))
    config = make_config(None, targets_dir=str(target_dir), targets_check_interval=0.2, sampling_interval=0.5)
    exporter = Exporter(config).start()
    try:
        wait_until(lambda: samples(exporter).get('pg_up{target="main"}') == 1, timeout=30, message="main sampled")
        write(target_dir / "more.yaml", ("dev", dsn), extra="    profile: development\n")
        wait_until(lambda: samples(exporter).get('pg_up{target="dev"}') == 1, timeout=30, message="dev added")
        scrape = samples(exporter)
        assert scrape['pgperf_threshold_slow_query_seconds{target="dev"}'] == DEV["slow_query_time_ms"] / 1000
        assert scrape['pgperf_sampling_lateness_seconds{target="main"}'] >= 0  # sampled by its loop, on a schedule
        assert scrape['pgperf_threshold_slow_query_seconds{target="main"}'] == 1.0 * make_config(
            None, targets_dir=str(target_dir)).thresholds.slow_query_time_ms / 1000
        probe = samples(exporter, "/probe?target=dev")
        assert probe["pg_up"] == 1 and probe["pgperf_threshold_slow_query_seconds"] == DEV["slow_query_time_ms"] / 1000
        assert 'pgperf_profile_info{profile="development"}' in probe
        assert exporter.get("/sd").json() == [
            {"targets": [exporter.url.removeprefix("http://")], "labels": {"__param_target": n, "target": n}}
            for n in ("main", "dev")]

        # A broken file is refused: its target keeps being sampled.
        write(target_dir / "more.yaml", ("dev", dsn), extra="    profile: staging\n")
        seen = exporter.app.sampler.targets["dev"].counters.samples
        wait_until(lambda: exporter.app.target_file_problems, timeout=30, message="bad file noticed")
        assert "more.yaml:4: targets.0.profile" in exporter.app.target_file_problems[0]
        wait_until(lambda: exporter.app.sampler.targets["dev"].counters.samples > seen + 2, timeout=30,
                   message="dev still sampled")

        # Removed: its series leave /metrics and /sd, /probe answers 404; main goes on.
        (target_dir / "more.yaml").unlink()
        wait_until(lambda: 'pg_up{target="dev"}' not in samples(exporter), timeout=30, message="dev removed")
        assert exporter.get("/probe?target=dev").status_code == 404
        assert [g["labels"]["target"] for g in exporter.get("/sd").json()] == ["main"]
        assert samples(exporter)['pg_up{target="main"}'] == 1
        wait_until(lambda: exporter.app.sampler.threads_alive() == {"main": True}, timeout=30,
                   message="dev's thread ended")
    finally:
        exporter.stop()


def test_sd_is_behind_basic_auth(pg_cluster: Cluster, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"scrape-secret", bcrypt.gensalt(rounds=4)).decode()
    web_file = tmp_path / "web.yml"
    web_file.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    config = make_config(None, targets=[{"name": "a", "dsn": pg_cluster.dsn()},
                                        {"name": "b", "dsn": pg_cluster.dsn(password="s3cret-in-dsn")}])
    exporter = Exporter(config, web_config=load_web_config(str(web_file))).start()
    try:
        assert exporter.get("/sd").status_code == 401
        answer = requests.get(exporter.url + "/sd", auth=("prometheus", "scrape-secret"), timeout=10)
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
        assert [g["labels"] for g in answer.json()] == [{"__param_target": "a", "target": "a"},
                                                        {"__param_target": "b", "target": "b"}]
        assert "s3cret" not in answer.text and "postgresql" not in answer.text
    finally:
        exporter.stop()


def test_a_reload_adds_and_removes_configured_targets(pg_cluster: Cluster, tmp_path: Path) -> None:
    config = make_config(None, targets=[{"name": "a", "dsn": pg_cluster.dsn()}, {"name": "b", "dsn": pg_cluster.dsn()}])
    exporter = Exporter(config).start()
    try:
        wait_until(lambda: samples(exporter).get('pg_up{target="b"}') == 1, timeout=30, message="b sampled")
        changed = exporter.monitor.reload(make_config(None, targets=[
            {"name": "a", "dsn": pg_cluster.dsn()}, {"name": "c", "dsn": pg_cluster.dsn(), "profile": "analytics"}]))
        assert changed == ["targets"]
        wait_until(lambda: samples(exporter).get('pg_up{target="c"}') == 1, timeout=30, message="c sampled")
        assert 'pg_up{target="b"}' not in samples(exporter)
        assert list(exporter.app.sampler.targets) == ["a", "c"]
    finally:
        exporter.stop()


# -- Prometheus discovers the targets through /sd ---------------------------------------------

FLEET = 20
STOPPED = (3, 11, 17)  # indexes of the clusters stopped halfway


def prometheus_query(prometheus: Process, expr: str) -> list[dict[str, Any]]:
    answer = requests.get(prometheus.url + "/api/v1/query", params={"query": expr}, timeout=10)
    answer.raise_for_status()
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def documented_sd_job() -> dict[str, Any]:
    """The /sd scrape job prometheus/prometheus.yml shows (commented out there)."""
    lines = (ROOT / "prometheus" / "prometheus.yml").read_text().splitlines()
    start = lines.index("  # - job_name: pgperf")
    block = []
    for line in lines[start:]:
        if not line.startswith("  # "):
            break
        block.append(line.removeprefix("  # "))
    jobs = yaml.safe_load("\n".join(block))
    assert isinstance(jobs, list) and jobs[0]["metrics_path"] == "/probe"
    return dict(jobs[0])


def test_prometheus_scrapes_every_target_through_sd_and_probe(tmp_path: Path) -> None:
    clusters = fleet(FLEET, settings={"shared_buffers": "'1MB'", "max_connections": 10})
    exporter = prometheus = None
    try:
        names = [f"db{i:02d}" for i in range(FLEET)]
        hashed = bcrypt.hashpw(b"scrape-secret", bcrypt.gensalt(rounds=4)).decode()
        (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
        config = make_config(None, sampling_interval=2, connection={"pool_size": 1},
                             targets=[{"name": n, "dsn": c.dsn()} for n, c in zip(names, clusters, strict=True)])
        seen: list[tuple[str, float, bool]] = []  # (target, taken_at, up) of every sample
        exporter = Exporter(config, web_config=load_web_config(str(tmp_path / "web.yml")))
        exporter.app.events.on("sample", lambda snap: seen.append((snap.target, snap.taken_at, snap.up)))
        exporter.start()
        address = exporter.url.removeprefix("http://")
        work = tmp_path / "prometheus"
        work.mkdir()
        auth = {"username": "prometheus", "password": "scrape-secret"}
        job = documented_sd_job()
        job["http_sd_configs"][0].update(url=job["http_sd_configs"][0]["url"].replace("pgperf:9187", address),
                                         refresh_interval="2s", basic_auth=auth)
        (work / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "2s", "scrape_timeout": "2s"},
            "scrape_configs": [{**job, "basic_auth": auth}]}))
        prometheus = start_prometheus(work / "prometheus.yml", work)

        def up_targets(value: int) -> set[str]:
            return {r["metric"]["target"] for r in prometheus_query(prometheus, f'pg_up{{job="pgperf"}} == {value}')}

        wait_until(lambda: up_targets(1) == set(names), timeout=60, message="every target scraped with pg_up 1")
        series = prometheus_query(prometheus, 'pg_up{job="pgperf"}')
        assert {r["metric"]["instance"] for r in series} == {address}  # one pgperf, each target on its own
        assert len(prometheus_query(prometheus, 'pgperf_threshold_slow_query_seconds{job="pgperf"}')) == FLEET

        overruns = {n: exporter.sampler.targets[n].counters.overruns for n in names}
        stopped = {names[i] for i in STOPPED}
        for i in STOPPED:
            clusters[i].stop("immediate")
        stopped_at = time.time()
        wait_until(lambda: up_targets(0) == stopped, timeout=30, message="the stopped targets at pg_up 0")
        others = set(names) - stopped
        assert up_targets(1) == others
        # Every sample taken after the stop finds its cluster as it is: the stopped ones'
        # first sample after the stop is already down, no other target missed a sample.
        wait_until(lambda: all(sum(1 for t, at, _ in seen if t == n and at > stopped_at) >= 2 for n in names),
                   timeout=30, message="two samples of every target after the stop")
        after = [(t, up) for t, at, up in seen if at > stopped_at]
        assert all(up == (t not in stopped) for t, up in after)
        assert {n: exporter.sampler.targets[n].counters.overruns for n in names} == overruns
    finally:
        if prometheus is not None:
            prometheus.stop()
        if exporter is not None:
            exporter.stop()
        destroy_all(clusters)


def test_a_reload_reads_the_target_file_again(pg_cluster: Cluster, tmp_path: Path) -> None:
    """`pgperf serve` reads its targets_file again on SIGHUP and on POST /-/reload, without
    waiting for the next check for changes (here an hour away)."""
    targets = tmp_path / "targets.yaml"
    write(targets, ("one", pg_cluster.dsn()))
    config = tmp_path / "pgperf.yaml"
    config.write_text(f"targets_file: {targets}\ntargets_check_interval: 1h\nsampling_interval: 1\n"
                      "api:\n  token: reload-token-0123456789\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPERF_", "PG"))}
    proc = subprocess.Popen([sys.executable, "-m", "pgperf", "serve", "--config", str(config), "--no-store",
                             "--web.listen-address", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"

    def discovered() -> list[str]:
        try:
            return [group["labels"]["target"] for group in requests.get(url + "/sd", timeout=5).json()]
        except requests.RequestException:
            return []

    try:
        wait_until(lambda: discovered() == ["one"] or proc.poll() is not None, timeout=30, message="pgperf serving")
        assert proc.poll() is None
        write(targets, ("one", pg_cluster.dsn()), ("two", pg_cluster.dsn()))
        time.sleep(1.5)
        assert discovered() == ["one"]  # no check for changes before the hour
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: discovered() == ["one", "two"], timeout=30, message="two added on SIGHUP")
        wait_until(lambda: requests.get(url + "/probe?target=two", timeout=5).text.count("\npg_up 1") == 1,
                   timeout=30, message="two sampled")
        write(targets, ("two", pg_cluster.dsn()))
        response = requests.post(url + "/-/reload", timeout=10,
                                 headers={"Authorization": "Bearer reload-token-0123456789"})
        assert response.status_code == 200, response.text
        assert discovered() == ["two"]
        assert requests.get(url + "/probe?target=one", timeout=5).status_code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
