"""``make demo`` end to end, as a new user meets it: the stack comes up, every URL it prints
answers, the poker room's slow range query trips PgperfSlowQueries, which reaches pgperf
through Alertmanager and is counted by the next report, every printed command runs, and
Ctrl-C leaves nothing behind.

One demo run serves every check (starting it costs a minute of the machine); only the
report interval is shortened, so that the next report comes within half a minute.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from browser import Browser
from helpers import wait_until
from tools.demo import ALERT_ID

pytestmark = [pytest.mark.bundle, pytest.mark.slow]

URL = re.compile(r"https?://[^\s'\")]+")


class Demo:
    """``python -m tools.demo`` in a subprocess, its output collected as it comes."""

    def __init__(self, ready: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGPERF_")}
        self.proc = subprocess.Popen([sys.executable, "-m", "tools.demo", "--ready-file", str(ready), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        status = self.proc.wait(90)
        self._reader.join(10)
        return status


def printed_block(output: str) -> list[str]:
    """The lines from "pgperf demo is up" to "Logs and data", as printed."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("pgperf demo is up"))
    end = next(i for i, line in enumerate(lines) if line.startswith("Logs and data"))
    return lines[start:end]


def run_shell(command: str) -> subprocess.CompletedProcess[str]:
    """A printed command as a user pastes it: into a shell, without pgperf's variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGPERF_")}
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, env=env)


def demo_processes(work: str) -> list[str]:
    """Processes whose command line mentions the demo's directory or its PostgreSQL."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if work in cmdline or "pgperf-demo-pg-" in cmdline:
            found.append(f"{proc.info['pid']}: {cmdline}")
    return found


def report_in_browser(base: str, token: str, report_id: str) -> None:
    """The demo's report in headless Chromium: drawn without a console error, its chart
    library a cached file of its own; screenshots of it and of the overview."""
    browser = Browser()
    try:
        browser.sign_in(base, token)
        browser.get(f"{base}/reports/{report_id}")
        browser.wait(lambda: browser.js("return window.pgperfCharts && Object.keys(window.pgperfCharts.charts)"
                                        ".length") == 7, timeout=30, message="the report's charts drawn")
        assert "PgperfSlowQueries" in browser.text("#alerts")
        assert len(browser.driver.page_source.encode()) < 300_000  # not 4.9 MB: the library is not in the page
        library = browser.js("return document.querySelector('script[src*=\"chart.umd.min.js\"]').src")
        cached = requests.get(library, timeout=10)
        assert cached.status_code == 200 and "immutable" in cached.headers["Cache-Control"]
        browser.screenshot("demo-report")
        assert browser.console_errors() == []
        browser.get(base + "/")
        browser.wait(lambda: browser.find("#live-state").get_attribute("data-state") == "live", timeout=20,
                     message="the overview's event stream")
        browser.screenshot("demo-overview")
        assert browser.console_errors() == []
    finally:
        browser.quit()


