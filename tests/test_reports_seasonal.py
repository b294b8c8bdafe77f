"""Seasonal anomaly baselines through the store: a nightly batch is normal, the same load in the
afternoon is not.

Fourteen days of five-minute samples are written to a real store: CPU around 20 % with a
batch at 90 % from 02:00 to 02:30 every night, and a statement taking about 5 ms whose
nightly run at 02:00 takes 500 ms; on the last day, at 15:05, CPU at 80 % and the statement
at 300 ms, once. The daily report of the last day, with the 13 days before it as its
baseline, flags the 15:05 CPU sample and the 15:00 hour of the statement, each against the
same hour of the other days, and nothing at 02:00. The same report with only its own day as
baseline (the global baseline alone) flags the batch instead.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from psycopg import sql

from helpers import make_config
from pgperf.reports import ReportService
from pgperf.reports.model import Report
from pgperf.store import StoreClient, ensure_partitions, migrate
from pgperf.store.rollup import roll_up
from tools.cluster import Cluster

SCHEMA = "report_seasonal"
TARGET = "nightly-db"
FIRST = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
DAYS = 14
WINDOW = (FIRST + timedelta(days=DAYS - 1), FIRST + timedelta(days=DAYS))
AFTERNOON = WINDOW[0] + timedelta(hours=15, minutes=5)

_RESOURCES = """
INSERT INTO {s}.resource_metrics (target, "timestamp", interval_seconds, pg_up, cpu_usage_percent,
    memory_usage_percent, connection_count, connection_utilization, max_connections)
SELECT %(target)s, t, 300, true,
       CASE WHEN t = %(afternoon)s THEN 80
            WHEN extract(hour FROM t AT TIME ZONE 'UTC') = 2 AND extract(minute FROM t AT TIME ZONE 'UTC') < 30 THEN 90
            ELSE 20 + (i %% 5) * 0.5 END,
       50, 20 + i %% 3, 20 + i %% 3, 100
FROM generate_series(0, %(samples)s - 1) AS i, LATERAL (SELECT %(first)s + i * interval '5 minutes' AS t) ts
"""

_STATEMENTS = """
INSERT INTO {s}.query_performance_metrics (target, recorded_at, interval_seconds, query_id, datname, username,
    query_text, calls, total_time, mean_time, min_time, max_time, stddev_time, rows_affected, cache_hits,
    cache_misses)
SELECT %(target)s, t, 300, '4242', 'app', 'app', 'SELECT * FROM orders WHERE placed_at > $1', 10, 10 * m, m, m / 2,
       m * 2, m / 10, 10, 100, 1
FROM generate_series(0, %(samples)s - 1) AS i, LATERAL (SELECT %(first)s + i * interval '5 minutes' AS t) ts,
     LATERAL (SELECT CASE WHEN t = %(afternoon)s THEN 300.0
                          WHEN extract(hour FROM t AT TIME ZONE 'UTC') = 2
                               AND extract(minute FROM t AT TIME ZONE 'UTC') < 30 THEN 500.0
                          ELSE 5.0 + (i %% 4) * 0.1 END AS m) mm
"""


@pytest.fixture(scope="module")
def nightly_store(pg_cluster: Cluster) -> str:
    with pg_cluster.connect() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        migrate(conn, SCHEMA)
        ensure_partitions(conn, SCHEMA, [date(2026, 3, 1) + timedelta(days=d) for d in range(DAYS + 2)])
        params = {"target": TARGET, "first": FIRST, "samples": DAYS * 288, "afternoon": AFTERNOON}
        s = sql.Identifier(SCHEMA)
        conn.execute(sql.SQL(_RESOURCES).format(s=s), params)
        conn.execute(sql.SQL(_STATEMENTS).format(s=s), params)
        # The hourly rollups, as the store writer's maintenance makes them (48 hours a run).
        while not all(r.caught_up for r in roll_up(conn, SCHEMA, now=WINDOW[1], targets=(TARGET,))):
            pass
    return SCHEMA


def daily_report(pg_cluster: Cluster, schema: str, baseline_days: float) -> Report:
    config = make_config(pg_cluster.dsn(), profile="production", target_name=TARGET,
                         store={"enabled": True, "schema": schema}, reports={"baseline_days": baseline_days})
    client = StoreClient(config, pool_size=1)
    try:
        return ReportService(config, client).generate(*WINDOW, TARGET, "daily", catalog=False, store=False)
    finally:
        client.close()


def flagged(report: Report) -> list[tuple[str, datetime | None, str, str | None]]:
    return sorted((a.kind, a.at, a.baseline_kind, a.flagged_by) for a in report.anomalies)


def test_the_nightly_batch_is_normal_and_the_afternoon_spike_is_not(pg_cluster: Cluster, nightly_store: str) -> None:
    report = daily_report(pg_cluster, nightly_store, baseline_days=DAYS - 1)
    assert flagged(report) == [
        ("cpu", AFTERNOON, "hour_of_day", "same hour of day over 14 days"),
        ("query_performance", AFTERNOON.replace(minute=0), "hour_of_day", "same hour of day over 14 days"),
    ]
    spike = next(a for a in report.anomalies if a.kind == "query_performance")
    assert spike.subject == "4242" and spike.observed == 300.0
    assert spike.baseline == 5.3  # the highest interval mean of the 15:00 hours of the other 13 days
    assert spike.evidence["resolution"] == "hour" and spike.evidence["calls_at_peak"] == 120
    cpu = next(a for a in report.anomalies if a.kind == "cpu")
    assert cpu.observed == 80.0 and cpu.baseline == pytest.approx(21, abs=1)
    # The same rows as JSON, and the text renderings, say which baseline flagged each.
    data: dict[str, Any] = report.to_json()
    assert {a["flagged_by"] for a in data["anomalies"]} == {"same hour of day over 14 days"}
    assert data["data_quality"]["anomaly_baseline"]["resolution"] == "hour"


def test_the_global_baseline_alone_flags_the_batch(pg_cluster: Cluster, nightly_store: str) -> None:
    """Without other days to compare with, the window's own day is the baseline: the batch, the
    day's highest CPU and slowest hour, is what stands out."""
    report = daily_report(pg_cluster, nightly_store, baseline_days=0)
    found = flagged(report)
    assert [(kind, at.hour if at else None, baseline) for kind, at, baseline, _ in found] == [
        ("cpu", 2, "global"), ("query_performance", 2, "global")]
    assert [by for *_, by in found] == ["global over 24 hours"] * 2, found
