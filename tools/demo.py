"""``make demo``: the whole pgperf stack on this machine, without Docker.

Starts, all on 127.0.0.1:

* a throwaway PostgreSQL (pg_stat_statements preloaded) with a pgbench workload and the
  poker room of the original requirement, whose back office keeps running one
  deliberately unindexed range query (``tools.workload``): slow enough to trip the
  slow-query alert within a minute;
* ``pgperf serve`` (development profile, storing its samples, a report every few minutes,
  statement texts shown: nothing here listens beyond the loopback interface), from a
  configuration file that pgperf's command line reads too; its console is signed in to
  with the API token the demo prints;
* Debian's Prometheus with this repository's ``prometheus.yml`` and rules, and
  Alertmanager with its ``alertmanager.yml`` (loopback variants rendered by
  ``tools.bundle``), every receiver other than pgperf's notifying a local sink that keeps
  what Slack, PagerDuty, e-mail and the webhook would have received.

It prints the URLs that answer (each fetched first: Debian's Prometheus serves its pages
under ``/classic/``, Debian's Alertmanager has no web UI) and ready-to-paste commands;
Ctrl-C stops every process and removes every file it created.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import http.server
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import requests
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from . import bundle, workload
from .cluster import Cluster, ClusterError, find_bindir, free_port

#: Stands for the id of an alert in the printed ``pgperf alerts ack`` command.
ALERT_ID = "ALERT_ID"


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


def answers(url: str, headers: Mapping[str, str] | None = None) -> bool:
    """Whether a GET of *url* answers 200 itself (a redirect or an error page does not count)."""
    try:
        return requests.get(url, headers=dict(headers or {}), timeout=5, allow_redirects=False).status_code == 200
    except requests.RequestException:
        return False


def first_answering(base: str, paths: tuple[str, ...]) -> str | None:
    """The first of *paths* under *base* that answers 200, as a URL."""
    return next((base + path for path in paths if answers(base + path)), None)


# -- the local sink ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Notification:
    """What one channel would have received: channel, when (UTC) and a one-line summary."""

    channel: str
    received_at: str
    summary: str


def _summary(channel: str, body: bytes) -> str:
    """One line about a notification posted by Alertmanager to *channel*."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"{len(body)} bytes"
    if not isinstance(data, dict):
        return f"{len(body)} bytes"
    if channel == "slack":
        return "; ".join(str(a.get("title", "")) for a in data.get("attachments", []) if isinstance(a, dict))
    if channel == "pagerduty":
        payload = data.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        return f"{data.get('event_action', '')}: {payload.get('summary', '')}"
    alerts = [a for a in data.get("alerts", []) if isinstance(a, dict)]
    names = sorted({str(a.get("labels", {}).get("alertname")) for a in alerts})
    return f"{data.get('status', '')}: {', '.join(names)}"


