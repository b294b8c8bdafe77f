"""Many databases, many tables, several targets: database-scoped collectors under the
connection cap, the tables limit, per-collector intervals, multi-target serving.

Not version-specific, so not in the ``collectors`` set the version matrix runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from helpers import make_config, parse, running_exporter, value, wait_until
from pgperf.config import Databases, load_config
from pgperf.sampling import ConnectionBudget, Snapshot, TargetSampler
from tools.cluster import Cluster

PGPERF_BACKENDS = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgperf%%'"


class BackendWatcher:
    """Counts pgperf's backends in pg_stat_activity as often as it can, in a thread."""

    def __init__(self, cluster: Cluster) -> None:
        self.conn = psycopg.connect(cluster.dsn(), autocommit=True, application_name="watcher")
        self.peak = 0
        self.readings = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch)

    def _watch(self) -> None:
        while not self._stop.is_set():
            row = self.conn.execute(PGPERF_BACKENDS).fetchone()
            self.peak = max(self.peak, int(row[0]) if row else 0)
            self.readings += 1

    def __enter__(self) -> BackendWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.conn.close()


def sampler_for(dsn: str, **flags: Any) -> TargetSampler:
    config = make_config(dsn, **flags)
    sampler = TargetSampler(config.resolved_targets()[0], config)
    sampler.open()
    return sampler


def served(snap: Snapshot, family: str, label: str = "datname") -> set[str]:
    fam = snap.family(family)
    assert fam is not None, family
    return {labels[fam.labels.index(label)] for labels, _ in fam.samples}


