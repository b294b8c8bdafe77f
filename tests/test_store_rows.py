"""What the store keeps per sample from real snapshots: database-wide counter deltas that
survive a dropped database or a per-database reset, network deltas per interface, and the
total database size."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from helpers import make_config, wait_until
from pgperf.collectors.database import DatabaseCounters
from pgperf.collectors.host import HostUsage, network_deltas
from pgperf.sampling import TargetSampler
from pgperf.store import StoreWriter
from pgperf.store.rows import RESOURCE_COLUMNS, BatchBuilder, counter_deltas
from tools.cluster import Cluster

COMMITS = 3000


def commit_many(cluster: Cluster, dbname: str, n: int = COMMITS) -> None:
    with cluster.connect(dbname) as conn:  # autocommit: one transaction per statement
        for _ in range(n):
            conn.execute("SELECT 1")


def commits(cluster: Cluster, dbname: str) -> int:
    rows = cluster.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", params=(dbname,))
    return int(rows[0][0])


@pytest.fixture
def two_databases(pg_cluster: Cluster) -> Iterator[tuple[str, str]]:
    names = ("delta_keep", "delta_drop")
    for name in names:
        pg_cluster.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        pg_cluster.execute(f"CREATE DATABASE {name}")
    try:
        yield names
    finally:
        for name in names:
            pg_cluster.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def sampled(pg_cluster: Cluster, tmp_path: Path) -> tuple[TargetSampler, StoreWriter, Any]:
    config = make_config(pg_cluster.dsn(), store={"enabled": True, "schema": "rows_test",
                                                  "spool_dir": str(tmp_path / "spool")},
                         collectors={"host": {"enabled": False}})
    sampler = TargetSampler(config.resolved_targets()[0], config)
    sampler.open()
    writer = StoreWriter(config)
    return sampler, writer, config


@pytest.mark.parametrize("event", ["drop", "reset"])
def test_a_dropped_or_reset_database_does_not_store_the_cumulative_total(
        pg_cluster: Cluster, two_databases: tuple[str, str], tmp_path: Path, event: str) -> None:
    keep, drop = two_databases
    pg_cluster.execute("DROP SCHEMA IF EXISTS rows_test CASCADE")
    commit_many(pg_cluster, keep)
    commit_many(pg_cluster, drop)
    # Up to PostgreSQL 14 the statistics collector reports counters up to 500 ms later.
    wait_until(lambda: commits(pg_cluster, keep) >= COMMITS and commits(pg_cluster, drop) >= COMMITS,
               message="commits visible")
    sampler, writer, _ = sampled(pg_cluster, tmp_path)
    builder = BatchBuilder()
    try:
        first = builder.build(sampler.sample())
        if event == "drop":
            pg_cluster.execute(f"DROP DATABASE {drop} WITH (FORCE)")
        else:
            with pg_cluster.connect(drop) as conn:
                conn.execute("SELECT pg_stat_reset()")  # resets the counters of this database only
            wait_until(lambda: commits(pg_cluster, drop) < COMMITS, message="reset visible")
        time.sleep(0.6)
        second = builder.build(sampler.sample())
        writer.start()
        writer.submit(first)
        writer.submit(second)
        wait_until(lambda: writer.counters.written == 2, message="both samples written")
    finally:
        writer.stop()
        sampler.close()
    stored = pg_cluster.execute(
        'SELECT xact_commit, blks_hit FROM rows_test.resource_metrics ORDER BY "timestamp"')
    assert stored[0] == (None, None)  # the first sample has no previous one
    delta = stored[1][0]
    # The interval saw a few sampler transactions, nothing like the thousands committed before it
    # (before per-database deltas the whole sum over the remaining databases was stored).
    assert delta is not None and 0 <= delta < COMMITS / 3, delta
    assert stored[1][1] is not None and stored[1][1] >= 0


def test_database_size_is_stored(pg_cluster: Cluster, tmp_path: Path) -> None:
    pg_cluster.execute("DROP SCHEMA IF EXISTS rows_test CASCADE")
    sampler, writer, _ = sampled(pg_cluster, tmp_path)
    builder = BatchBuilder()
    try:
        first = sampler.sample()
        second = sampler.sample()  # within the collector's 5-minute interval: its last value is served
        batches = [builder.build(first), builder.build(second)]
        writer.start()
        for b in batches:
            writer.submit(b)
        wait_until(lambda: writer.counters.written == 2, message="samples written")
    finally:
        writer.stop()
        sampler.close()
    sizes = first.family("pg_database_size_bytes")
    assert sizes is not None
    total = sum(v for _, v in sizes.samples)
    stored = [r[0] for r in pg_cluster.execute(
        'SELECT database_size_bytes FROM rows_test.resource_metrics ORDER BY "timestamp"')]
    assert stored == [total, total] and total > 1024 * 1024


def test_transaction_id_age_is_stored(pg_cluster: Cluster, tmp_path: Path) -> None:
    """resource_metrics.xid_age (migration 007): the oldest database's age(datfrozenxid), as served."""
    pg_cluster.execute("DROP SCHEMA IF EXISTS rows_test CASCADE")
    sampler, writer, _ = sampled(pg_cluster, tmp_path)
    try:
        snap = sampler.sample()
        writer.start()
        writer.submit(BatchBuilder().build(snap))
        wait_until(lambda: writer.counters.written == 1, message="sample written")
    finally:
        writer.stop()
        sampler.close()
    ages = snap.family("pg_database_xid_age")
    assert ages is not None
    highest = max(v for _, v in ages.samples)
    stored = pg_cluster.execute('SELECT xid_age FROM rows_test.resource_metrics')
    assert stored == [(int(highest),)] and highest > 0


# -- the delta rules, on canned values ---------------------------------------------------------


def test_counter_deltas_per_database() -> None:
    before = {"1": DatabaseCounters(xact_commit=100, blks_hit=7), "2": DatabaseCounters(xact_commit=5000),
              "3": DatabaseCounters(xact_commit=40)}
    now = {"1": DatabaseCounters(xact_commit=110, blks_hit=9),  # +10, +2
           "3": DatabaseCounters(xact_commit=4),  # reset: counts from zero, +4
           "4": DatabaseCounters(xact_commit=700)}  # new database: its history is not this interval's, 0
    # "2" was dropped: it drops out (the old sum-based code stored 814, the whole total)
    assert counter_deltas(now, before) == DatabaseCounters(xact_commit=14, blks_hit=2)


def test_every_record_field_is_a_resource_column() -> None:
    """The store copies HostUsage and DatabaseCounters field by field into resource_metrics."""
    assert "xid_age" in RESOURCE_COLUMNS  # WraparoundAges.xid_age
    for record in (HostUsage, DatabaseCounters):
        assert {f.name for f in fields(record)} <= set(RESOURCE_COLUMNS), record


def test_network_deltas_per_interface() -> None:
    before = {"eth0": (1000, 2000), "veth1": (10**9, 10**9)}
    now = {"eth0": (1500, 2600), "lo": (70, 70)}  # veth1 removed, lo first seen
    assert network_deltas(now, before) == (500, 600)
    assert network_deltas({"eth0": (30, 40)}, {"eth0": (1000, 2000)}) == (30, 40)  # counter restarted
