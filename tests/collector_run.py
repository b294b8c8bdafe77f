"""Helpers for the tests of one collector: run it on a real connection, find its families,
and lint a real scrape of it with ``promtool check metrics``."""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

import psycopg

from helpers import make_config, running_exporter, wait_until
from pgperf.collectors import BY_NAME, CollectContext, CollectorResult, Family
from pgperf.db import detect_server


def run(name: str, conn: psycopg.Connection[Any], *, options: Any = None, settings: dict[str, Any] | None = None,
        databases: tuple[str, ...] | None = None) -> CollectorResult:
    """Run collector *name* once on *conn*, as the sampler would."""
    spec = BY_NAME[name]
    ctx = CollectContext(
        target="test", conn=conn, server=detect_server(conn), options=options or spec.options(),
        previous=None, previous_at=None, now=time.time(), settings=settings or {}, databases=databases,
    )
    return spec.collect(ctx)


def family(result: CollectorResult, name: str) -> Family:
    for fam in result.families:
        if fam.name == name:
            return fam
    raise AssertionError(f"{name} not in {[f.name for f in result.families]}")


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
    from pgperf.collectors import REGISTRY

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
