"""Forecasts from a store, in the report and in ``GET /api/v1/forecasts``, on real PostgreSQL.

The store holds ten days of ten-minute samples ending now, each series growing at a known
rate with a little deterministic noise: the disk by 2 GB a day, to 400 GB of 460 GB now (full
in 30 days, 87 % used), the database size alongside it, connections by 2 a day from 40 of 100 (30
days), the oldest transaction ID age by 10 million a day (far from wraparound), and one
statement's mean time by 0.5 ms a day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from psycopg import sql

from helpers import Exporter, make_config
from pgperf.reports import render
from pgperf.reports.model import Report
from pgperf.store import ensure_partitions, migrate
from pgperf.store.rollup import roll_up
from test_reports import schema_validator
from tools.cluster import Cluster

SCHEMA = "forecast_api"
TARGET = "growing-db"
OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789"
DAYS = 10
GB = 1e9
KEYS = {"metric", "target", "subject", "current", "growth_per_day", "limit", "reaches_limit_at", "interval", "points",
        "method", "reason"}

# Noise: a deterministic stand-in for random() (hashtext of the sample's number), in [-1, 1).
_NOISE = "((hashtext(i::text || %(salt)s) %% 1000) / 1000.0)"
_RESOURCES = f"""
INSERT INTO {{s}}.resource_metrics (target, "timestamp", interval_seconds, pg_up, disk_usage_bytes,
    disk_usage_percent, disk_total_bytes, database_size_bytes, connection_count, connection_utilization,
    max_connections, xid_age)
SELECT %(target)s, t, 600, true, (400e9 + 2e9 * d + 1e9 * {_NOISE})::bigint,
       round(((400e9 + 2e9 * d) / 460e9 * 100)::numeric, 2), 460e9::bigint, (300e9 + 2e9 * d + 1e8 * {_NOISE})::bigint, round(40 + 2 * d + 2 * {_NOISE}),
       round(40 + 2 * d), 100, (1e8 + 1e7 * d)::bigint
FROM generate_series(0, %(samples)s - 1) AS i,
     LATERAL (SELECT %(first)s + i * interval '10 minutes' AS t) ts,
     LATERAL (SELECT i / 144.0 - %(days)s AS d) dd
"""
_STATEMENTS = f"""
INSERT INTO {{s}}.query_performance_metrics (target, recorded_at, interval_seconds, query_id, datname, username,
    query_text, calls, total_time, mean_time, min_time, max_time, stddev_time, rows_affected, cache_hits,
    cache_misses)
SELECT %(target)s, t, 600, '777', 'app', 'app', 'SELECT * FROM events WHERE at > $1', 20, round(20 * m, 3),
       round(m, 3), m / 2, m * 2, 0.1, 20, 200, 2
FROM generate_series(0, %(samples)s - 1) AS i,
     LATERAL (SELECT %(first)s + i * interval '10 minutes' AS t) ts,
     LATERAL (SELECT (10 + 0.5 * (i / 144.0) + 0.2 * {_NOISE})::numeric AS m) mm
"""


@pytest.fixture(scope="module")
def growing_store(pg_cluster: Cluster) -> datetime:
    """The store's history; returns the time of its last sample."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    first = now - timedelta(days=DAYS) + timedelta(minutes=1)
    with pg_cluster.connect() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        migrate(conn, SCHEMA)
        ensure_partitions(conn, SCHEMA, [first.date() + timedelta(days=d) for d in range(DAYS + 2)])
        params = {"target": TARGET, "first": first, "samples": DAYS * 144, "days": DAYS, "salt": "r"}
        conn.execute(sql.SQL(_RESOURCES).format(s=sql.Identifier(SCHEMA)), params)
        conn.execute(sql.SQL(_STATEMENTS).format(s=sql.Identifier(SCHEMA)), {**params, "salt": "s"})
        while not all(r.caught_up for r in roll_up(conn, SCHEMA, now=now, targets=(TARGET,))):
            pass
    return first + timedelta(minutes=10 * (DAYS * 144 - 1))


def config_for(pg_cluster: Cluster, **flags: Any) -> Any:
    return make_config(pg_cluster.dsn(), profile="production", target_name=TARGET,
                       store={"enabled": True, "schema": SCHEMA}, api={"token": OPERATOR, "viewer_token": VIEWER},
                       **flags)


@pytest.fixture
def served(pg_cluster: Cluster, growing_store: datetime) -> Iterator[Exporter]:
    exporter = Exporter(config_for(pg_cluster))
    exporter.server.start()  # no sampling: the routes read the store only
    try:
        yield exporter
    finally:
        exporter.server.stop()
        exporter.monitor.stop()


