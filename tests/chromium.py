"""Headless Chromium for page tests: load a page, let its scripts run, return the DOM and
the console messages (Debian's ``chromium``; CI installs it through the Makefile)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--enable-logging=stderr", "--v=0")
_CONSOLE = re.compile(r':CONSOLE[:(]\d+\)?\] "(?P<message>.*)", source: (?P<source>.*)$')


@dataclass(frozen=True)
class Page:
    dom: str
    console: list[str]

    @property
    def script_errors(self) -> list[str]:
        return [m for m in self.console if "Uncaught" in m or "Error" in m]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise AssertionError("chromium is not installed: `make deps` installs it (Debian package chromium)")
    return path


def load(url_or_path: str | Path, *, budget_ms: int = 15000, timeout: float = 120) -> Page:
    """Render the page (virtual time lets timers and animations finish) and dump its DOM."""
    url = url_or_path if isinstance(url_or_path, str) else url_or_path.resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="pgperf-chromium-") as profile:
        proc = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                               "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
    console = [m["message"] for m in (_CONSOLE.search(line) for line in proc.stderr.splitlines()) if m]
    if proc.returncode != 0 or not proc.stdout.strip():
        raise AssertionError(f"chromium failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return Page(proc.stdout, console)
