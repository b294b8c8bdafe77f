"""``make demo``: the whole pgperf stack on this machine, without Docker.

Starts, all on 127.0.0.1:

* a throwaway PostgreSQL (pg_stat_statements preloaded) with a pgbench workload and the
  poker room of the original requirement (one query deliberately unindexed);
* ``pgperf serve`` (development profile, storing its samples, a report every few minutes);
* Debian's Prometheus with this repository's ``prometheus.yml`` and rules, and
  Alertmanager with its ``alertmanager.yml`` (loopback variants rendered by
  ``tools.bundle``; notifications other than pgperf's go to a local sink).

It prints the URLs; Ctrl-C stops every process and removes every file it created.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from . import bundle, workload
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
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(0.25)
    return False


def _tail(path: Path, lines: int = 20) -> str:
    """The end of a log, printed before the demo removes its files."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _binary(*names: str) -> str | None:
    for name in names:
        if found := shutil.which(name):
            return found
    return None


class _Sink(http.server.BaseHTTPRequestHandler):
    """Stands in for Slack, PagerDuty, e-mail relays and webhooks: logs, answers 200."""

    received: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-major", default=os.environ.get("PG_MAJOR"), help="PostgreSQL major (default: 15)")
    parser.add_argument("--sampling-interval", default="5s")
    parser.add_argument("--report-every", default=os.environ.get("PGPERF_REPORTS_EVERY", "2m"),
                        help="generate a report of the last period this often (default 2m)")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)")
    parser.add_argument("--ready-file", help="write the URLs as JSON here once everything is up (for tests)")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="pgperf-demo-"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    cluster: Cluster | None = None
    poker_stop = threading.Event()
    poker: list[threading.Thread] = []

    def spawn(name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(work / f"{name}.log", "wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
        procs[name] = proc
        return proc

    try:
        try:
            cluster = Cluster(find_bindir(args.pg_major or 15), name="pgperf-demo").start()
        except ClusterError as exc:
            print(f"demo: cannot start PostgreSQL: {exc}", file=sys.stderr)
            return 1
        dsn = cluster.dsn()
        print(f"PostgreSQL {cluster.major} running: {dsn}", flush=True)
        workload.setup(dsn)
        poker = workload.run(dsn, poker_stop)
        pgbench = subprocess.Popen([cluster.pgbench_bin(), "-i", "-q", "-s", "1", dsn],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pgbench.wait()
        spawn("pgbench", [cluster.pgbench_bin(), "-n", "-c", "2", "-j", "1", "-R", "40", "-T", "86400", dsn])

        ports = {"pgperf": _port(9187), "prometheus": _port(9090), "alertmanager": _port(9093)}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        token = secrets.token_urlsafe(24)
        secrets_dir = work / "secrets"
        sink_url = f"http://127.0.0.1:{sink.server_address[1]}"
        bundle.write_secrets(secrets_dir, {"pgperf-api-token": token, "slack-webhook-url": f"{sink_url}/slack"})

        env = {k: v for k, v in os.environ.items() if not k.startswith("PGPERF_")}
        env.update(PGPERF_API_TOKEN=token, PGPERF_ALERTS_ALERTMANAGER_URL=urls["alertmanager"],
                   PGPERF_REPORTS_EVERY=args.report_every, PGPERF_STORE_SPOOL_DIR=str(work / "spool"))
        spawn("pgperf", [sys.executable, "-m", "pgperf", "serve", "--dsn", dsn, "--profile", "development",
                         "--sampling-interval", args.sampling_interval,
                         "--web.listen-address", f"127.0.0.1:{ports['pgperf']}"], env)

        am_binary = _binary("prometheus-alertmanager", "alertmanager")
        prom_binary = _binary("prometheus")
        if am_binary:
            (work / "alertmanager.yml").write_text(bundle.dump(bundle.alertmanager_config(
                urls["pgperf"], secrets_dir=secrets_dir, webhook_url=f"{sink_url}/webhook", fast=True)))
            spawn("alertmanager", [am_binary, f"--config.file={work / 'alertmanager.yml'}",
                                   f"--storage.path={work / 'alertmanager-data'}", "--cluster.listen-address=",
                                   f"--web.listen-address=127.0.0.1:{ports['alertmanager']}"])
        if prom_binary:
            (work / "prometheus.yml").write_text(bundle.dump(bundle.prometheus_config(
                [f"127.0.0.1:{ports['pgperf']}"], f"127.0.0.1:{ports['alertmanager']}" if am_binary else None,
                prometheus=f"127.0.0.1:{ports['prometheus']}", interval="5s")))
            spawn("prometheus", [prom_binary, f"--config.file={work / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={work / 'prometheus-data'}",
                                 f"--web.listen-address=127.0.0.1:{ports['prometheus']}"])

        if not _wait(lambda: "pg_up 1.0" in requests.get(urls["pgperf"] + "/metrics", timeout=2).text, 30):
            print(f"demo: pgperf did not report pg_up 1 within 30 s:\n{_tail(work / 'pgperf.log')}", file=sys.stderr)
            return 1
        if prom_binary and not _wait(lambda: requests.get(urls["prometheus"] + "/-/ready", timeout=2).ok, 30):
            print(f"demo: Prometheus is not ready:\n{_tail(work / 'prometheus.log')}", file=sys.stderr)
            return 1
        if am_binary and not _wait(lambda: requests.get(urls["alertmanager"] + "/-/ready", timeout=2).ok, 30):
            print(f"demo: Alertmanager is not ready:\n{_tail(work / 'alertmanager.log')}", file=sys.stderr)
            return 1

        print(f"""
pgperf demo is up ({time.monotonic() - started:.0f} s):
  pgperf        {urls['pgperf']}/metrics
  reports       {urls['pgperf']}/reports/   (a new report every {args.report_every})
  alerts (API)  curl -H 'Authorization: Bearer {token}' {urls['pgperf']}/api/v1/alerts
  Prometheus    {urls['prometheus']}/targets   {urls['prometheus']}/alerts{'' if prom_binary else '   (not installed)'}
  Alertmanager  {urls['alertmanager']}{'' if am_binary else '   (not installed)'}
  PostgreSQL    {dsn}
Logs and data in {work}. Press Ctrl-C to stop everything and remove it.
""", flush=True)
        if args.ready_file:
            Path(args.ready_file).write_text(json.dumps({**urls, "token": token, "dsn": dsn, "work": str(work)}))
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop.is_set():
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"demo: {name} exited with status {proc.returncode}:\n{_tail(work / (name + '.log'))}",
                          file=sys.stderr)
                    return 1
            if deadline and time.monotonic() > deadline:
                break
            stop.wait(0.5)
        return 0
    finally:
        poker_stop.set()
        for thread in poker:
            thread.join(5)
        for proc in reversed(procs.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        sink.shutdown()
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
        print("demo stopped; everything it created is removed", flush=True)


if __name__ == "__main__":
    sys.exit(main())
