"""pg_locks (the locks collector)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from collecting import family, run
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors


def test_locks_counts_and_blocked_sessions(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    pg_conn.execute("DROP TABLE IF EXISTS lock_target")
    pg_conn.execute("CREATE TABLE lock_target (id int)")
    with pg_cluster.connect() as holder, pg_cluster.connect() as waiter:
        holder.autocommit = False
        holder.execute("LOCK TABLE lock_target IN ACCESS EXCLUSIVE MODE")
        blocked = threading.Thread(target=lambda: waiter.execute("SELECT count(*) FROM lock_target"))
        blocked.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            result, _ = run("locks", pg_conn)
            if family(result, "pg_locks_blocked_sessions").value(datname="postgres"):
                break
            time.sleep(0.1)
        time.sleep(0.3)
        result, _ = run("locks", pg_conn)
        holder.rollback()
        blocked.join()
    count = family(result, "pg_locks_count")
    assert count.labels == ("datname", "mode")
    assert (count.value(datname="postgres", mode="accessexclusivelock") or 0) >= 1
    assert count.value(datname="template1", mode="sireadlock") == 0  # a zero for every database and mode
    assert len({labels[1] for labels, _ in count.samples}) == 9
    assert family(result, "pg_locks_blocked_sessions").value(datname="postgres") == 1
    assert family(result, "pg_locks_blocked_sessions").value(datname="template1") == 0
    assert (family(result, "pg_locks_longest_wait_seconds").value(datname="postgres") or 0) >= 0.3
