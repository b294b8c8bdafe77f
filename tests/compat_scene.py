"""A PostgreSQL in the states that dashboards and rules written for postgres_exporter look
at, for the compatibility tests: under load, with a streaming standby on a replication
slot (and an idle slot), WAL archived, a table never vacuumed, a bloated table, the
invalid ``_ccnew`` index a failed ``REINDEX CONCURRENTLY`` leaves, and a csvlog log file.

The standby's slot is named the way repmgr names them (``repmgr_slot_<n>``), because the
mixin's slot rule selects such names; the standby sends hot-standby feedback, so the slot
holds back an ``xmin``, as a repmgr standby's does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg

from helpers import wait_until
from tools.cluster import Cluster

APP_DB = "app"
SLOT = "repmgr_slot_1"

SETTINGS = {
    "archive_mode": "on",
    "archive_command": "'true'",  # every WAL file "archived" at once: the archiver's ages exist
    "max_slot_wal_keep_size": "'1GB'",  # safe_wal_size is NULL while unlimited
    "autovacuum_naptime": "'1s'",
    # A log pgperf can read errors from (collector log_errors).
    "logging_collector": "on",
    "log_destination": "'stderr,csvlog'",
    "log_directory": "'log'",
}


@dataclass
class Scene:
    primary: Cluster
    standby: Cluster


def _prepare(primary: Cluster) -> None:
    primary.execute(f"CREATE DATABASE {APP_DB}")
    with primary.connect(APP_DB) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("CREATE TABLE never_vacuumed (id int) WITH (autovacuum_enabled = off)")
        conn.execute("INSERT INTO never_vacuumed SELECT generate_series(1, 100)")
        # Half the rows deleted and never vacuumed: a table and a b-tree index with bloat.
        conn.execute("CREATE TABLE bloated (id int PRIMARY KEY, pad text) WITH (autovacuum_enabled = off)")
        conn.execute("INSERT INTO bloated SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")
        conn.execute("DELETE FROM bloated WHERE id % 2 = 0")
        conn.execute("ANALYZE bloated")
        conn.execute("CREATE TABLE reindexed (id int)")
        conn.execute("CREATE INDEX reindexed_idx ON reindexed (id)")
    _failed_reindex(primary)
    primary.execute(f"SELECT pg_create_physical_replication_slot('{SLOT}')")
    primary.execute("SELECT pg_create_physical_replication_slot('idle_slot', true)")


def _failed_reindex(primary: Cluster) -> None:
    """REINDEX CONCURRENTLY waits for a writer's transaction after creating its new index
    and is cancelled by its statement timeout there: ``reindexed_idx_ccnew`` stays, invalid."""
    with primary.connect(APP_DB) as writer, primary.connect(APP_DB) as admin:
        writer.autocommit = False
        writer.execute("INSERT INTO reindexed VALUES (1)")
        admin.execute("SET statement_timeout = '1s'")
        try:
            admin.execute("REINDEX INDEX CONCURRENTLY reindexed_idx")
        except psycopg.errors.QueryCanceled:
            pass
        writer.rollback()
    left = primary.execute("SELECT count(*) FROM pg_class WHERE relname = 'reindexed_idx_ccnew'", APP_DB)
    assert left[0][0] == 1, "the failed REINDEX CONCURRENTLY left no _ccnew index"


@contextlib.contextmanager
def scene(make_cluster: Callable[..., Cluster]) -> Iterator[Scene]:
    """The primary (load running in ``app``) and its standby, until the block ends."""
    primary = make_cluster(settings=SETTINGS)
    _prepare(primary)
    standby = primary.standby(slot=SLOT, application_name="standby1")
    try:
        with open(standby.data / "postgresql.auto.conf", "a") as f:
            f.write("hot_standby_feedback = on\n")
        standby.reload()
        primary.execute("SELECT pg_switch_wal()")
        with primary.pgbench(clients=2, rate=20, dbname=APP_DB):
            wait_until(lambda: primary.execute(
                f"SELECT xmin IS NOT NULL AND active FROM pg_replication_slots WHERE slot_name = '{SLOT}'")[0][0],
                timeout=30, message="standby streaming from its slot with hot-standby feedback")
            wait_until(lambda: primary.execute("SELECT archived_count > 0 FROM pg_stat_archiver")[0][0],
                       timeout=30, message="a WAL file archived")
            yield Scene(primary, standby)
    finally:
        standby.destroy()


@contextlib.contextmanager
def slow_vacuum(cluster: Cluster, dbname: str = APP_DB) -> Iterator[None]:
    """A VACUUM crawling through a table (cost-based delay) while inside."""
    with cluster.connect(dbname) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS crawled AS SELECT g AS id, repeat('y', 100) AS pad "
                     "FROM generate_series(1, 200000) g")
        conn.execute("DELETE FROM crawled WHERE id % 3 = 0")
    pid: list[int] = []

    def run() -> None:
        with cluster.connect(dbname) as conn:
            pid.append(conn.info.backend_pid)
            conn.execute("SET vacuum_cost_delay = '100ms'")
            conn.execute("SET vacuum_cost_limit = 1")
            with contextlib.suppress(psycopg.errors.QueryCanceled):
                conn.execute("VACUUM crawled")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: cluster.execute("SELECT count(*) FROM pg_stat_progress_vacuum WHERE relid = "
                                           "'crawled'::regclass", dbname)[0][0] > 0,
                   timeout=30, message="the VACUUM under way")
        yield
    finally:
        if pid:
            cluster.execute("SELECT pg_cancel_backend(%s)", params=(pid[0],))
        thread.join(30)


def statement_timeout(cluster: Cluster, dbname: str = APP_DB) -> None:
    """One statement cancelled by its statement timeout (an error in the server log)."""
    with cluster.connect(dbname) as conn:
        conn.execute("SET statement_timeout = '50ms'")
        with contextlib.suppress(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(1)")