def get(exporter: Exporter, query: str = "", token: str | None = VIEWER) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{exporter.url}/api/v1/forecasts{query}", headers=headers, timeout=60)


def days_after(at: str, since: datetime) -> float:
    return (datetime.fromisoformat(at) - since).total_seconds() / 86400


def test_the_api_answers_each_series_growth_and_date(served: Exporter, growing_store: datetime) -> None:
    assert get(served, token=None).status_code == 401
    answer = get(served)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["target"] == TARGET and set(body) == {"target", "since", "until", "forecasts", "sentences"}
    assert days_after(body["until"], datetime.fromisoformat(body["since"])) == pytest.approx(30, abs=0.01)
    forecasts = {(f["metric"], f["subject"]): f for f in body["forecasts"]}
    assert all(set(f) == KEYS for f in body["forecasts"])
    assert set(forecasts) == {("disk_usage_bytes", None), ("database_size_bytes", None), ("connections", None),
                              ("transaction_id_age", None), ("statement_mean_time_ms", "777")}
    last = growing_store
    disk = forecasts[("disk_usage_bytes", None)]
    assert disk["growth_per_day"] == pytest.approx(2 * GB, rel=0.05) and disk["limit"] == 460 * GB
    assert disk["reaches_limit_at"] is not None and disk["reason"] is None
    low, at, high = (days_after(x, last) for x in (disk["interval"]["low"], disk["reaches_limit_at"],
                                                    disk["interval"]["high"]))
    # The trend reaches 460 GB 30 days after the last sample; the noise (up to 1 GB, half a day's growth)
    # a little earlier.
    assert low <= at <= high and 28.5 <= at <= 30.1 and high - low < 5, (low, at, high)
    size = forecasts[("database_size_bytes", None)]
    assert size["limit"] == pytest.approx(360 * GB, rel=0.01)  # its size plus the disk's free space
    assert days_after(size["reaches_limit_at"], last) == pytest.approx(30, abs=3)
    conns = forecasts[("connections", None)]
    assert conns["limit"] == 100 and conns["growth_per_day"] == pytest.approx(2, rel=0.1)
    assert days_after(conns["reaches_limit_at"], last) == pytest.approx(30, abs=3)
    xid = forecasts[("transaction_id_age", None)]
    assert xid["limit"] == 2**31 - 3_000_000 and xid["growth_per_day"] == pytest.approx(1e7, rel=0.01)
    assert xid["reaches_limit_at"] is None  # 190 days away; the horizon is ten times the 10 days of history
    statement = forecasts[("statement_mean_time_ms", "777")]
    assert statement["growth_per_day"] == pytest.approx(0.5, rel=0.1) and statement["limit"] is None
    assert "60-minute medians" in statement["method"]  # hourly points: the rollups and the last hour's raw rows
    sentences = dict(zip(forecasts, body["sentences"], strict=True))
    assert sentences[("disk_usage_bytes", None)].startswith("disk full in ")
    assert sentences[("transaction_id_age", None)].startswith("transaction ID age grows by 10.0M transaction IDs")
    assert sentences[("statement_mean_time_ms", "777")].startswith("statement 777: mean time grows by 0.5")


def test_the_api_filters_and_refuses_bad_input(served: Exporter) -> None:
    only = get(served, "?metric=connections&since=5d")
    assert only.status_code == 200, (only.status_code, only.text)
    assert [f["metric"] for f in only.json()["forecasts"]] == ["connections"]
    assert days_after(only.json()["until"], datetime.fromisoformat(only.json()["since"])) == pytest.approx(5, abs=0.01)
    statements = get(served, "?metric=statement_mean_time_ms")
    assert [f["subject"] for f in statements.json()["forecasts"]] == ["777"]
    # An old window: the history of its first day, too short for a forecast, says so.
    day = datetime.now(UTC) - timedelta(days=DAYS)
    early = get(served, f"?metric=disk_usage_bytes&since={day:%Y-%m-%dT%H:%M:%SZ}"
                        f"&until={day + timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}")
    assert early.status_code == 200 and "a forecast needs at least 2 days" in early.json()["forecasts"][0]["reason"]
    for query, message in (("?metric=disk", "metric: expected one of disk_usage_bytes"),
                           ("?since=yesterday", "since: expected an RFC 3339 time"),
                           ("?since=1h&until=2h", "must be before until"),
                           ("?since=9999999999d", "out of range"),
                           ("?since=500d", "at most 400 days"),
                           ("?target=nowhere", "unknown target 'nowhere'"),
                           ("?until=", "until: expected an RFC 3339 time")):
        answer = get(served, query)
        assert answer.status_code == 400 and message in answer.json()["error"], (query, answer.text)