def test_fifty_databases_under_a_cap_of_three(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    # Every database created from template1 inherits its table.
    cluster.execute("CREATE TABLE inherited (id int)", "template1")
    names = [f"app_{i:02d}" for i in range(50)]
    with cluster.connect() as conn:
        for name in names:
            conn.execute(f"CREATE DATABASE {name}")
    sampler = sampler_for(cluster.dsn(), connection={"max_database_connections": 3},
                          collectors={"statements": {"enabled": False}})
    try:
        with BackendWatcher(cluster) as watcher:
            started = time.monotonic()
            snap = sampler.sample()
            elapsed = time.monotonic() - started
            again = sampler.sample()
        assert snap is not None and again is not None and snap.up
        assert watcher.readings > 20, watcher.readings
        assert 1 <= watcher.peak <= 3, watcher.peak
        status = {s.name: s for s in snap.statuses}["tables"]
        assert status.success, status
        assert set(names) <= served(snap, "pg_stat_user_tables_seq_scan")
        assert served(snap, "pgperf_tables") == {*names, "postgres"}
        assert all(snap.databases[name] is None for name in names)
        assert elapsed < 20, elapsed
    finally:
        sampler.close()


def test_ten_thousand_tables_limit_truncation_and_drop(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.execute("CREATE DATABASE many_tables")
    # One DO block, committing every 2000 tables so the lock table does not overflow.
    cluster.execute("""
        DO $$ BEGIN
          FOR i IN 1..10000 LOOP
            EXECUTE format('CREATE TABLE t%s (id int)', i);
            IF i % 2000 = 0 THEN COMMIT; END IF;
          END LOOP;
        END $$""", "many_tables")
    cluster.execute("CREATE TABLE doomed (id int); INSERT INTO doomed SELECT generate_series(1, 100000)", "postgres")
    cluster.execute("VACUUM doomed", "postgres")
    sampler = sampler_for(cluster.dsn(), collectors={"tables": {"limit": 300}, "statements": {"enabled": False}})
    try:
        snap = sampler.sample()
        assert snap is not None
        status = {s.name: s for s in snap.statuses}["tables"]
        assert status.success and status.duration < 3, status  # well inside statement_timeout
        fam: Any = snap.family("pg_stat_user_tables_n_live_tup")
        per_db = [labels for labels, _ in fam.samples if labels[0] == "many_tables"]
        assert len(per_db) == 300
        assert snap.family("pgperf_tables").value(datname="many_tables") == 10000  # type: ignore[union-attr]
        assert snap.family("pgperf_tables_truncated").value(datname="many_tables") == 1  # type: ignore[union-attr]
        assert snap.family("pgperf_tables_truncated").value(datname="postgres") == 0  # type: ignore[union-attr]
        assert fam.value(datname="postgres", relname="doomed") is not None

        cluster.execute("DROP TABLE doomed", "postgres")
        after = sampler.sample()
        assert after is not None
        fam = after.family("pg_stat_user_tables_n_live_tup")
        assert fam.value(datname="postgres", relname="doomed") is None  # gone at the next sample
        size: Any = after.family("pg_stat_user_tables_table_size_bytes")
        assert size.value(relname="doomed") is None
    finally:
        sampler.close()


def test_database_patterns() -> None:
    default = Databases()
    assert default.matches("anything")
    chosen = Databases(include=("app_*", "/^shard_[0-9]+$/"), exclude=("app_tmp*",))
    assert chosen.matches("app_1") and chosen.matches("shard_12")
    assert not chosen.matches("app_tmp_3") and not chosen.matches("shard_x") and not chosen.matches("postgres")
    with pytest.raises(ValueError, match="invalid regular expression"):
        Databases(include=("/[unclosed/",))


def test_include_exclude_select_databases(pg_cluster: Cluster) -> None:
    for name in ("sel_keep", "sel_skip"):
        pg_cluster.execute(f"DROP DATABASE IF EXISTS {name}")
        pg_cluster.execute(f"CREATE DATABASE {name}")
    sampler = sampler_for(pg_cluster.dsn(), databases={"include": ["sel_*"], "exclude": ["/skip$/"]},
                          collectors={"database_size": {"interval": "1ms"}})
    try:
        snap = sampler.sample()
        assert snap is not None
        assert set(snap.databases) == {"sel_keep"}
        assert served(snap, "pgperf_tables") == {"sel_keep"}
        assert served(snap, "pg_database_size_bytes") == {"sel_keep"}
    finally:
        sampler.close()


def test_a_target_selection_replaces_the_top_level_one(pg_cluster: Cluster) -> None:
    for name in ("sel_keep", "sel_skip"):
        pg_cluster.execute(f"DROP DATABASE IF EXISTS {name}")
        pg_cluster.execute(f"CREATE DATABASE {name}")
    config = make_config(None, databases={"include": ["sel_*"]}, targets=[
        {"name": "own", "dsn": pg_cluster.dsn(), "databases": {"include": ["sel_skip", "postgres"]}},
        {"name": "global", "dsn": pg_cluster.dsn()},
    ])
    samplers = {t.name: TargetSampler(t, config) for t in config.resolved_targets()}
    try:
        for sampler in samplers.values():
            sampler.open()
        own, top = samplers["own"].sample(), samplers["global"].sample()
        assert own is not None and top is not None
        assert set(own.databases) == {"sel_skip", "postgres"}
        assert set(top.databases) == {"sel_keep", "sel_skip"}
    finally:
        for sampler in samplers.values():
            sampler.close()


def test_interval_serves_the_last_run_in_between(pg_cluster: Cluster) -> None:
    pg_cluster.execute("DROP DATABASE IF EXISTS interval_new")
    sampler = sampler_for(pg_cluster.dsn(), collectors={"database_size": {"interval": "1h"}})
    try:
        first = sampler.sample()
        pg_cluster.execute("CREATE DATABASE interval_new")
        second = sampler.sample()
        assert first is not None and second is not None
        run1 = {s.name: s for s in first.statuses}["database_size"]
        run2 = {s.name: s for s in second.statuses}["database_size"]
        assert run1.success and run2.success and run2.ran_at == run1.ran_at  # not run again
        assert second.family("pg_database_size_bytes") == first.family("pg_database_size_bytes")
        assert "interval_new" not in served(second, "pg_database_size_bytes")
        assert "interval_new" in served(second, "pgperf_tables")  # collectors without an interval ran
    finally:
        sampler.close()
        pg_cluster.execute("DROP DATABASE IF EXISTS interval_new")


def test_budget_is_shared_without_deadlock() -> None:
    budget = ConnectionBudget(3)
    assert budget.acquire(10) == 3
    assert budget.acquire(2, timeout=0.05) == 0  # none free: gives up after the timeout
    budget.release(3)
    first = budget.acquire(2)
    second = budget.acquire(5, timeout=0.05)  # only one left: below the minimum of two
    assert (first, second) == (2, 0)
    budget.release(first)
    assert budget.in_use == 0
    with pytest.raises(ValueError):
        ConnectionBudget(1)


def test_two_targets_in_one_process(pg_cluster: Cluster, make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    other = make_cluster()
    other.execute("CREATE DATABASE only_on_b")
    config_file = tmp_path / "pgperf.yaml"
    config_file.write_text(yaml.safe_dump({
        "targets": [{"name": "a", "dsn": pg_cluster.dsn()}, {"name": "b", "dsn": other.dsn()}],
        "connection": {"max_database_connections": 2},  # shared by both targets
    }))
    config = load_config(config_file=str(config_file), env={}, flags={
        "profile": "development", "sampling_interval": 1, "store": {"enabled": False}})
    with running_exporter(config) as exporter:
        samples = wait_until(
            lambda: (s := exporter.scrape()) and value(s, "pg_up", target="a") == 1
            and value(s, "pg_up", target="b") == 1 and s,
            message="both targets sampled")
        starts = {labels["target"]: v for labels, v in samples["pg_postmaster_start_time_seconds"]}
        assert set(starts) == {"a", "b"} and starts["a"] != starts["b"]
        assert all("target" in labels for labels, _ in samples["pg_scrape_collector_success"])
        assert value(samples, "pgperf_tables", target="b", datname="only_on_b") is not None
        assert value(samples, "pgperf_tables", target="a", datname="only_on_b") is None
        probe_b = parse(exporter.get("/probe", params={"target": "b"}).text)
        assert value(probe_b, "pg_up") == 1
        assert all("target" not in labels for labels, _ in probe_b["pg_up"])
        assert value(probe_b, "pg_postmaster_start_time_seconds") == starts["b"]
        assert value(probe_b, "pgperf_tables", datname="only_on_b") is not None
        probe_a = parse(exporter.get("/probe", params={"target": "a"}).text)
        assert value(probe_a, "pg_postmaster_start_time_seconds") == starts["a"]
        assert value(probe_a, "pgperf_tables", datname="only_on_b") is None
        assert exporter.get("/probe", params={"target": "postgresql://evil@host/db"}).status_code == 404
