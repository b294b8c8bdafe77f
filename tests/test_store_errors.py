"""The store writer under errors: unreadable spool files, a full disk, a store that refuses
writes (privileges, read-only), the rejected/ bound, /healthz, and `pgperf migrate`
without rights on the schema. Real PostgreSQL; a few spool checks need none."""

from __future__ import annotations

import errno
import gzip
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import make_config, running_exporter, wait_until
from pgperf.store import QueryRow, ResourceRow, SampleBatch, Spool, StoreSessions, StoreWriter
from tools.cluster import Cluster, free_port


def store_config(monitored: str, store_dsn: str, spool: Path, **store: Any) -> Any:
    return make_config(monitored, store={"enabled": True, "dsn": store_dsn, "spool_dir": str(spool), **store})


def batch(seq: int, at: float | None = None, target: str = "t", text: str | None = None) -> SampleBatch:
    """A sample of *target*; with *text*, one statement row of that text."""
    at = time.time() + seq if at is None else at
    queries = [] if text is None else [QueryRow(target, at, 1.0, "1", "db", "u", text, 1, 1.0, 1.0, 1.0, 1.0, 0.0,
                                                0, 0, 0)]
    return SampleBatch(target, seq, at, ResourceRow(target, at, pg_up=True), queries)


def families(writer: StoreWriter) -> dict[str, float]:
    return {f.name: f.samples[0][1] for f in writer.families() if f.samples and not f.labels}


