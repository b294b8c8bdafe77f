"""Memory with reports: ``pgperf serve`` building reports on schedule while they are read as
HTML in the console, its resident memory sampled throughout.

pgperf runs as ``make demo`` runs it (development profile, 5 s sampling, statement texts
shown, a report every minute) against a throwaway PostgreSQL under pgbench. A reader signs
in to the console and, every 10 s, opens the overview, the list of reports and every
report's page with its scripts, and downloads each report as a written HTML file (the
API's ``?format=html``, the chart library inlined); Prometheus-like scrapes run every 15 s.
The figures: resident memory (RSS, 1 MiB = 2^20 bytes) at the start of serving, its peak
and its end, and how many reports were built and pages served.

    python bench/memory_bench.py                 # 10 minutes; writes bench/results.json ["memory"], README
    python bench/memory_bench.py --minutes 1 --no-write   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import requests
import requests.adapters
import yaml
from urllib3.util.retry import Retry

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the benches, and the repository's tools package

from tools.cluster import Cluster, free_port  # noqa: E402

TOKEN = "memory-bench-token-0123456789"
#: The target: resident memory below this while reports are built and served (issue: 100 MiB).
TARGET_MIB = 100.0
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_STATIC = re.compile(r'(/static/[^"?]+\?v=[0-9a-f]+)')
_REPORT = re.compile(r'href="(/reports/perf-report-[^"]+)"')


class Reader:
    """A person reading the console: signed in once, then page after page."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()
        # As a browser does: a request on a kept-alive connection the server had closed is sent again.
        self.http.mount("http://", requests.adapters.HTTPAdapter(max_retries=Retry(total=2, allowed_methods=None)))
        self.pages = 0
        self.bytes = 0
        self.seen: set[str] = set()

    def sign_in(self) -> None:
        form = self.http.get(self.base + "/login", timeout=10)
        found = _CSRF.search(form.text)
        assert found, "no sign-in form"
        answer = self.http.post(self.base + "/login", data={"token": TOKEN, "csrf_token": found.group(1)},
                                timeout=10, allow_redirects=False)
        assert answer.status_code == 303, answer.text

    def get(self, path: str) -> str:
        response = self.http.get(self.base + path, timeout=60)
        response.raise_for_status()
        self.pages += 1
        self.bytes += len(response.content)
        for asset in set(_STATIC.findall(response.text)):  # as a browser with an empty cache would
            self.bytes += len(self.http.get(self.base + asset, timeout=10).content)
        return response.text

    def round(self) -> None:
        self.get("/")
        listing = self.get("/reports/")
        for path in dict.fromkeys(_REPORT.findall(listing)):
            self.get(path)
            if path not in self.seen:  # each report once also as a written file
                self.seen.add(path)
                written = self.http.get(self.base + "/api/v1" + path + "?format=html", timeout=60,
                                        headers={"Authorization": f"Bearer {TOKEN}"})
                written.raise_for_status()
                self.pages += 1
                self.bytes += len(written.content)


