"""The progress collector: real VACUUM, ANALYZE, CREATE INDEX and base backup operations,
slowed down or held up so that they can be watched."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import pq

from collecting import family, labelled, run_once, samples, scrape_lint
from helpers import wait_until
from pgperf.collectors.progress import VACUUM, ProgressOptions, command_families
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors

# pgperf's own sessions pin the search path: relations are named with their schema.
PGPERF_PATH = "SET search_path = pg_catalog, pg_temp"


def _table(cluster: Cluster, name: str, rows: int = 100000) -> None:
    cluster.execute(f"DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id int, pad text); "
                    f"INSERT INTO {name} SELECT i, repeat('x', 50) FROM generate_series(1, {rows}) i; "
                    f"DELETE FROM {name} WHERE id % 3 = 0")


@contextmanager
def running(cluster: Cluster, sql: str, *settings: str) -> Iterator[list[int]]:
    """Run *sql* in a thread for as long as inside (it is cancelled on exit); yields its pid."""
    pid: list[int] = []
    ready = threading.Event()

    def work() -> None:
        with cluster.connect() as conn:
            pid.append(conn.info.backend_pid)
            for setting in settings:
                conn.execute(setting)
            ready.set()
            try:
                conn.execute(sql)
            except psycopg.errors.QueryCanceled:
                pass

    thread = threading.Thread(target=work)
    thread.start()
    ready.wait(10)
    try:
        yield pid
    finally:
        cluster.execute("SELECT pg_cancel_backend(%s)", params=(pid[0],))
        thread.join(30)


SLOW = ("SET vacuum_cost_delay = '50ms'", "SET vacuum_cost_limit = 1", "SET statement_timeout = '120s'")


def _until(conn: psycopg.Connection[Any], check: Callable[[Any], bool], **options: Any) -> Any:
    result: list[Any] = []

    def probe() -> bool:
        result[:] = [run_once("progress", conn, options=ProgressOptions(**options))]
        return check(result[0])

    wait_until(probe, timeout=30, message="the operation in the progress view")
    return result[0]


def test_vacuum_progress_and_truncation(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    _table(pg_cluster, "vac_probe_a")
    _table(pg_cluster, "vac_probe_b")
    pg_conn.execute(PGPERF_PATH)
    with running(pg_cluster, "VACUUM vac_probe_a", *SLOW), running(pg_cluster, "VACUUM vac_probe_b", *SLOW):
        result = _until(pg_conn, lambda r: samples(r, "pgperf_progress_operations")[("vacuum",)] == 2
                        and samples(r, "pg_stat_progress_vacuum_heap_blks_scanned"), limit=1)
    assert samples(result, "pgperf_progress_truncated") == {("vacuum",): 1, ("analyze",): 0, ("create_index",): 0,
                                                             ("basebackup",): 0}
    heap = family(result, "pg_stat_progress_vacuum_heap_blks")
    assert heap.labels == ("datname", "relname") and len(heap.samples) == 1  # limit 1
    (datname, relname), total = heap.samples[0]
    assert datname == "postgres" and relname in ("public.vac_probe_a", "public.vac_probe_b") and total > 100
    phases = {k[2]: v for k, v in samples(result, "pg_stat_progress_vacuum_phase").items()}
    assert len(phases) == 7 and phases["scanning heap"] == 1 and sum(phases.values()) == 1
    elapsed = family(result, "pg_stat_progress_vacuum_elapsed_seconds")
    assert elapsed.samples[0][0] == ("postgres", relname, "manual") and elapsed.samples[0][1] >= 0
    names = {f.name for f in result.families}
    assert "pg_stat_progress_vacuum_num_dead_tuples" in names  # num_dead_item_ids from 17 on
    if pg_conn.info.server_version >= 170000:
        assert {"pg_stat_progress_vacuum_dead_tuple_bytes", "pg_stat_progress_vacuum_indexes"} <= names
        assert "pg_stat_progress_vacuum_max_dead_tuples" not in names
    else:
        assert "pg_stat_progress_vacuum_max_dead_tuples" in names
        assert "pg_stat_progress_vacuum_dead_tuple_bytes" not in names
    assert ("pg_stat_progress_vacuum_delay_seconds" in names) == (pg_conn.info.server_version >= 180000)


def test_vacuum_in_another_database_is_named_by_oid(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    if not pg_cluster.execute("SELECT 1 FROM pg_database WHERE datname = 'progress_other'"):
        pg_cluster.execute("CREATE DATABASE progress_other")
    pg_cluster.execute("DROP TABLE IF EXISTS far; CREATE TABLE far AS SELECT i FROM generate_series(1, 100000) i; "
                       "DELETE FROM far WHERE i % 2 = 0", dbname="progress_other")
    oid = pg_cluster.execute("SELECT 'far'::regclass::oid", dbname="progress_other")[0][0]
    with psycopg.connect(pg_cluster.dsn(dbname="progress_other"), autocommit=True) as far:
        pid = far.info.backend_pid
        for setting in SLOW:
            far.execute(setting)
        thread = threading.Thread(target=lambda: _quietly(far, "VACUUM far"))
        thread.start()
        try:
            result = _until(pg_conn, lambda r: bool(family(r, "pg_stat_progress_vacuum_heap_blks").samples))
        finally:
            pg_cluster.execute("SELECT pg_cancel_backend(%s)", params=(pid,))
            thread.join(30)
    assert labelled(family(result, "pg_stat_progress_vacuum_heap_blks"), datname="progress_other", relname=str(oid))


def _quietly(conn: psycopg.Connection[Any], sql: str) -> None:
    try:
        conn.execute(sql)
    except psycopg.errors.QueryCanceled:
        pass


def test_analyze_progress(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    _table(pg_cluster, "analyze_probe", rows=300000)
    pg_conn.execute(PGPERF_PATH)
    with running(pg_cluster, "ANALYZE analyze_probe", *SLOW):
        result = _until(pg_conn, lambda r: bool(family(r, "pg_stat_progress_analyze_sample_blks").samples))
    blocks = samples(result, "pg_stat_progress_analyze_sample_blks")
    assert blocks[("postgres", "public.analyze_probe")] > 0
    phases = {k[2]: v for k, v in samples(result, "pg_stat_progress_analyze_phase").items()}
    assert phases["acquiring sample rows"] == 1 and sum(phases.values()) == 1
    assert labelled(family(result, "pg_stat_progress_analyze_elapsed_seconds"), kind="manual")


def test_create_index_concurrently_waiting_for_writers(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    _table(pg_cluster, "cic_probe", rows=1000)
    pg_conn.execute(PGPERF_PATH)
    writer = pg_cluster.connect()
    writer.autocommit = False
    writer.execute("INSERT INTO cic_probe VALUES (0, 'open writer')")  # holds ROW EXCLUSIVE until commit
    try:
        with running(pg_cluster, "CREATE INDEX CONCURRENTLY cic_probe_id ON cic_probe (id)",
                     "SET statement_timeout = '120s'") as pid:
            result = _until(pg_conn, lambda r: bool(family(r, "pg_stat_progress_create_index_lockers").samples))
            writer.rollback()
    finally:
        writer.close()
        pg_cluster.execute("DROP INDEX IF EXISTS cic_probe_id")
    phase = family(result, "pg_stat_progress_create_index_phase")
    assert phase.labels == ("datname", "relname", "indexrelname", "pid", "command", "phase")
    (labels, value), = phase.samples
    assert labels[:2] == ("postgres", "public.cic_probe") and labels[3] == str(pid[0])
    assert labels[4] == "CREATE INDEX CONCURRENTLY" and labels[5] == "waiting for writers before build"
    assert value == 1
    assert labels[2] == "public.cic_probe_id"  # the concurrent build creates the index first
    assert samples(result, "pg_stat_progress_create_index_lockers")[labels[:4]] == 1


def _start_base_backup(cluster: Cluster) -> pq.PGconn:
    """Start BASE_BACKUP on a replication connection and leave it streaming at the slowest
    rate (psycopg has no client for it: the protocol is driven through libpq directly)."""
    conn = pq.PGconn.connect(f"host=127.0.0.1 port={cluster.port} user=postgres replication=true".encode())
    assert conn.status == pq.ConnStatus.OK, conn.error_message
    # PROGRESS: estimate the size first (backup_total); MAX_RATE in kB/s, the minimum.
    if cluster.major >= 15:
        conn.send_query(b"BASE_BACKUP (PROGRESS, CHECKPOINT 'fast', MAX_RATE 32)")
    else:
        conn.send_query(b"BASE_BACKUP PROGRESS FAST MAX_RATE 32")
    return conn


def test_base_backup_progress(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.allow_replication()
    backup = _start_base_backup(cluster)
    try:
        with cluster.connect() as conn:
            result = _until(conn, lambda r: any(
                k[1] == "streaming database files" and v for k, v in samples(r, "pg_stat_progress_basebackup_phase").items()))
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_progress_basebackup")
    finally:
        backup.finish()
    phase = family(result, "pg_stat_progress_basebackup_phase")
    assert phase.labels == ("pid", "phase") and len(phase.samples) == 6
    streamed = family(result, "pg_stat_progress_basebackup_streamed_bytes")
    assert streamed.samples and streamed.samples[0][1] >= 0
    assert family(result, "pg_stat_progress_basebackup_backup_bytes").samples[0][1] > 1e6  # estimated
    assert samples(result, "pgperf_progress_operations")[("basebackup",)] == 1


def test_repeated_labels_are_served_once() -> None:
    row = {"pid": 1, "datname": "app", "relname": "", "phase": "scanning heap", "elapsed": 3.0, "kind": "manual",
           **{f"c{i}": 10 for i in range(len(VACUUM.columns))}}
    families = {f.name: f for f in command_families(VACUUM, [row, {**row, "pid": 2}], 160000)}
    assert len(families["pg_stat_progress_vacuum_heap_blks"].samples) == 1  # no duplicate series
    assert len(families["pg_stat_progress_vacuum_phase"].samples) == 7


def test_scrape_is_lint_clean(pg_cluster: Cluster) -> None:
    _table(pg_cluster, "lint_probe")
    with running(pg_cluster, "VACUUM lint_probe", *SLOW):
        text, problems = scrape_lint(pg_cluster.dsn(), "progress", "pg_stat_progress_vacuum_heap_blks{")
    compat = {m.name for m in (VACUUM.phase, *(c.metric for c in VACUUM.columns)) if m.compat}
    assert not [p for p in problems if p.startswith(("pg_stat_progress", "pgperf_progress"))
                and p.split()[0] not in compat], problems
    assert 'relname="public.lint_probe"' in text
