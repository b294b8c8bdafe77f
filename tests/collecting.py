"""Running one collector once against a real connection, for the tests in tests/collectors/."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from pgperf.collectors import BY_NAME, CollectContext, CollectorResult, TextCache
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
