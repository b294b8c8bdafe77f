"""Reports apply the thresholds their target was sampled with: ``pgperf serve`` records
them in ``target_settings`` when it starts and reloads, and a report — from the command
line, the API or the schedule — applies those in force in its window, whatever profile
the configuration building it has. Real PostgreSQL, real ``pgperf`` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from helpers import make_config, running_exporter, wait_until
from pgperf.store import StoreClient
from pgperf.store.target_settings import SettingsRecorder, in_window, record
from tools.cluster import Cluster

TOKEN = "settings-token-0123456789"


@pytest.fixture
def schema(pg_cluster: Cluster, request: pytest.FixtureRequest) -> str:
    name = "ts_" + request.node.name.removeprefix("test_")[:40]
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    return name


def rows(cluster: Cluster, schema: str) -> list[tuple[Any, ...]]:
    return cluster.execute(f"SELECT target, profile, (thresholds->>'slow_query_time_ms')::float FROM "
                           f"{schema}.target_settings ORDER BY valid_from")


def cli_report(cluster: Cluster, schema: str, start: datetime, end: datetime, *extra: str) -> dict[str, Any]:
    """``pgperf report`` as a DBA runs it: no --profile (so production's thresholds), the
    same store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPERF_", "PG"))}
    proc = subprocess.run(
        [sys.executable, "-m", "pgperf", "report", "--dsn", cluster.dsn(), "--from", start.isoformat(), "--to",
         end.isoformat(), "--format", "json", "--no-save", *extra],
        capture_output=True, text=True, timeout=120, env={**env, "PGPERF_STORE_SCHEMA": schema})
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_recording_adds_a_row_only_for_a_change(pg_cluster: Cluster, schema: str) -> None:
    config = make_config(pg_cluster.dsn(), store={"enabled": True, "schema": schema})
    client = StoreClient(config)
    client.migrate()
    t0 = datetime(2024, 3, 1, tzinfo=UTC)
    dev = config.thresholds.model_dump(mode="json")
    try:
        with client.connection() as conn:
            assert record(conn, schema, "db1", "development", dev, t0)
            assert not record(conn, schema, "db1", "development", dev, t0 + timedelta(hours=1))  # a restart
            assert record(conn, schema, "db1", "development", {**dev, "slow_query_time_ms": 800},
                          t0 + timedelta(hours=2))
            assert record(conn, schema, "db1", "production", dev, t0 + timedelta(hours=3))
            assert record(conn, schema, "db2", "development", dev, t0 + timedelta(hours=3))

            def window(hours: tuple[float, float]) -> list[tuple[str, float]]:
                found = in_window(conn, schema, "db1", t0 + timedelta(hours=hours[0]), t0 + timedelta(hours=hours[1]))
                return [(r.profile, r.thresholds["slow_query_time_ms"]) for r in found]

            assert window((-2, -1)) == []  # before anything was recorded
            assert window((0.5, 1.5)) == [("development", 500)]  # the one in force at the start
            assert window((1, 2.5)) == [("development", 500), ("development", 800)]
            assert window((2, 3)) == [("development", 800)]  # a change at the end is not in the window
            assert window((5, 6)) == [("production", 500)]
    finally:
        client.close()


def test_a_report_applies_the_thresholds_its_target_was_sampled_with(pg_cluster: Cluster, schema: str,
                                                                     tmp_path: Path) -> None:
    """serve samples with the development profile (slow statements: 500 ms); pgperf report
    with no --profile defaulted to production's 2000 ms. It now applies 500 ms and says so;
    a window from before pgperf recorded anything applies its own and says that; a window
    over a reload applies the latest, as the API's report does."""
    before_serve = datetime.now(UTC) - timedelta(hours=2)
    config = make_config(pg_cluster.dsn(), sampling_interval=1, api={"token": TOKEN},
                         store={"enabled": True, "schema": schema, "spool_dir": str(tmp_path / "spool")})
    with running_exporter(config) as exporter:
        target = config.resolved_targets()[0].name
        assert wait_until(lambda: rows(pg_cluster, schema) if pg_cluster.execute(
            f"SELECT to_regclass('{schema}.target_settings')")[0][0] else None, timeout=30,
            message="the thresholds recorded at start") == [(target, "development", 500.0)]
        started = datetime.now(UTC)
        time.sleep(2)  # samples under the development thresholds

        report = cli_report(pg_cluster, schema, started - timedelta(minutes=1), datetime.now(UTC))
        assert report["settings"]["slow_query_time_ms"] == 500
        assert report["queries"]["slow_statements"]["threshold_ms"] == 500
        assert any(n.startswith(f"The thresholds of profile development were applied, with which pgperf serve "
                                f"samples target {target}") and n.endswith("not this configuration's (profile "
                                                                           "production).")
                   for n in report["data_quality"]["notes"]), report["data_quality"]["notes"]

        old = cli_report(pg_cluster, schema, before_serve - timedelta(hours=1), before_serve)
        assert old["settings"]["slow_query_time_ms"] == 2000
        assert f"No thresholds are recorded for target {target} in or before this window (pgperf serve records " \
               "them when it starts and reloads): this configuration's, profile production, were applied." \
               in old["data_quality"]["notes"]

        # A reload that changes a threshold adds a row; a report over both applies the latest.
        exporter.app.apply_config(make_config(pg_cluster.dsn(), sampling_interval=1, api={"token": TOKEN},
                                              thresholds={"slow_query_time_ms": 750},
                                              store={"enabled": True, "schema": schema,
                                                     "spool_dir": str(tmp_path / "spool")}))
        wait_until(lambda: len(rows(pg_cluster, schema)) == 2, timeout=30, message="the reload's thresholds recorded")
        assert rows(pg_cluster, schema)[1] == (target, "development", 750.0)
        exporter.app.apply_config(exporter.app.config)  # the same again: no new row
        time.sleep(1)
        assert len(rows(pg_cluster, schema)) == 2
        end = datetime.now(UTC) + timedelta(seconds=1)
        spanning = cli_report(pg_cluster, schema, started - timedelta(minutes=1), end)
        assert spanning["settings"]["slow_query_time_ms"] == 750
        assert any(n.startswith(f"The thresholds target {target} was sampled with changed in this window (profile "
                                "development from ") and n.endswith("the latest, profile development, were applied.")
                   for n in spanning["data_quality"]["notes"]), spanning["data_quality"]["notes"]
        api = requests.post(exporter.url + "/api/v1/reports", headers={"Authorization": f"Bearer {TOKEN}"},
                            json={"from": (started - timedelta(minutes=1)).isoformat(), "to": end.isoformat()},
                            timeout=60)
        assert api.status_code == 201, api.text
        assert api.json()["settings"]["slow_query_time_ms"] == 750


def test_thresholds_noted_while_the_store_is_down_are_recorded_when_it_returns(
        make_cluster: Any, tmp_path: Path) -> None:
    store = make_cluster()
    config = make_config(store.dsn(), store={"enabled": True, "schema": "ts_down"})
    client = StoreClient(config)
    recorder = SettingsRecorder(client, retry=0.2)
    noted_at = datetime.now(UTC) - timedelta(minutes=5)
    try:
        store.stop()
        recorder.note(config, at=noted_at)
        recorder.start()
        time.sleep(1)
        store.start()
        found = wait_until(lambda: store.execute("SELECT to_regclass('ts_down.target_settings')")[0][0]
                           and store.execute("SELECT profile, valid_from FROM ts_down.target_settings"),
                           timeout=30, message="the thresholds recorded once the store is back")
        assert found == [("development", noted_at)]  # with the time they were noted, not written
    finally:
        recorder.stop()
        client.close()
