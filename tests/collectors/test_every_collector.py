"""Every collector of the registry in one sample, under load."""

from __future__ import annotations

import time
from typing import Any

import pytest

from helpers import make_config
from pgperf import collectors
from pgperf.sampling import TargetSampler
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors


def test_every_collector_succeeds_under_pgbench(pg_cluster: Cluster, pgbench: Any) -> None:
    config = make_config(pg_cluster.dsn())
    sampler = TargetSampler(config.resolved_targets()[0], config)
    sampler.open()
    try:
        with pgbench(clients=2):
            deadline = time.monotonic() + 8
            while True:  # the statistics of pgbench's sessions reach the views within seconds
                snap = sampler.sample()
                assert snap is not None and snap.up
                updates = snap.family("pg_stat_user_tables_n_tup_upd")
                if (updates and updates.value(relname="pgbench_accounts")) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        statuses = {s.name: s for s in snap.statuses}
        # Every collector on by default (log_errors, off by default, has its own test).
        default_on = [spec for spec in collectors.REGISTRY if spec.options().enabled is not False]
        assert set(statuses) == {spec.name for spec in default_on}
        failed = {n: s.error or s.disabled for n, s in statuses.items() if not s.success}
        assert not failed, failed
        names = {f.name for f in snap.families}
        assert snap.server is not None
        for spec in default_on:  # every collector served something this version has
            expected = {m.name for m in spec.metrics if m.exists_on(snap.server.version_num)}
            assert spec.dynamic_metrics or not expected or names & expected, spec.name
        assert (snap.family("pg_stat_user_tables_n_tup_upd").value(relname="pgbench_accounts") or 0) > 0
    finally:
        sampler.close()