def test_without_a_store_the_api_answers_503(pg_cluster: Cluster) -> None:
    exporter = Exporter(make_config(pg_cluster.dsn(), api={"viewer_token": VIEWER}))
    exporter.server.start()
    try:
        answer = get(exporter)
        assert answer.status_code == 503 and "disabled" in answer.json()["error"]
    finally:
        exporter.server.stop()


def test_the_report_holds_the_forecasts_and_the_advice(pg_cluster: Cluster, growing_store: datetime) -> None:
    """The daily report of the last day: its forecasts (validated by the JSON schema), the
    capacity advice with dates (one for the disk, not also the database size's), and the
    sentences of its text and Markdown forms."""
    exporter = Exporter(config_for(pg_cluster))
    service = exporter.monitor.reports
    assert service is not None
    try:
        end = growing_store + timedelta(minutes=1)
        report = service.generate(end - timedelta(days=1), end, kind="on_demand", catalog=False, store=False)
    finally:
        exporter.monitor.stop()
    data = report.to_json()
    schema_validator().validate(data)
    assert all(set(f) == KEYS for f in data["forecasts"]) and len(data["forecast_details"]) == len(data["forecasts"])
    rules = {r["rule"]: r for r in data["recommendations"]}
    assert "capacity_disk" in rules and "capacity_connections" in rules
    assert "capacity_database_size" not in rules and "disk_growth" not in rules  # one recommendation for the disk
    disk = rules["capacity_disk"]
    act_by = datetime.fromisoformat(disk["evidence"]["act_by"])
    assert disk["message"].startswith(f"Grow the disk before {act_by.date().isoformat()}")
    assert disk["severity"] == "medium" and 20 < disk["evidence"]["days_left"] <= 30  # the interval's low end
    pooler = rules["capacity_connections"]["message"]
    assert pooler.startswith("Raise max_connections or add a connection pooler (PgBouncer) before ")
    assert data["resources"]["disk"]["growth_source"] == "database_size_bytes"
    assert data["resources"]["disk"]["days_until_full"] == pytest.approx(30, abs=3)
    lines = render(data, "text").splitlines()
    section = lines.index("🔮 Forecasts (as of the window's end):")
    disk_line = lines[section + 1]
    # The sentence gives the interval in days unless both its ends round to the point's day count
    # (the interval is then under a day wide, as the noise makes it at some hours of the day).
    disk_forecast = next(f for f in data["forecasts"] if f["metric"] == "disk_usage_bytes")
    low_day, high_day = (disk_forecast["interval"][k][:10] for k in ("low", "high"))
    narrow = datetime.fromisoformat(disk_forecast["interval"]["high"]) - datetime.fromisoformat(
        disk_forecast["interval"]["low"]) < timedelta(days=1)
    assert disk_line.startswith("- Disk full in ") and (", between " in disk_line or narrow), disk_line
    assert f"95 % interval {low_day} to {high_day}" in disk_line
    markdown = render(Report.from_json(data), "md")
    assert "## 🔮 Forecasts (as of the window's end)" in markdown and "- Connections reach max_connections (100) in " \
        in markdown


def test_a_disk_used_beyond_its_threshold_that_no_forecast_dates(pg_cluster: Cluster, growing_store: datetime) -> None:
    """With a disk limit far away (reports.forecast.disk_limit_bytes), no capacity advice for the
    disk: the disk used beyond the profile's threshold (85 %) is said by disk_growth instead."""
    config = config_for(pg_cluster, reports={"forecast": {"disk_limit_bytes": 10**15}})
    exporter = Exporter(config)
    service = exporter.monitor.reports
    assert service is not None
    try:
        end = growing_store + timedelta(minutes=1)
        report = service.generate(end - timedelta(days=1), end, kind="on_demand", catalog=False, store=False)
    finally:
        exporter.monitor.stop()
    rules = {r.rule: r for r in report.recommendations}
    assert "capacity_disk" not in rules and "capacity_database_size" not in rules
    assert report.resources.disk.used_percent is not None and report.resources.disk.used_percent >= 85
    assert rules["disk_growth"].message.startswith("Disk space: disk 87.0% used (threshold 85%); growing 1.9 GB/day")
    disk = next(f for f in report.forecasts if f.metric == "disk_usage_bytes")
    assert disk.limit == 10**15 and disk.reaches_limit_at is None
