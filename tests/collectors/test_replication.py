"""The replication collector on a real primary and streaming standby, then after promotion."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from collecting import run
from helpers import make_config, wait_until
from pgperf.collectors import CollectorResult
from pgperf.collectors.replication import replica_lag
from pgperf.sampling import TargetSampler
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors


def collect(cluster: Cluster) -> CollectorResult:
    with cluster.connect() as conn:
        return run("replication", conn)[0]


def value(result: CollectorResult, name: str, **labels: str) -> float | None:
    for fam in result.families:
        if fam.name == name:
            return fam.value(**labels)
    raise AssertionError(f"no family {name}")


@pytest.fixture
def pair(make_cluster: Callable[..., Cluster]) -> Iterator[tuple[Cluster, Cluster]]:
    primary = make_cluster()
    primary.execute("SELECT pg_create_physical_replication_slot('standby1')")
    primary.execute("CREATE TABLE replicated (id int)")
    standby = primary.standby(slot="standby1", application_name="standby1")
    try:
        yield primary, standby
    finally:
        standby.destroy()


def every_collector_succeeds(cluster: Cluster) -> None:
    """A read-only standby: every collector works there too (statements, wal, checkpointer ...)."""
    config = make_config(cluster.dsn())
    sampler = TargetSampler(config.resolved_targets()[0], config)
    sampler.open()
    try:
        snap: Any = sampler.sample()
        assert snap.up
        failed = {s.name: s.error or s.disabled for s in snap.statuses if not s.success}
        assert not failed, failed
        assert snap.family("pg_replication_is_replica").samples[0][1] == 1
    finally:
        sampler.close()


def caught_up(primary: Cluster) -> bool:
    rows = primary.execute(
        "SELECT state = 'streaming' AND replay_lsn = pg_current_wal_lsn() FROM pg_stat_replication"
        " WHERE application_name = 'standby1'")
    return bool(rows and rows[0][0])


def test_replica_lag_rules() -> None:
    assert replica_lag(False, None, 1234.0) == 0.0  # primary (also after promotion)
    assert replica_lag(True, 0.0, 3600.0) == 0.0  # caught up: an idle primary is not lag
    assert replica_lag(True, 8192.0, 12.5) == 12.5  # received but not replayed
    assert replica_lag(True, None, 7.0) == 7.0  # no WAL receiver: age of the last replay
    assert replica_lag(True, 8192.0, None) is None  # nothing replayed yet: unknown


def test_primary_standby_slots_and_promotion(pair: tuple[Cluster, Cluster]) -> None:
    primary, standby = pair
    primary.execute("INSERT INTO replicated VALUES (1)")
    wait_until(lambda: caught_up(primary), message="standby streaming and caught up")

    # An idle primary: lag 0; its standby listed with its lags; the slot active.
    on_primary = collect(primary)
    assert value(on_primary, "pg_replication_is_replica") == 0
    assert value(on_primary, "pg_replication_lag_seconds") == 0
    who = {"application_name": "standby1", "client_addr": "127.0.0.1", "state": "streaming"}
    for lag in ("write", "flush", "replay"):
        seconds = value(on_primary, f"pg_stat_replication_{lag}_lag_seconds", **who)
        assert seconds is not None and 0 <= seconds < 5
    assert value(on_primary, "pg_stat_replication_replay_lag_bytes", **who) == 0
    slot = {"slot_name": "standby1", "slot_type": "physical", "database": ""}
    assert value(on_primary, "pg_replication_slot_active", **slot) == 1
    assert value(on_primary, "pg_replication_slot_slot_is_active", slot_name="standby1", slot_type="physical") == 1
    retained = value(on_primary, "pg_replication_slot_retained_bytes", **slot)
    assert retained is not None and retained >= 0
    # postgres_exporter 0.20's names and labels, and the legacy aliases.
    assert value(on_primary, "pg_replication_last_replay_seconds") == 0  # nothing replayed on a primary
    sender = {**who, "slot_name": "standby1"}
    assert value(on_primary, "pg_stat_replication_pg_wal_lsn_diff", **sender) == 0
    assert value(on_primary, "pg_stat_replication_pg_xlog_location_diff", **sender) == 0
    assert (value(on_primary, "pg_stat_replication_pg_current_wal_lsn_bytes", **sender) or 0) > 0
    assert value(on_primary, "pg_replication_slots_active", slot_name="standby1", database="") == 1
    diff = value(on_primary, "pg_replication_slots_pg_wal_lsn_diff", slot_name="standby1")
    assert diff is not None and diff >= 0
    physical = {"slot_name": "standby1", "slot_type": "physical"}
    assert value(on_primary, "pg_replication_slots_slot_is_active", **physical) == 1
    assert value(on_primary, "pg_replication_slots_slot_confirmed_flush_lsn", **physical) == 0  # NULL read as 0/0
    assert value(on_primary, "pg_replication_slots_wal_status", **physical, wal_status="reserved") == 1
    assert value(on_primary, "pg_replication_slots_slot_current_wal_lsn", **physical) == value(
        on_primary, "pg_replication_slot_slot_current_wal_lsn", **physical)
    assert value(on_primary, "pg_replication_lag") == 0
    assert value(on_primary, "pg_replication_slots_xmin_age", **slot) is None  # no hot_standby_feedback: no xmin

    # An idle, caught-up standby: lag 0, and it stays 0 while nothing happens on the primary.
    time.sleep(1.2)
    on_standby = collect(standby)
    assert value(on_standby, "pg_replication_is_replica") == 1
    assert value(on_standby, "pg_replication_lag_seconds") == 0
    assert value(on_standby, "pg_replication_lag_bytes") == 0
    assert (value(on_standby, "pg_replication_last_replay_seconds") or 0) >= 1.0  # the age, lag or not
    every_collector_succeeds(standby)

    # Replay paused while the primary writes: the standby is behind, in seconds and bytes.
    standby.execute("SELECT pg_wal_replay_pause()")
    primary.execute("SELECT pg_create_physical_replication_slot('idle_slot', true)")
    primary.execute("INSERT INTO replicated SELECT generate_series(1, 20000)")
    primary.execute("SELECT pg_switch_wal()")
    behind = wait_until(
        lambda: (r := collect(standby)) and (value(r, "pg_replication_lag_bytes") or 0) > 0 and r,
        message="WAL received but not replayed")
    assert (value(behind, "pg_replication_lag_seconds") or 0) > 1.0
    lagging = wait_until(
        lambda: (r := collect(primary))
        and (value(r, "pg_stat_replication_replay_lag_bytes", **who) or 0) > 0 and r,
        message="replay lag in bytes on the primary")
    idle_slot = {"slot_name": "idle_slot", "slot_type": "physical", "database": ""}
    assert value(lagging, "pg_replication_slot_active", **idle_slot) == 0
    assert (value(lagging, "pg_replication_slot_retained_bytes", **idle_slot) or 0) > 0
    standby.execute("SELECT pg_wal_replay_resume()")
    wait_until(lambda: caught_up(primary), message="standby caught up again")
    assert value(collect(standby), "pg_replication_lag_seconds") == 0

    # Promoted: a primary now, lag 0 although its last replayed transaction is old.
    standby.execute("SELECT pg_promote(true, 30)")
    promoted = collect(standby)
    assert value(promoted, "pg_replication_is_replica") == 0
    assert value(promoted, "pg_replication_lag_seconds") == 0
