"""``make demo`` brings the whole stack up: pgperf, Prometheus with the bundle's rules,
Alertmanager, a report at /reports/ after the first report interval; Ctrl-C removes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from helpers import wait_until

pytestmark = [pytest.mark.bundle, pytest.mark.slow]


def test_demo_stack(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGPERF_")}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "tools.demo", "--report-every", "20s",
                             "--sampling-interval", "2s", "--ready-file", str(ready)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_until(lambda: ready.exists() or proc.poll() is not None, timeout=90, message="demo up")
        assert proc.poll() is None, proc.communicate()[0]
        up_after = time.monotonic() - started
        urls = json.loads(ready.read_text())

        def target_up() -> bool:
            targets = requests.get(urls["prometheus"] + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            return any(t["labels"]["job"] == "pgperf" and t["health"] == "up" for t in targets)

        wait_until(target_up, timeout=30, message="Prometheus scrapes pgperf")
        groups = requests.get(urls["prometheus"] + "/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert len([r for g in groups for r in g["rules"] if r["type"] == "alerting"]) >= 25
        assert requests.get(urls["alertmanager"] + "/-/ready", timeout=5).ok
        wait_until(lambda: "/reports/perf-report-" in requests.get(urls["pgperf"] + "/reports/", timeout=5).text,
                   timeout=60, message="a report listed at /reports/")
        work = Path(urls["work"])
        assert work.exists()
        print(f"demo up in {up_after:.0f}s")
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "pgperf demo is up" in output and "everything it created is removed" in output
    assert not Path(urls["work"]).exists()
    assert up_after < 60
