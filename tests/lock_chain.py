"""A real blocking chain on the test server: an idle transaction holding a lock, a session
waiting for it, and a session queued behind the waiter."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from helpers import wait_until
from tools.cluster import Cluster


@contextmanager
def lock_chain(cluster: Cluster, table: str = "chain_probe") -> Iterator[dict[str, int]]:
    """Inside: the root (idle in transaction, holding ACCESS SHARE on *table*), a session
    waiting for ACCESS EXCLUSIVE behind it and a reader queued behind that one. Yields their
    process IDs by role; everything is released on exit."""
    cluster.execute(f"CREATE TABLE IF NOT EXISTS {table} (i int)")
    root = cluster.connect()
    root.autocommit = False
    root.execute(f"SELECT * FROM {table}")  # now idle in transaction, holding the lock
    pids = {"root": root.info.backend_pid}
    errors: list[BaseException] = []

    def wait(role: str, sql: str) -> None:
        try:
            with cluster.connect() as conn:
                pids[role] = conn.info.backend_pid
                conn.execute("SET statement_timeout = '60s'")
                with conn.transaction():
                    conn.execute(sql)
        except psycopg.errors.QueryCanceled as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wait, args=("waiter", f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))]
    threads[0].start()

    def waiting(count: int) -> Any:
        rows = cluster.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        return rows[0][0] >= count

    try:
        wait_until(lambda: waiting(1), message="the first lock wait")
        threads.append(threading.Thread(target=wait, args=("reader", f"SELECT count(*) FROM {table}")))
        threads[1].start()
        wait_until(lambda: waiting(2), message="the second lock wait")
        yield pids
    finally:
        root.rollback()  # releases the chain: the waiter, then the reader, go through
        root.close()
        for t in threads:
            t.join(30)
    assert not errors, errors