def test_demo_shows_the_alert_flow_and_prints_only_what_works(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    started = time.monotonic()
    demo = Demo(ready, "--report-every", "30s")
    timings: dict[str, float] = {}
    info: dict[str, Any] = {}
    try:
        wait_until(lambda: ready.exists() or demo.proc.poll() is not None, timeout=120, message="demo up")
        assert demo.proc.poll() is None, demo.output
        timings["up"] = time.monotonic() - started
        info = json.loads(ready.read_text())
        token = info["token"]
        auth = {"Authorization": f"Bearer {token}"}
        block = wait_until(lambda: "Logs and data" in demo.output and printed_block(demo.output), timeout=10,
                           message="the printed block")

        # 1. Every URL printed answers 200 itself (no redirect, no 404 page); the API's with the
        # token of the curl command it is printed with.
        urls = {url for line in block for url in URL.findall(line)}
        assert urls, block
        for url in sorted(urls):
            headers = auth if "/api/v1/" in url else {}
            response = requests.get(url, headers=headers, timeout=10, allow_redirects=False)
            assert response.status_code == 200, f"{url} answers {response.status_code}:\n" + "\n".join(block)
        assert any(url.startswith(info["prometheus"]) for url in urls)
        assert set(info["links"]) <= urls

        # 2. The slow query trips the slow-query alert; pgperf records it for the demo's target.
        target = info["dsn"].removeprefix("postgresql://postgres@")

        def slow_alert() -> dict[str, Any] | None:
            alerts = requests.get(info["pgperf"] + "/api/v1/alerts", headers=auth, timeout=10).json()["alerts"]
            return next((a for a in alerts if a["metric"] == "PgperfSlowQueries"), None)

        alert = wait_until(slow_alert, timeout=180, interval=1, message="PgperfSlowQueries recorded by pgperf")
        timings["alert"] = time.monotonic() - started
        assert alert["target"] == target, alert
        assert alert["current_value"] > alert["threshold_value"] == 0.5

        # ... and the next report counts it, with the slow statement's text.
        def counted() -> dict[str, Any] | None:
            listed = requests.get(info["pgperf"] + "/api/v1/reports", headers=auth, timeout=10).json()["reports"]
            for summary in listed:
                data = requests.get(info["pgperf"] + summary["url"].replace("/reports/", "/api/v1/reports/"),
                                    headers=auth, timeout=10).json()
                if any(m["metric"] == "PgperfSlowQueries" for m in data["alerts"]["by_metric"]):
                    return dict(data)
            return None

        report = wait_until(counted, timeout=120, interval=2, message="a report counting PgperfSlowQueries")
        timings["report"] = time.monotonic() - started
        assert report["target"] == target and report["alerts"]["total"] >= 1
        slowest = report["summary"]["slowest_query"]
        assert "FROM game_hands" in slowest["query_text"] and "created_at" in slowest["query_text"], slowest
        assert slowest["mean_time_ms"] > 500

        # 4. Every printed command runs against the running demo (ALERT_ID: the alert above).
        assert len(info["commands"]) >= 4 and all(f"  {c}" in block for c in info["commands"]), block
        for command in info["commands"]:
            result = run_shell(command.replace(ALERT_ID, alert["alert_id"]))
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            if " alerts ack " in command:
                assert "silence" in result.stdout, result.stdout  # the Alertmanager URL came with the file
            if " report " in command:
                assert "PgperfSlowQueries" in result.stdout and "game_hands" in result.stdout, result.stdout
            if command.split()[-3:-2] == ["advise"]:  # the slow range query's index, proven by HypoPG
                assert "ON public.game_hands (created_at)" in result.stdout and "verified by HypoPG" in result.stdout, \
                    result.stdout
        acknowledged = requests.get(f"{info['pgperf']}/api/v1/alerts/{alert['alert_id']}", headers=auth,
                                    timeout=10).json()
        assert acknowledged["status"] == "acknowledged" and acknowledged["silence_id"], acknowledged

        # 5. The console: signed in with the printed token, the report in a real browser, its
        # charts drawn from the cached scripts; screenshots kept as test artifacts.
        assert any(line.split()[:1] == ["console"] and token in line for line in block), block
        report_in_browser(info["pgperf"], token, report["report_id"])

        # 3. Notifications other than pgperf's reached the local sink, and Alertmanager failed
        # to deliver none (an external relay or PagerDuty would show here as errors).
        sink = requests.get(info["sink"] + "/", timeout=10).json()
        assert {n["channel"] for n in sink} >= {"slack"}, sink
        log = (Path(info["work"]) / "alertmanager.log").read_text()
        failed = [line for line in log.splitlines() if "Notify" in line and "failed" in line]
        assert not failed, failed
    finally:
        status = demo.stop()
    print(f"demo up after {timings.get('up', -1):.0f} s; alert recorded after {timings.get('alert', -1):.0f} s; "
          f"in a report after {timings.get('report', -1):.0f} s")
    assert status == 0, demo.output
    assert "everything it created is removed" in demo.output
    assert not Path(info["work"]).exists()
    # pg_ctl returns once the server removed its pid file; the process itself ends a moment later.
    wait_until(lambda: not demo_processes(info["work"]), timeout=15, message="every demo process ended")
    assert timings["up"] < 60
