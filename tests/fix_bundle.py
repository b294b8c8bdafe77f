"""pytest plugin: real Alertmanager (and Prometheus) processes for the bundle's tests.

Each process binds 127.0.0.1 on a free port, keeps its data in a temporary directory
and is stopped by the fixture that started it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tools.cluster import free_port

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager") or "prometheus-alertmanager"
PROMETHEUS = shutil.which("prometheus") or "prometheus"


class Process:
    """A server process with a base URL, its log, and a readiness wait."""

    def __init__(self, args: list[str], url: str, ready_path: str, workdir: Path) -> None:
        self.url = url
        self.workdir = workdir
        self.log_path = workdir / "process.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{args[0]} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(url + ready_path, timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{args[0]} not ready within 30s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_alertmanager(config: Path, workdir: Path) -> Process:
    port = free_port()
    args = [ALERTMANAGER, f"--config.file={config}", f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"]
    return Process(args, f"http://127.0.0.1:{port}", "/-/ready", workdir)


def start_prometheus(config: Path, workdir: Path) -> Process:
    port = free_port()
    args = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", "--web.enable-lifecycle"]
    return Process(args, f"http://127.0.0.1:{port}", "/-/ready", workdir)


@pytest.fixture
def bundle_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pgperf-bundle-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def alertmanager_factory(bundle_dir: Path) -> Iterator[Callable[[str], Process]]:
    """``start(yaml_text)`` runs an Alertmanager with that configuration."""
    started: list[Process] = []

    def start(config_text: str) -> Process:
        workdir = bundle_dir / f"alertmanager-{len(started)}"
        workdir.mkdir()
        config = workdir / "alertmanager.yml"
        config.write_text(config_text)
        process = start_alertmanager(config, workdir)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def prometheus_factory(bundle_dir: Path) -> Iterator[Callable[..., Process]]:
    """``start(config_text, files={name: text})`` runs a Prometheus with that configuration."""
    started: list[Process] = []

    def start(config_text: str, files: dict[str, str] | None = None) -> Process:
        workdir = bundle_dir / f"prometheus-{len(started)}"
        workdir.mkdir()
        for name, text in (files or {}).items():
            path = workdir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        config = workdir / "prometheus.yml"
        config.write_text(config_text)
        process = start_prometheus(config, workdir)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def post_alerts(alertmanager: Process, alerts: list[dict[str, Any]]) -> None:
    response = requests.post(alertmanager.url + "/api/v2/alerts", json=alerts, timeout=5)
    assert response.status_code == 200, f"Alertmanager refused the alerts: {response.status_code} {response.text}"
