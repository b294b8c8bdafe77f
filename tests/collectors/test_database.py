"""pg_stat_database and pg_stat_database_conflicts (the database collector)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from collecting import family, run
from pgperf.collectors.database import DatabaseStats

pytestmark = pytest.mark.collectors


def test_database_collector(pg_conn: psycopg.Connection[Any]) -> None:
    # Up to PostgreSQL 14 a statistics collector process receives the counters up to
    # 500 ms after a transaction ends: poll rather than read once.
    deadline = time.monotonic() + 5
    while True:
        result, _ = run("database", pg_conn)
        commits = family(result, "pg_stat_database_xact_commit")
        if (commits.value(datname="postgres") or 0) > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert commits.labels == ("datid", "datname")
    assert (commits.value(datname="postgres") or 0) > 0
    assert family(result, "pg_stat_database_numbackends").type == "gauge"
    assert family(result, "pg_stat_database_blks_hit").type == "counter"
    family(result, "pg_stat_database_conflicts_confl_lock")
    names = {f.name for f in result.families}
    if pg_conn.info.server_version >= 140000:
        assert "pg_stat_database_session_time" in names
    else:
        assert "pg_stat_database_session_time" not in names
    datid = str(pg_conn.execute("SELECT oid FROM pg_database WHERE datname = 'postgres'").fetchone()[0])
    assert isinstance(result.record, DatabaseStats)
    assert result.record.by_datid[datid].xact_commit > 0  # per database (the store sums their changes)


def test_database_null_is_no_sample(pg_conn: psycopg.Connection[Any]) -> None:
    result, _ = run("database", pg_conn)
    # checksum_last_failure is NULL when no failure ever happened: no sample, not 0.
    names = {f.name: f for f in result.families}
    fam = names.get("pg_stat_database_checksum_last_failure")
    assert fam is None or all(v > 0 for _, v in fam.samples)


def test_database_postgres_exporter_families(pg_conn: psycopg.Connection[Any]) -> None:
    """postgres_exporter 0.20's rules: stats_reset 0 when never reset, active time in seconds,
    the conflicts families with its server label."""
    pg_conn.execute("CREATE DATABASE never_reset")
    try:
        result, _ = run("database", pg_conn)
    finally:
        pg_conn.execute("DROP DATABASE never_reset")
    fams = {f.name: f for f in result.families}
    reset = pg_conn.execute("SELECT stats_reset FROM pg_stat_database WHERE datname = 'never_reset'").fetchone()
    if reset is not None and reset[0] is None:  # NULL until the first reset (always so on 15+)
        assert fams["pg_stat_database_stats_reset"].value(datname="never_reset") == 0
    conflicts = fams["pg_stat_database_conflicts_confl_lock"]
    assert conflicts.labels == ("datid", "datname", "server")
    assert conflicts.value(datname="postgres", server=f"127.0.0.1:{pg_conn.info.port}") == 0
    if pg_conn.info.server_version >= 140000:
        millis = fams["pg_stat_database_active_time"].value(datname="postgres")
        seconds = fams["pg_stat_database_active_time_seconds_total"].value(datname="postgres")
        assert millis is not None and seconds is not None and seconds == millis / 1000
    else:
        assert "pg_stat_database_active_time_seconds_total" not in fams


def test_checksum_failures_are_counted_per_database(make_cluster: Any) -> None:
    """A cluster with data checksums and a page corrupted on disk: reading it fails, and
    pg_stat_database_checksum_failures and _checksum_last_failure say so for its database;
    without data checksums neither family has a sample (no checksums, nothing to count)."""
    plain = make_cluster(data_checksums=False)
    with plain.connect() as conn:
        result, _ = run("database", conn)
    names = {f.name: f for f in result.families}
    assert not names["pg_stat_database_checksum_failures"].samples
    assert "pg_stat_database_checksum_last_failure" not in names or \
        not names["pg_stat_database_checksum_last_failure"].samples

    cluster = make_cluster(data_checksums=True)
    cluster.execute("CREATE DATABASE checksummed")
    cluster.execute("CREATE TABLE damaged AS SELECT g AS id, repeat('x', 100) AS filler FROM generate_series(1, 500) g",
                    "checksummed")
    path = cluster.data / cluster.execute("SELECT pg_relation_filepath('damaged')", "checksummed")[0][0]
    cluster.stop()
    with open(path, "r+b") as relation:  # the middle of the first page: tuples, not the header
        relation.seek(4000)
        relation.write(b"\xff" * 64)
    cluster.start()
    with cluster.connect("checksummed") as conn:
        with pytest.raises(psycopg.errors.DataCorrupted):
            conn.execute("SELECT count(*) FROM damaged")
    with cluster.connect() as conn:
        deadline = time.monotonic() + 5
        while True:  # up to 14, the statistics collector receives the failure within 500 ms
            result, _ = run("database", conn)
            failures = family(result, "pg_stat_database_checksum_failures")
            if failures.value(datname="checksummed") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert failures.labels == ("datid", "datname")
    assert failures.value(datname="checksummed") == 1
    assert failures.value(datname="postgres") == 0
    last = family(result, "pg_stat_database_checksum_last_failure")
    assert abs((last.value(datname="checksummed") or 0) - time.time()) < 120
    assert last.value(datname="postgres") is None  # never failed: no sample
