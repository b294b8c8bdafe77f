"""The wait_events collector: busy sessions by wait event, under pgbench and a real lock wait."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from collecting import family, labelled, run_once, samples, scrape_lint
from lock_chain import lock_chain
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors


def test_lock_waits_are_counted_by_database_and_event(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    with lock_chain(pg_cluster, "wait_probe"):
        result = run_once("wait_events", pg_conn)
    waits = samples(result, "pg_wait_event_sessions")
    assert waits[("postgres", "Lock", "relation")] == 2
    # Idle clients (Client/ClientRead) and idle background processes (Activity) are left out;
    # the idle-in-transaction root of the chain as well.
    assert not [k for k in waits if k[1] in ("Activity", "Client")], waits
    assert family(result, "pg_wait_event_sessions").labels == ("datname", "wait_event_type", "wait_event")


def test_running_sessions_count_as_cpu(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    def spin() -> None:
        with pg_cluster.connect() as conn:  # a busy loop with no wait event
            conn.execute("SELECT count(*) FROM generate_series(1, 30000000)")

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        cpu = 0.0
        while time.monotonic() < deadline and not cpu:
            cpu = samples(run_once("wait_events", pg_conn), "pg_wait_event_cpu_sessions")[("postgres",)]
            time.sleep(0.05)
    finally:
        thread.join()
    assert cpu >= 1
    after = run_once("wait_events", pg_conn)
    assert samples(after, "pg_wait_event_cpu_sessions")[("template1",)] == 0  # every database has a sample


def test_under_pgbench(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any], pgbench: Any) -> None:
    seen: set[str] = set()
    with pgbench(clients=4):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(seen) < 2:
            result = run_once("wait_events", pg_conn)
            fam = family(result, "pg_wait_event_sessions")
            busy = sum(labelled(fam, datname="postgres")) + samples(result, "pg_wait_event_cpu_sessions")[("postgres",)]
            if busy:
                seen.add("busy")
            if any(v > 0 for _, v in fam.samples):
                seen.add("waiting")
            time.sleep(0.05)
    assert seen == {"busy", "waiting"}


def test_scrape_is_lint_clean(pg_cluster: Cluster) -> None:
    _, problems = scrape_lint(pg_cluster.dsn(), "wait_events", "pg_wait_event_cpu_sessions{")
    assert not [p for p in problems if p.startswith("pg_wait_event")], problems