def measure(minutes: float, *, report_every: str = "1m", interval: str = "5s") -> dict[str, Any]:
    """Serve for *minutes* while reports are built every *report_every* and read; the figures."""
    points: list[dict[str, float]] = []
    with Cluster(name="pgperf-memory-bench") as cluster, tempfile.TemporaryDirectory(prefix="pgperf-mem-") as tmp:
        port = free_port()
        config = Path(tmp) / "pgperf.yaml"
        config.write_text(yaml.safe_dump({
            "profile": "development", "dsn": cluster.dsn(), "sampling_interval": interval,
            "expose_query_text": True, "web": {"listen_address": f"127.0.0.1:{port}"}, "api": {"token": TOKEN},
            "store": {"spool_dir": str(Path(tmp) / "spool")}, "reports": {"every": report_every},
        }))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGPERF_")}
        with cluster.pgbench(clients=2, rate=50):
            log = open(Path(tmp) / "pgperf.log", "wb")  # closed in the finally clause below
            proc = subprocess.Popen([sys.executable, "-m", "pgperf", "serve", "--config", str(config)],
                                    stdout=log, stderr=subprocess.STDOUT, env=env)
            exporter = psutil.Process(proc.pid)
            base = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        if "pg_up 1.0" in requests.get(base + "/metrics", timeout=2).text:
                            break
                    except requests.RequestException:
                        pass
                    time.sleep(0.5)
                reader = Reader(base)
                reader.sign_in()
                started = time.monotonic()
                next_read = next_scrape = next_point = started
                while (elapsed := time.monotonic() - started) < minutes * 60:
                    now = time.monotonic()
                    if now >= next_read:
                        reader.round()
                        next_read += 10
                    if now >= next_scrape:
                        requests.get(base + "/metrics", timeout=10)
                        next_scrape += 15
                    if now >= next_point:
                        points.append({"t": round(elapsed, 1), "rss": exporter.memory_info().rss,
                                       "reports": len(reader.seen)})
                        next_point += 5
                    time.sleep(0.2)
                points.append({"t": round(time.monotonic() - started, 1), "rss": exporter.memory_info().rss,
                               "reports": len(reader.seen)})
            except requests.RequestException:
                print(f"pgperf stopped answering; its log:\n{(Path(tmp) / 'pgperf.log').read_text()[-3000:]}",
                      file=sys.stderr)
                raise
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
                log.close()
    peak = max(points, key=lambda p: p["rss"])
    return {
        "minutes": minutes, "interval": interval, "report_every": report_every,
        "rss_start_mib": round(points[0]["rss"] / 2**20, 1), "rss_peak_mib": round(peak["rss"] / 2**20, 1),
        "rss_peak_at_s": peak["t"], "rss_end_mib": round(points[-1]["rss"] / 2**20, 1),
        "reports_built": len(reader.seen), "pages_served": reader.pages,
        "bytes_served_mib": round(reader.bytes / 2**20, 1), "target_mib": TARGET_MIB,
        "points": points,
    }


def render(m: dict[str, Any]) -> list[str]:
    """The README's section."""
    met = "yes" if m["rss_peak_mib"] < m["target_mib"] else "no"
    return [
        "## Memory with reports",
        "",
        f"bench/memory_bench.py: `pgperf serve` as `make demo` runs it (sampling every {m['interval']}, a report every "
        f"{m['report_every']}, statement texts shown) for {m['minutes']:g} minutes under pgbench, while a reader "
        "signed in to the console opens the overview, the list of reports and every report's page with its scripts "
        "every 10 s, and downloads each report once as a written HTML file (the chart library inlined).",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| resident memory when serving began | {m['rss_start_mib']:.1f} MiB | — |",
        f"| resident memory at its peak ({m['rss_peak_at_s']:.0f} s in) | {m['rss_peak_mib']:.1f} MiB | "
        f"< {m['target_mib']:g} MiB: {met} |",
        f"| resident memory at the end | {m['rss_end_mib']:.1f} MiB | — |",
        f"| reports built and read / pages and downloads served | {m['reports_built']} / {m['pages_served']:,} "
        f"({m['bytes_served_mib']:.1f} MiB) | — |",
        "",
        "Before the reports drew their charts with Chart.js, pgperf imported plotly (its Python package and its "
        "4.8 MB script, inlined in every page) to render a report: the demo's pgperf reached 247 MB once reports "
        "had been built and served.",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--report-every", default="1m")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/ untouched")
    args = parser.parse_args(argv)
    result = measure(args.minutes, report_every=args.report_every)
    print(json.dumps({k: v for k, v in result.items() if k != "points"}, indent=1))
    if not args.no_write:
        results_path = HERE / "results.json"
        results = json.loads(results_path.read_text()) if results_path.exists() else {}
        results["memory"] = result
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        # The README is harness.py's rendering of every result (it imports this module).
        subprocess.run([sys.executable, str(HERE / "harness.py"), "--render-only"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
