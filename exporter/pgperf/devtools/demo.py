"""``make demo``: pgperf on a throwaway PostgreSQL with a workload, on this machine.

Starts a PostgreSQL cluster in a temporary directory (pg_stat_statements preloaded), runs
a pgbench workload against it, starts ``pgperf serve`` and prints the URLs. Ctrl-C stops
everything and removes what was created.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import requests

from .cluster import Cluster, ClusterError, find_bindir, free_port


def _port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def _wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgperf-demo", description=__doc__)
    parser.add_argument("--pg-major", default=os.environ.get("PG_MAJOR"), help="PostgreSQL major (default: 15)")
    parser.add_argument("--sampling-interval", default="5s")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    try:
        cluster = Cluster(find_bindir(args.pg_major or 15), name="pgperf-demo").start()
    except ClusterError as exc:
        print(f"demo: cannot start PostgreSQL: {exc}", file=sys.stderr)
        return 1
    procs: list[subprocess.Popen[bytes]] = []
    try:
        print(f"PostgreSQL {cluster.major} running: {cluster.dsn()}  (data in {cluster.base})")
        with cluster.pgbench(clients=2, rate=50):
            port = _port(9187)
            # A report of the last two minutes every two minutes, so that /reports/ fills quickly.
            env = {**os.environ, "PGPERF_REPORTS_EVERY": os.environ.get("PGPERF_REPORTS_EVERY", "2m")}
            exporter = subprocess.Popen([
                sys.executable, "-m", "pgperf", "serve", "--dsn", cluster.dsn(), "--profile", "development",
                "--sampling-interval", args.sampling_interval, "--web.listen-address", f"127.0.0.1:{port}",
            ], env=env)
            procs.append(exporter)
            url = f"http://127.0.0.1:{port}"
            if not _wait(lambda: "pg_up 1.0" in requests.get(url + "/metrics", timeout=2).text, 30):
                print("demo: the exporter did not report pg_up 1 within 30 s", file=sys.stderr)
                return 1
            print(f"\npgperf is up:\n  metrics   {url}/metrics\n  readiness {url}/readyz\n"
                  f"  reports   {url}/reports/ (a new one every {env['PGPERF_REPORTS_EVERY']})\n"
                  f"  database  {cluster.dsn()}\nPress Ctrl-C to stop and remove everything.\n", flush=True)
            deadline = time.monotonic() + args.duration if args.duration else None
            while not stop.is_set():
                if exporter.poll() is not None:
                    print(f"demo: the exporter exited with status {exporter.returncode}", file=sys.stderr)
                    return 1
                if deadline and time.monotonic() > deadline:
                    break
                stop.wait(0.5)
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        cluster.destroy()
        print("demo stopped; temporary cluster removed")


if __name__ == "__main__":
    sys.exit(main())