def write_garbage(spool_dir: Path) -> list[Path]:
    """A truncated gzip file and one from 'another version' (other JSON keys), both older
    than anything a writer appends now."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    truncated = spool_dir / f"{1:020d}-t-{1:012d}.json.gz"
    truncated.write_bytes(gzip.compress(batch(1).to_json())[:20])
    foreign = spool_dir / f"{2:020d}-t-{2:012d}.json.gz"
    foreign.write_bytes(gzip.compress(b'{"format": 9, "rows": []}'))
    return [truncated, foreign]


# -- the spool alone ---------------------------------------------------------------------


def test_unreadable_spool_files_are_moved_aside(tmp_path: Path) -> None:
    bad = write_garbage(tmp_path)
    spool = Spool(tmp_path, 1_000_000)
    spool.append(batch(3))
    item = spool.oldest()
    assert item is not None and item[1].seq == 3
    assert spool.unreadable == 2
    assert sorted(p.name for p in (tmp_path / "rejected").iterdir()) == sorted(p.name for p in bad)
    assert len(spool) == 1
    spool.close()


def test_a_spool_file_dropped_meanwhile_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1_000_000)
    first, second = spool.append(batch(1)), spool.append(batch(2))
    first.unlink()  # what append() does to the oldest file at the bound, under the reader's feet
    item = spool.oldest()
    assert item is not None and item[0] == second
    assert spool.reject(first) is False  # gone: nothing to keep, and no exception
    spool.close()


def test_rejected_directory_is_bounded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path, 1_000_000, rejected_max_bytes=1024)
    big = os.urandom(300).hex()  # ~ 350 bytes compressed
    paths = [spool.append(batch(i, 1000.0 + i, text=big)) for i in range(8)]
    with caplog.at_level(logging.WARNING, logger="pgperf.store.spool"):
        for p in paths:
            assert spool.reject(p)
    kept = sorted((tmp_path / "rejected").iterdir())
    assert sum(p.stat().st_size for p in kept) <= 1024
    assert kept[-1].name == paths[-1].name  # the newest stay
    assert spool.dropped == len(paths) - len(kept) > 0
    assert "removed the oldest rejected sample" in caplog.text
    spool.close()


# -- the writer ----------------------------------------------------------------------------


@pytest.fixture
def store_db(pg_cluster: Cluster) -> Iterator[str]:
    """A database of its own for one writer (settings and grants of the test stay there)."""
    name = "store_errors"
    pg_cluster.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    pg_cluster.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        pg_cluster.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_writer_survives_unreadable_spool_files(pg_cluster: Cluster, store_db: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    write_garbage(spool_dir)
    writer = StoreWriter(store_config(pg_cluster.dsn(), pg_cluster.dsn(dbname=store_db), spool_dir))
    writer.start()
    try:
        writer.submit(batch(3))
        wait_until(lambda: writer.counters.written == 1, message="the good sample written")
        assert writer.alive
        assert families(writer)["pgperf_store_rejected_samples_total"] == 2
        writer.submit(batch(4))
        wait_until(lambda: writer.counters.written == 2, message="the writer still writes")
    finally:
        writer.stop()
    assert len(list((spool_dir / "rejected").glob("*.json.gz"))) == 2


def test_full_disk_while_spooling_counts_drops_and_keeps_the_writer(tmp_path: Path, monkeypatch: Any,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", connection={"connect_timeout": 1},
                         store={"enabled": True, "spool_dir": str(tmp_path / "spool")})
    writer = StoreWriter(config)

    def full(_batch: SampleBatch) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer.spool, "append", full)
    writer.start()
    try:
        writer.submit(batch(1))  # taken from memory, the store is down: to the spool, which is full
        wait_until(lambda: families(writer)["pgperf_store_spool_dropped_samples_total"] == 1, message="one drop")
        writer.submit(batch(2))  # store known down: straight to the (full) spool, in the caller's thread
        assert families(writer)["pgperf_store_spool_dropped_samples_total"] == 2
        assert writer.alive
        assert families(writer)["pgperf_store_up"] == 0
    finally:
        writer.stop(timeout=1)
    assert caplog.text.count("cannot write to the spool") == 1  # logged once


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_healthz_reports_a_dead_store_writer(pg_cluster: Cluster, store_db: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    config = store_config(pg_cluster.dsn(), pg_cluster.dsn(dbname=store_db), tmp_path / "spool")
    with running_exporter(config) as exporter:
        writer = exporter.monitor.store
        assert writer is not None
        wait_until(lambda: writer.up, message="the writer connected")
        assert exporter.get("/healthz").status_code == 200

        def die(self: StoreSessions, application_name: str = "") -> Any:
            raise SystemExit  # what no handler catches: the thread ends

        # The next session the writer opens (after its session is ended) ends its thread.
        monkeypatch.setattr(StoreSessions, "connect", die)
        pg_cluster.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE datname = %s AND application_name = 'pgperf-store'", params=(store_db,))
        text = wait_until(lambda: (r := exporter.get("/healthz")).status_code == 503 and r.text,
                          message="/healthz 503")
        assert "store writer thread stopped" in text


@pytest.fixture
def limited_role(pg_cluster: Cluster, store_db: str) -> Iterator[str]:
    role, password = "pgperf_store_writer", "store-writer-secret"
    pg_cluster.execute(f"DROP ROLE IF EXISTS {role}")
    pg_cluster.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    pg_cluster.execute(f"CREATE SCHEMA pgperf AUTHORIZATION {role}", dbname=store_db)
    try:
        yield pg_cluster.dsn(user=role, password=password, dbname=store_db)
    finally:
        pg_cluster.execute(f"DROP DATABASE IF EXISTS {store_db} WITH (FORCE)")
        pg_cluster.execute(f"DROP ROLE IF EXISTS {role}")


def test_permission_denied_keeps_the_sample_and_retries(pg_cluster: Cluster, store_db: str, limited_role: str,
                                                        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = StoreWriter(store_config(pg_cluster.dsn(), limited_role, tmp_path / "spool"))
    writer.start()
    try:
        writer.submit(batch(1))
        wait_until(lambda: writer.counters.written == 1, message="first sample written")
        pg_cluster.execute("REVOKE INSERT ON pgperf.resource_metrics FROM pgperf_store_writer", dbname=store_db)
        writer.submit(batch(2))
        wait_until(lambda: not writer.up, message="store down")
        time.sleep(2 * writer.retry_delay)  # a few retries, still refused
        assert writer.counters.rejected == 0 and writer.counters.written == 1
        assert len(writer.spool) == 1
        assert families(writer)["pgperf_store_up"] == 0
        assert "permission_denied" in caplog.text and "docs/setup-role.sql" in caplog.text
        assert caplog.text.count("refuses writes") == 1  # not once per retry
        pg_cluster.execute("GRANT INSERT ON pgperf.resource_metrics TO pgperf_store_writer", dbname=store_db)
        wait_until(lambda: writer.counters.written == 2 and writer.up, timeout=20, message="written after the grant")
        assert len(writer.spool) == 0 and writer.counters.rejected == 0
    finally:
        writer.stop()


def test_read_only_store_keeps_samples_and_says_why(pg_cluster: Cluster, store_db: str, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    writer = StoreWriter(store_config(pg_cluster.dsn(), pg_cluster.dsn(dbname=store_db), tmp_path / "spool"))
    writer.start()
    try:
        writer.submit(batch(1))
        wait_until(lambda: writer.counters.written == 1, message="first sample written")
        pg_cluster.execute(f"ALTER DATABASE {store_db} SET default_transaction_read_only = on")
        # The writer's session started before: end it, as a failover or restart would.
        pg_cluster.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE datname = %s AND application_name = 'pgperf-store'", params=(store_db,))
        writer.submit(batch(2))
        wait_until(lambda: "refuses writes (read_only)" in caplog.text, message="read_only logged")
        assert "default_transaction_read_only" in caplog.text
        assert families(writer)["pgperf_store_up"] == 0 and writer.counters.rejected == 0
        pg_cluster.execute(f"ALTER DATABASE {store_db} RESET default_transaction_read_only")
        wait_until(lambda: writer.counters.written == 2 and writer.up, timeout=20, message="written when writable")
    finally:
        writer.stop()


def test_migrate_without_rights_says_what_to_do(pg_cluster: Cluster) -> None:
    role, password = "pgperf_no_rights", "no-rights-secret"
    pg_cluster.execute(f"DROP ROLE IF EXISTS {role}")
    pg_cluster.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    pg_cluster.execute(f"REVOKE CREATE ON DATABASE postgres FROM {role}")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPERF_", "PG"))}
        env["PGPERF_STORE_SCHEMA"] = "pgperf_not_mine"
        result = subprocess.run(
            [sys.executable, "-m", "pgperf", "migrate", "--dsn", pg_cluster.dsn(user=role, password=password)],
            capture_output=True, text=True, env=env, timeout=60)
    finally:
        pg_cluster.execute(f"DROP ROLE IF EXISTS {role}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "permission denied" in line]
    assert len(lines) == 1, result.stderr
    assert "pgperf_not_mine" in lines[0] and "docs/setup-role.sql" in lines[0]
    assert f"GRANT CREATE ON DATABASE postgres TO {role}" in lines[0]
    assert password not in result.stderr
