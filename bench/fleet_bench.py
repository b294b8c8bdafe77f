"""One pgperf for many clusters: CPU, memory and sampling lateness (the fleet section).

Throwaway clusters on this machine, small (``shared_buffers`` 1MB, ``max_connections``
10; copies of one initdb), pgbench on each at a low rate, and one ``pgperf serve`` (no
store) with every cluster as a target, scraped on ``/metrics`` every 15 s as Prometheus
would. For each (targets, sampling interval) of the run:

* CPU share of one core: user + system time of the pgperf process over the window;
* resident memory at the end of the window;
* sample lateness: ``pgperf_sampling_lateness_seconds`` of every sample the scrapes saw
  (each target's samples told apart by ``pgperf_last_sample_timestamp_seconds``), p50,
  p99 and max, and the overruns (``pgperf_sampling_overruns_total``) in the window.

In the 20-target run at 5 s, three clusters are then stopped: their next samples must be
down, and the other targets' samples after the stop are measured apart (lateness,
overruns, pg_up).

    python bench/fleet_bench.py [--quick] [--output results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))  # the repository's tools package

from exporters_bench import fetch  # noqa: E402

from tools.cluster import Cluster, destroy_all, fleet, free_port  # noqa: E402

CLUSTER_SETTINGS = {"shared_buffers": "'1MB'", "max_connections": 10}
SCRAPE_EVERY = 15.0
STOPPED = 3  # clusters stopped in the first run


@dataclass(frozen=True)
class Run:
    targets: int
    interval: float  # seconds
    warm_up: float  # seconds before the window (every target sampled at least once)
    window: float  # seconds measured


@dataclass(frozen=True)
class Sizes:
    runs: tuple[Run, ...]
    stop_window: float  # seconds measured after the clusters are stopped
    pgbench_rate: int
    scrape_every: float

    @classmethod
    def full(cls) -> Sizes:
        return cls(runs=(Run(20, 5, 15, 120), Run(20, 60, 65, 180), Run(100, 5, 20, 120), Run(100, 60, 65, 180)),
                   stop_window=30, pgbench_rate=2, scrape_every=SCRAPE_EVERY)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(runs=(Run(4, 2, 4, 8),), stop_window=6, pgbench_rate=2, scrape_every=2)


# -- what the scrapes saw -------------------------------------------------------------------

_LINE = re.compile(r'^(pg_up|pgperf_sampling_lateness_seconds|pgperf_last_sample_timestamp_seconds|'
                   r'pgperf_sampling_overruns_total)\{target="([^"]+)"\} (\S+)$', re.M)


def parse(body: bytes) -> dict[str, dict[str, float]]:
    """target -> {metric: value} of the families the bench reads."""
    out: dict[str, dict[str, float]] = {}
    for name, target, value in _LINE.findall(body.decode()):
        out.setdefault(target, {})[name] = float(value)
    return out


@dataclass(frozen=True)
class Seen:
    """One sample seen by a scrape."""

    target: str
    taken_at: float
    lateness: float | None
    up: bool


class Scraper:
    """Scrapes /metrics every *every* seconds in a thread, keeping each sample seen once."""

    def __init__(self, port: int, every: float) -> None:
        self.port = port
        self.every = every
        self.samples: dict[tuple[str, float], Seen] = {}
        self.overruns: dict[str, float] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fleet-scraper", daemon=True)
        self._thread.start()

    def scrape(self) -> None:
        try:
            status, body, _ = fetch(self.port, gzipped=True, timeout=30)
        except OSError:
            self.errors += 1
            return
        if status != 200:
            self.errors += 1
            return
        for target, values in parse(body).items():
            at = values.get("pgperf_last_sample_timestamp_seconds")
            if at is not None:
                self.samples.setdefault((target, at), Seen(target, at, values.get("pgperf_sampling_lateness_seconds"),
                                                           values.get("pg_up") == 1))
            if "pgperf_sampling_overruns_total" in values:
                self.overruns[target] = values["pgperf_sampling_overruns_total"]

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.scrape()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def since(self, t: float, targets: set[str] | None = None) -> list[Seen]:
        return [s for s in list(self.samples.values())
                if s.taken_at >= t and (targets is None or s.target in targets)]


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


def lateness(seen: Sequence[Seen]) -> dict[str, Any]:
    values = [s.lateness for s in seen if s.lateness is not None]
    return {"samples": len(values), "p50_ms": quantile(values, 0.5) * 1000, "p99_ms": quantile(values, 0.99) * 1000,
            "max_ms": max(values, default=float("nan")) * 1000}


# -- pgperf with many targets -----------------------------------------------------------------


@contextlib.contextmanager
def pgperf(clusters: Sequence[Cluster], interval: float, work: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``pgperf serve`` with one target per cluster, no store; its process and port."""
    config = work / f"fleet-{len(clusters)}.yaml"
    config.write_text("targets:\n" + "".join(f"  - name: db{i:03d}\n    dsn: {c.dsn()}\n" for i, c in enumerate(clusters)))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPERF_", "PG", "DATA_SOURCE"))}
    log = work / f"pgperf-{len(clusters)}-{interval:g}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgperf", "serve", "--profile", "production", "--config", str(config), "--no-store",
             "--sampling-interval", f"{interval:g}", "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"pgperf exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if fetch(port, timeout=5)[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def measure(clusters: Sequence[Cluster], run: Run, sizes: Sizes, work: Path, *, stop: bool) -> dict[str, Any]:
    """One run: pgperf over *clusters* at *run.interval*; with *stop*, then stop three."""
    with pgperf(clusters, run.interval, work) as (proc, port):
        process = psutil.Process(proc.pid)
        scraper = Scraper(port, sizes.scrape_every)
        try:
            time.sleep(run.warm_up)
            start_cpu, start_wall, start_time = cpu_seconds(process), time.monotonic(), time.time()
            scraper.scrape()
            start_overruns = dict(scraper.overruns)
            time.sleep(run.window)
            scraper.scrape()
            seconds = time.monotonic() - start_wall
            cpu = cpu_seconds(process) - start_cpu
            seen = scraper.since(start_time)
            out: dict[str, Any] = {
                "targets": run.targets, "interval_s": run.interval, "window_s": round(seconds, 1),
                "cpu_seconds": cpu, "cpu_share_percent": 100 * cpu / seconds,
                "rss_bytes": process.memory_info().rss, "threads": process.num_threads(),
                "lateness": lateness(seen),
                "overruns": sum(scraper.overruns.values()) - sum(start_overruns.values()),
                "targets_seen": len({s.target for s in seen}),
                "down_samples": sum(1 for s in seen if not s.up),
                "scrape_errors": scraper.errors,
            }
            if stop:
                out["stop"] = stop_three(clusters, scraper, sizes)
            return out
        finally:
            scraper.stop()


def stop_three(clusters: Sequence[Cluster], scraper: Scraper, sizes: Sizes) -> dict[str, Any]:
    """Stop three clusters; the samples after it: the stopped down, the others on time."""
    names = [f"db{i:03d}" for i in range(len(clusters))]
    stopped = set(names[1:1 + STOPPED])
    scraper.scrape()
    before = dict(scraper.overruns)
    for i in range(1, 1 + STOPPED):
        clusters[i].stop("immediate")
    stopped_at = time.time()
    time.sleep(sizes.stop_window)
    scraper.scrape()
    others = set(names) - stopped
    after = scraper.since(stopped_at)
    of_others = [s for s in after if s.target in others]
    of_stopped = [s for s in after if s.target in stopped]
    return {
        "stopped": sorted(stopped),
        "window_s": sizes.stop_window,
        "stopped_samples": len(of_stopped),
        "stopped_samples_up": sum(1 for s in of_stopped if s.up),
        "others_samples": len(of_others),
        "others_samples_down": sum(1 for s in of_others if not s.up),
        "others_lateness": lateness(of_others),
        "others_overruns": sum(v - before.get(t, 0.0) for t, v in scraper.overruns.items() if t in others),
    }


def one_target_memory(cluster: Cluster, seconds: float, work: Path) -> dict[str, Any]:
    """Resident memory of ``pgperf serve`` with one target and its store (in the same
    cluster) after *seconds*, without scheduled reports and with them (the defaults)."""
    out: dict[str, Any] = {"seconds": seconds}
    for name, settings in (("no_reports", {"PGPERF_REPORTS_DAILY": "false", "PGPERF_REPORTS_WEEKLY": "false"}),
                           ("reports", {})):
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPERF_", "PG", "DATA_SOURCE"))}
        env.update(settings, PGPERF_STORE_SPOOL_DIR=str(work / f"spool-{name}"), PGPERF_STORE_SCHEMA=f"bench_{name}")
        log = work / f"pgperf-one-{name}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pgperf", "serve", "--profile", "production", "--dsn", cluster.dsn(),
                 "--sampling-interval", "5", "--web.listen-address", f"127.0.0.1:{port}"],
                stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"pgperf exited ({proc.returncode}): {log.read_text()[-2000:]}")
                with contextlib.suppress(OSError):
                    fetch(port, timeout=10)  # scraped, as Prometheus would
                time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            process = psutil.Process(proc.pid)
            out[name] = {"rss_bytes": process.memory_info().rss, "threads": process.num_threads()}
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return out


