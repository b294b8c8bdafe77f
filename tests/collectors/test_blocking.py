"""The blocking collector: the blocking tree of a real lock wait, and the graph logic on
canned sessions (cycles, several roots, prepared transactions)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from collecting import run_once, samples, scrape_lint
from helpers import wait_until
from lock_chain import lock_chain
from pgperf.collectors.blocking import Session, families, trees
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors


def test_a_real_blocking_chain(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    idle = run_once("blocking", pg_conn)
    assert samples(idle, "pg_blocking_blocked_sessions")[("postgres",)] == 0
    assert samples(idle, "pg_blocking_chain_depth")[("template1",)] == 0  # zero for every database
    with lock_chain(pg_cluster):
        time.sleep(1.1)  # the root's transaction is at least this old
        result = run_once("blocking", pg_conn)
    assert samples(result, "pg_blocking_blocked_sessions")[("postgres",)] == 2
    assert samples(result, "pg_blocking_root_blockers")[("postgres",)] == 1
    assert samples(result, "pg_blocking_idle_root_blockers")[("postgres",)] == 1  # idle in transaction
    assert samples(result, "pg_blocking_chain_depth")[("postgres",)] == 2  # root <- waiter <- reader
    assert samples(result, "pg_blocking_max_tree_sessions")[("postgres",)] == 2
    assert samples(result, "pg_blocking_root_blocker_age_seconds")[("postgres",)] >= 1.0
    assert samples(result, "pg_blocking_blocked_sessions")[("template1",)] == 0
    after = run_once("blocking", pg_conn)
    assert samples(after, "pg_blocking_blocked_sessions")[("postgres",)] == 0
    assert samples(after, "pg_blocking_root_blocker_age_seconds")[("postgres",)] == 0


def test_prepared_transaction_as_root(make_cluster: Any) -> None:
    cluster = make_cluster(settings={"max_prepared_transactions": 2})
    cluster.execute("CREATE TABLE prep (i int)")
    with cluster.connect() as holder:
        holder.autocommit = False
        holder.execute("LOCK TABLE prep IN ACCESS EXCLUSIVE MODE")
        holder.execute("PREPARE TRANSACTION 'pgperf_test'")  # the lock outlives the session
    with cluster.connect() as waiter, cluster.connect() as conn:
        waiter.execute("SET statement_timeout = '30s'")

        def read() -> None:
            try:
                waiter.execute("SELECT * FROM prep")
            except psycopg.errors.QueryCanceled:
                pass

        thread = threading.Thread(target=read)
        thread.start()
        wait_until(lambda: cluster.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")[0][0], message="lock wait")
        result = run_once("blocking", conn)
        conn.execute("ROLLBACK PREPARED 'pgperf_test'")
        thread.join(30)
    assert samples(result, "pg_blocking_root_blockers")[("postgres",)] == 1
    assert samples(result, "pg_blocking_idle_root_blockers")[("postgres",)] == 1
    assert samples(result, "pg_blocking_blocked_sessions")[("postgres",)] == 1


def _s(pid: int, blocked_by: tuple[int, ...] = (), state: str = "active", db: str = "app", age: float = 1.0) -> Session:
    return Session(pid, db, state, age, blocked_by)


def test_trees_with_two_roots_shared_waiter_and_a_cycle() -> None:
    sessions = {s.pid: s for s in (
        _s(1, state="idle in transaction", age=50), _s(2, age=10),  # two roots
        _s(3, (1,)), _s(4, (3,)), _s(5, (4, 2)),  # 1 <- 3 <- 4 <- 5, and 2 <- 5
        _s(7, (8,), db="other"), _s(8, (7,), db="other"),  # a cycle: blocked, no root
    )}
    found, blocked = trees(sessions)
    by_root = {t.root.pid: t for t in found}
    assert set(by_root) == {1, 2}
    assert (by_root[1].depth, by_root[1].sessions) == (3, 3)
    assert (by_root[2].depth, by_root[2].sessions) == (1, 1)
    assert len(blocked) == 5
    fams = {f.name: dict(f.samples) for f in families(sessions, ["app", "other", "idle"])}
    assert fams["pg_blocking_blocked_sessions"] == {("app",): 3, ("other",): 2, ("idle",): 0}
    assert fams["pg_blocking_root_blockers"][("app",)] == 2
    assert fams["pg_blocking_root_blockers"][("other",)] == 0
    assert fams["pg_blocking_idle_root_blockers"][("app",)] == 1
    assert fams["pg_blocking_root_blocker_age_seconds"][("app",)] == 50
    assert fams["pg_blocking_chain_depth"][("app",)] == 3
    assert fams["pg_blocking_max_tree_sessions"][("app",)] == 3


def test_a_blocker_that_ended_meanwhile_is_no_root() -> None:
    found, blocked = trees({3: _s(3, (99,))})
    assert found == [] and len(blocked) == 1


def test_scrape_is_lint_clean(pg_cluster: Cluster) -> None:
    with lock_chain(pg_cluster, "chain_lint"):
        _, problems = scrape_lint(pg_cluster.dsn(), "blocking", 'pg_blocking_chain_depth{datname="postgres"} 2.0')
    assert not [p for p in problems if p.startswith("pg_blocking")], problems
