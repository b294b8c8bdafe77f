"""Running one collector once against a real connection, for the tests in tests/collectors/."""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

import psycopg

from helpers import make_config, running_exporter, wait_until
from pgperf.collectors import BY_NAME, REGISTRY, CollectContext, CollectorResult, Family, TextCache
from pgperf.config import Thresholds, load_profile
from pgperf.db import detect_server

#: The development profile's thresholds, what a collector counts against unless a test says otherwise.
THRESHOLDS = Thresholds(**load_profile("development")["thresholds"])


def run(name: str, conn: psycopg.Connection[Any] | None, *, previous: tuple[float, Any] | None = None,
        options: Any = None, thresholds: dict[str, float] | None = None,
        databases: tuple[str, ...] | None = None) -> tuple[CollectorResult, float]:
    """The result of collector *name* on *conn*, and the time it ran at (the next call's
    *previous* is ``(that time, result.state)``). *thresholds* overrides some of THRESHOLDS."""
    spec = BY_NAME[name]
    now = time.time()
    ctx = CollectContext(
        target="test", conn=conn, server=detect_server(conn) if conn is not None else None,
        options=options or spec.options(), previous=previous[1] if previous else None,
        previous_at=previous[0] if previous else None, now=now,
        thresholds=THRESHOLDS.model_copy(update=thresholds or {}), text_cache=TextCache(), databases=databases,
    )
    return spec.collect(ctx), now


def family(result: CollectorResult, name: str) -> Any:
    """The family *name* of *result*; fails the test when it is absent."""
    for fam in result.families:
        if fam.name == name:
            return fam
    raise AssertionError(f"{name} not in {[f.name for f in result.families]}")


def run_once(name: str, conn: psycopg.Connection[Any], *, options: Any = None,
             databases: tuple[str, ...] | None = None) -> CollectorResult:
    """The result of collector *name* run once on *conn* with no previous sample."""
    return run(name, conn, options=options, databases=databases)[0]


def samples(result: CollectorResult, name: str) -> dict[tuple[str, ...], float]:
    """The samples of family *name*, keyed by label values."""
    return dict(family(result, name).samples)


def labelled(fam: Family, **labels: str) -> list[float]:
    """Values of the samples of *fam* whose labels include *labels*."""
    return [v for values, v in fam.samples
            if all(values[fam.labels.index(k)] == want for k, want in labels.items())]


def scrape_lint(dsn: str, collector: str, wait_for: str, **options: Any) -> tuple[str, list[str]]:
    """Serve only *collector* (and pgperf's own families) from a real exporter, wait until
    *wait_for* is served, and return the scrape and what ``promtool check metrics`` says."""
    enabled = {spec.name: {"enabled": spec.name == collector} for spec in REGISTRY}
    enabled[collector].update(options)
    config = make_config(dsn, collectors=enabled)
    with running_exporter(config) as exporter:
        wait_until(lambda: wait_for in exporter.get("/metrics").text, timeout=30, message=wait_for)
        text = exporter.get("/metrics").text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install the Debian package prometheus (make deps)"
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return text, problems