def run_all(quick: bool, work: Path) -> dict[str, Any]:
    sizes = Sizes.quick() if quick else Sizes.full()
    most = max(r.targets for r in sizes.runs)
    started = time.monotonic()
    clusters = fleet(most, settings=CLUSTER_SETTINGS, name="pgperf-bench-fleet")
    results: dict[str, Any] = {"clusters": most, "cluster_settings": {k: str(v).strip("'") for k, v in
                                                                     CLUSTER_SETTINGS.items()},
                               "setup_seconds": round(time.monotonic() - started), "runs": []}
    try:
        with contextlib.ExitStack() as load:
            loaded = 0
            for n, run in enumerate(sizes.runs):
                for cluster in clusters[loaded:run.targets]:
                    load.enter_context(cluster.pgbench(clients=1, rate=sizes.pgbench_rate))
                loaded = max(loaded, run.targets)
                print(f"bench: fleet: {run.targets} targets every {run.interval:g}s ...", flush=True)
                results["runs"].append(measure(clusters[:run.targets], run, sizes, work, stop=n == 0))
                if n == 0:  # the stopped clusters back, idle, for the next runs
                    for cluster in clusters[1:1 + STOPPED]:
                        cluster.start()
        print("bench: fleet: one target's memory, without and with scheduled reports ...", flush=True)
        results["one_target"] = one_target_memory(clusters[0], 6 if quick else 60, work)
    finally:
        destroy_all(clusters)
    results["postgres"] = clusters[0].major
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--output", help="write the results as JSON here (default: standard output)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pgperf-fleet-") as work:
        results = run_all(args.quick, Path(work))
    text = json.dumps(results, indent=1)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