class _Mail:
    """aiosmtpd handler: every message is accepted and recorded by its subject."""

    def __init__(self, sink: LocalSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        self.sink.record("email", f"to {', '.join(envelope.rcpt_tos)}: {message.get('Subject', '')}")
        return "250 Message accepted for delivery"


@dataclass
class LocalSink:
    """Stands in for Slack, PagerDuty, the generic webhook (HTTP, posts to ``/slack``,
    ``/pagerduty``, ``/webhook``) and the e-mail relay (SMTP) of the demo's Alertmanager.
    It keeps what each would have received and lists it as JSON at ``GET /``."""

    received: list[Notification] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                channel = self.path.strip("/") or "webhook"
                sink.record(channel, _summary(channel, body))
                self._send(200, b'{"status": "success"}')

            def do_GET(self) -> None:
                if self.path != "/":
                    self._send(404, b'{"error": "not found: the notifications are listed at /"}')
                    return
                self._send(200, json.dumps([asdict(n) for n in sink.notifications()], indent=1).encode())

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # aiosmtpd checks that its server answers by connecting to the port: no port 0.
        self._smtp = Controller(_Mail(self), hostname="127.0.0.1", port=free_port())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def smtp(self) -> str:
        return f"127.0.0.1:{self._smtp.port}"

    @property
    def bundle_sink(self) -> bundle.Sink:
        return bundle.Sink(self.url, self.smtp)

    def record(self, channel: str, summary: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock:
            self.received.append(Notification(channel, stamp, summary[:500]))

    def notifications(self) -> list[Notification]:
        with self._lock:
            return list(self.received)

    def start(self) -> LocalSink:
        threading.Thread(target=self._http.serve_forever, name="sink-http", daemon=True).start()
        self._smtp.start()
        return self

    def stop(self) -> None:
        self._smtp.stop()
        self._http.shutdown()
        self._http.server_close()


# -- what the demo prints ---------------------------------------------------------------------

def pgperf_command() -> list[str]:
    """How to run this interpreter's pgperf from the current directory: its console script
    (relative when below the current directory), else ``python -m pgperf``."""
    script = Path(sys.executable).with_name("pgperf")
    if not script.exists():
        return [sys.executable, "-m", "pgperf"]
    try:
        return [str(script.relative_to(Path.cwd()))]
    except ValueError:
        return [str(script)]


def offer_hypopg(dsn: str) -> None:
    """Create HypoPG where the server has it (Debian's postgresql-15-hypopg), so that
    ``pgperf advise`` and the reports prove their index advice with the planner."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'").fetchone():
            conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg")


def commands(config_file: Path, urls: Mapping[str, str], token: str, amtool: str | None) -> list[str]:
    """Ready-to-paste commands against the running demo; ``ALERT_ID`` stands for an id
    listed by the second one."""
    pgperf = shlex.join(pgperf_command())
    config = f"--config {shlex.quote(str(config_file))}"
    out = [
        f"curl -H 'Authorization: Bearer {token}' {urls['pgperf']}/api/v1/alerts",
        f"{pgperf} alerts list {config}",
        f'{pgperf} alerts ack {ALERT_ID} --by "$(id -un)" {config}',
        f"{pgperf} report --period daily {config}",
        f"{pgperf} advise {config}",
    ]
    if amtool and "alertmanager" in urls:
        out.append(f"{shlex.quote(amtool)} --alertmanager.url={urls['alertmanager']} alert query")
    return out


def links(urls: Mapping[str, str], token: str, sink: LocalSink) -> list[tuple[str, str, str]]:
    """(name, URL, note) of every page worth opening that answers; each is fetched first."""
    out: list[tuple[str, str, str]] = []
    pgperf = urls["pgperf"]
    if answers(pgperf + "/login"):  # the console: overview, alerts, reports, targets
        out.append(("console", pgperf + "/login", f"sign in with the API token {token}"))
    if answers(pgperf + "/metrics"):
        out.append(("metrics", pgperf + "/metrics", ""))
    if answers(pgperf + "/api/v1/alerts", {"Authorization": f"Bearer {token}"}):
        out.append(("alerts (API)", pgperf + "/api/v1/alerts", "with the API token: see the curl command below"))
    if "prometheus" in urls:
        # Debian's Prometheus has no React UI: its pages are the classic ones, under /classic/.
        for path in ("/targets", "/alerts"):
            if url := first_answering(urls["prometheus"], (path, "/classic" + path)):
                out.append(("Prometheus", url, ""))
    if "alertmanager" in urls:
        am = urls["alertmanager"]
        if answers(am + "/script.js"):  # the web UI's code: Debian's package leaves it out
            out.append(("Alertmanager", am + "/#/alerts", ""))
        elif answers(am + "/api/v2/alerts"):
            out.append(("Alertmanager", am + "/api/v2/alerts", "no web UI in this build: its API, and amtool below"))
    if answers(sink.url + "/"):
        out.append(("notifications", sink.url + "/", "what Slack, PagerDuty, e-mail and the webhook would have got"))
    return out


def pgperf_config(dsn: str, listen: str, token: str, args: argparse.Namespace, work: Path,
                  alertmanager_url: str | None) -> dict[str, Any]:
    """The demo's pgperf configuration file, read by ``pgperf serve`` and the printed commands."""
    config: dict[str, Any] = {
        "profile": "development",
        "dsn": dsn,
        "sampling_interval": args.sampling_interval,
        # Loopback-only: statement texts may be shown in reports and the API.
        "expose_query_text": True,
        "web": {"listen_address": listen},
        "api": {"token": token},
        "store": {"spool_dir": str(work / "spool")},
        "reports": {"every": args.report_every},
    }
    if alertmanager_url:
        config["alerts"] = {"alertmanager_url": alertmanager_url}
    return config


def alertmanager_config(pgperf_url: str, secrets_dir: Path, sink: LocalSink) -> dict[str, Any]:
    """The demo's ``alertmanager.yml``: the committed routes with fast timings, pgperf's
    receiver posting to *pgperf_url*, every other receiver notifying *sink*."""
    return bundle.alertmanager_config(pgperf_url, secrets_dir=secrets_dir, fast=True, sink=sink.bundle_sink)


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
    sink = LocalSink().start()
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
        offer_hypopg(dsn)
        poker = workload.run(dsn, poker_stop)
        pgbench = subprocess.Popen([cluster.pgbench_bin(), "-i", "-q", "-s", "1", dsn],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pgbench.wait()
        spawn("pgbench", [cluster.pgbench_bin(), "-n", "-c", "2", "-j", "1", "-R", "40", "-T", "86400", dsn])

        am_binary = _binary("prometheus-alertmanager", "alertmanager")
        prom_binary = _binary("prometheus")
        ports = {"pgperf": _port(9187)}
        if prom_binary:
            ports["prometheus"] = _port(9090)
        if am_binary:
            ports["alertmanager"] = _port(9093)
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        token = secrets.token_urlsafe(24)
        secrets_dir = work / "secrets"
        bundle.write_secrets(secrets_dir, {"pgperf-api-token": token})

        config_file = work / "pgperf.yaml"
        config_file.write_text(yaml.safe_dump(pgperf_config(
            dsn, f"127.0.0.1:{ports['pgperf']}", token, args, work, urls.get("alertmanager")), sort_keys=False))
        config_file.chmod(0o600)  # it holds the API token
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGPERF_")}
        spawn("pgperf", [sys.executable, "-m", "pgperf", "serve", "--config", str(config_file)], env)

        if am_binary:
            (work / "alertmanager.yml").write_text(bundle.dump(alertmanager_config(urls["pgperf"], secrets_dir, sink)))
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

        pages = links(urls, token, sink)
        printed = commands(config_file, urls, token, _binary("amtool") if am_binary else None)
        missing = [name for name, binary in (("Prometheus", prom_binary), ("Alertmanager", am_binary)) if not binary]
        lines = [f"  {name:<14} {url}" + (f"   ({note})" if note else "") for name, url, note in pages]
        lines += [f"  {name:<14} (not installed: make deps installs it)" for name in missing]
        print(f"""
pgperf demo is up ({time.monotonic() - started:.0f} s):
{chr(10).join(lines)}
  {'PostgreSQL':<14} {dsn}

The poker room's back office runs an unindexed range query on game_hands.created_at
(about a second) every few seconds: PgperfSlowQueries fires within a minute, reaches pgperf
through Alertmanager, and the next report (every {args.report_every}) counts it. The console
shows it as it comes: sign in with the API token above to acknowledge it there.

Commands for this demo ({ALERT_ID}: an id from the list):
{chr(10).join('  ' + command for command in printed)}

Logs and data in {work}. Press Ctrl-C to stop everything and remove it.
""", flush=True)
        if args.ready_file:
            Path(args.ready_file).write_text(json.dumps({
                **urls, "token": token, "dsn": dsn, "work": str(work), "config": str(config_file),
                "links": [url for _, url, _ in pages], "commands": printed, "sink": sink.url,
            }))
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
        sink.stop()
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
        print("demo stopped; everything it created is removed", flush=True)


if __name__ == "__main__":
    sys.exit(main())
