"""Soak: pgperf sampling every second under pgbench for a long time (``make soak``).

Checks that nothing grows: the exporter's resident memory; the memory of its own database
backends, as PostgreSQL accounts it (the "Grand total" of ``pg_log_backend_memory_contexts``,
PostgreSQL 14+) and as the kernel sees it without the shared memory segment (private pages
of every other mapping: a backend's view of shared buffers would count as "private" while
no other process touches those pages, so USS is misleading here); and the number of
connections it holds. Prometheus-like scrapes run every 15 s throughout.

    python bench/soak.py --minutes 30            # writes bench/results.json ["soak"], README
    python bench/soak.py --minutes 0.5 --no-write  # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import requests

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the benches, and the repository's tools package

from tools.cluster import Cluster, free_port  # noqa: E402

# Seconds before the baseline: imports, caches and pools settle, and the connection the
# report scheduler opens at its first round is closed again after its idle time.
WARM_UP = 360.0


def _backend_pids(cluster: Cluster) -> list[int]:
    rows = cluster.execute("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pgperf%'")
    return [int(r[0]) for r in rows]


def _private(pids: list[int]) -> int:
    """Private pages of the backends, the shared memory segment left out."""
    total = 0
    for pid in pids:
        try:
            for region in psutil.Process(pid).memory_maps(grouped=True):
                if region.path.startswith(("/dev/zero", "/SYSV", "/dev/shm", "/memfd")):
                    continue  # PostgreSQL's shared memory: buffers, locks, statistics
                total += region.private_clean + region.private_dirty
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def _contexts(cluster: Cluster, pids: list[int]) -> int:
    """Sum of the backends' memory contexts, from pg_log_backend_memory_contexts (the
    server log is where PostgreSQL writes them)."""
    before = cluster.log_file.stat().st_size if cluster.log_file.exists() else 0
    for pid in pids:
        cluster.execute("SELECT pg_log_backend_memory_contexts(%s)", params=(pid,))
    deadline = time.monotonic() + 5
    found: dict[int, int] = {}
    while time.monotonic() < deadline and len(found) < len(pids):
        time.sleep(0.2)
        with open(cluster.log_file, "rb") as f:
            f.seek(before)
            text = f.read().decode(errors="replace")
        for line in text.splitlines():
            match = re.search(r"\[(\d+)\].*Grand total: (\d+) bytes", line)
            if match and int(match[1]) in pids:
                found[int(match[1])] = int(match[2])
    return sum(found.values())


def soak(minutes: float, interval: str = "1s") -> dict[str, Any]:
    points: list[dict[str, float]] = []
    with Cluster(name="pgperf-soak") as cluster:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGPERF_")}
        env["PGPERF_STORE_SPOOL_DIR"] = str(cluster.base / "spool")
        with cluster.pgbench(clients=4, rate=200):
            proc = subprocess.Popen([sys.executable, "-m", "pgperf", "serve", "--dsn", cluster.dsn(),
                                     "--profile", "development", "--sampling-interval", interval,
                                     "--web.listen-address", f"127.0.0.1:{port}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            exporter = psutil.Process(proc.pid)
            url = f"http://127.0.0.1:{port}/metrics"
            try:
                started = time.monotonic()
                next_scrape = started
                next_point = started
                while (elapsed := time.monotonic() - started) < minutes * 60:
                    now = time.monotonic()
                    if now >= next_scrape:
                        try:
                            requests.get(url, timeout=5)
                        except requests.RequestException:
                            pass
                        next_scrape += 15
                    if now >= next_point:
                        pids = _backend_pids(cluster)
                        points.append({"t": round(elapsed, 1), "rss": exporter.memory_info().rss,
                                       "backends": len(pids), "backend_private": _private(pids),
                                       "backend_contexts": _contexts(cluster, pids),
                                       "cpu_s": sum(exporter.cpu_times()[:2])})
                        next_point += 30
                    time.sleep(0.5)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    return summarize(points, minutes, interval)


def summarize(points: list[dict[str, float]], minutes: float, interval: str) -> dict[str, Any]:
    settled = [p for p in points if p["t"] >= min(WARM_UP, minutes * 60 / 3)] or points
    first, last = settled[0], settled[-1]

    def growth(key: str) -> float:
        return (last[key] - first[key]) / first[key] * 100 if first[key] else 0.0

    def spread(key: str) -> float:
        values = [p[key] for p in settled]
        return (max(values) - min(values)) / statistics.median(values) * 100 if statistics.median(values) else 0.0

    hours = (last["t"] - first["t"]) / 3600 or 1.0
    return {
        "minutes": minutes, "interval": interval, "points": points,
        "rss_start_mib": first["rss"] / 2**20, "rss_end_mib": last["rss"] / 2**20,
        "rss_growth_percent": growth("rss"), "rss_spread_percent": spread("rss"),
        "backend_contexts_start_mib": first["backend_contexts"] / 2**20,
        "backend_contexts_end_mib": last["backend_contexts"] / 2**20,
        "backend_contexts_growth_percent": growth("backend_contexts"),
        "backend_contexts_spread_percent": spread("backend_contexts"),
        "backend_private_start_mib": first["backend_private"] / 2**20,
        "backend_private_end_mib": last["backend_private"] / 2**20,
        "backend_private_growth_percent": growth("backend_private"),
        "backend_private_spread_percent": spread("backend_private"),
        "connections_min": min(p["backends"] for p in settled), "connections_max": max(p["backends"] for p in settled),
        "cpu_seconds_per_hour": (last["cpu_s"] - first["cpu_s"]) / hours,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/ untouched")
    args = parser.parse_args(argv)
    result = soak(args.minutes, args.interval)
    summary = {k: v for k, v in result.items() if k != "points"}
    print(json.dumps(summary, indent=1))
    if not args.no_write:
        import harness

        results_path = HERE / "results.json"
        results = json.loads(results_path.read_text()) if results_path.exists() else {"machine": harness.machine(),
                                                                                      "quick": False}
        results["soak"] = result
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        (HERE / "README.md").write_text(harness.render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
