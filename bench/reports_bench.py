"""Report figures: a report over 30 days of one-minute samples with 1,000 active statements.

The data is made in SQL with generate_series on a throwaway PostgreSQL:

* resource_metrics: every one-minute sample of the 30 days (43,200 rows);
* query_performance_metrics (its tables query_samples, query_statements and
  statement_texts): every one-minute sample of the last day (1,000 statements
  each: 1.44 million rows), rolled up into hours by pgperf's own roll_up(), as the store
  writer's hourly maintenance does (the rollup of one hour is timed);
* query_metrics_hourly: the hourly rows of the 29 days before, inserted directly: they are
  what roll_up() makes of those days, and all a report reads of them. Their raw rows
  (~42 million, ~22 GB) would take far longer to generate than the benchmark's budget and
  are not read by a report, so they are not made; the daily partitions exist, empty.

Ten statements spike (50x) in one sample of the last day. Then the report (every part: statements, resources, chart series, alerts, anomalies with
their 7-day baseline, forecasts from 30 days of history, catalog facts) is generated through ReportService and
timed, and the forecasts alone (ReportService.forecasts, what GET /api/v1/forecasts runs).
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pgperf.config import load_config
from pgperf.reports import ReportService
from pgperf.store import StoreClient, ensure_partitions, migrate
from pgperf.store.rollup import roll_up
from tools.cluster import Cluster

SCHEMA = "bench_reports"
TARGET = "bench"

# Statement i: a realistic text (~150-300 characters), a mean time that depends on i, calls per minute.
_TEXT = ("'SELECT t.id, t.created_at, t.amount, u.name FROM table_' || (q %% 60) || ' t JOIN users u ON u.id = t.user_id"
         " WHERE t.created_at BETWEEN $1 AND $2 AND t.status = $3 /* ' || md5(q::text) || repeat(' AND t.col_' ||"
         " (q %% 7) || ' = $4', 1 + q %% 5) || ' */'")

_RESOURCES = f"""
INSERT INTO {SCHEMA}.resource_metrics (target, "timestamp", interval_seconds, pg_up, cpu_usage_percent,
    memory_usage_bytes, memory_usage_percent, disk_usage_bytes, disk_usage_percent, disk_total_bytes,
    network_bytes_sent, network_bytes_received, connection_count, connection_utilization, max_connections,
    database_size_bytes, xact_commit, xact_rollback, deadlocks, blks_hit, blks_read, temp_bytes, statements_reset,
    server_start_time)
SELECT %(target)s, t, %(interval)s, true, 30 + 20 * sin(i / 300.0), 8e9, 50 + (i %% 10), 4e11 + i * 1e5, 40, 1e12,
       1e6, 2e6, 40 + i %% 20, 40 + i %% 20, 100, 3e11 + i * 1e5, 5000, 5, 0, 990000, 10000, 0, false, %(start)s
FROM generate_series(1, %(samples)s) AS i, LATERAL (SELECT %(start)s + i * %(step)s AS t) ts
"""

# Statement samples straight into the tables of migration 005 (INSERT into the view
# query_performance_metrics works too, one row at a time through its trigger).
_STATEMENTS = f"""
WITH s AS (
    INSERT INTO {SCHEMA}.query_statements (target, query_id, datname, username)
    SELECT %(target)s, (10000000000 + q)::text, 'app', 'app_user' FROM generate_series(1, %(statements)s) AS q
)
INSERT INTO {SCHEMA}.statement_texts (target, query_id, query_text)
SELECT %(target)s, (10000000000 + q)::text, {_TEXT} FROM generate_series(1, %(statements)s) AS q
"""

_RAW = f"""
INSERT INTO {SCHEMA}.query_samples (statement_id, recorded_at, interval_seconds, calls, total_time, mean_time,
    min_time, max_time, stddev_time, rows_affected, cache_hits, cache_misses, temp_blocks_written, plan_time,
    spans_reset, is_remainder)
SELECT k.id, t, %(interval)s,
       1 + q %% 50, round(((1 + q %% 50) * m)::numeric, 3), round(m::numeric, 3), round((m / 2)::numeric, 3),
       round((m * 3)::numeric, 3), round((m / 4)::numeric, 3), 1 + q %% 50, (1 + q %% 50) * 20, q %% 3, 0, 0,
       false, false
FROM generate_series(1, %(samples)s) AS i, LATERAL (SELECT %(start)s + i * %(step)s AS t) ts,
     generate_series(1, %(statements)s) AS q
     JOIN {SCHEMA}.query_statements k ON k.target = %(target)s AND k.query_id = (10000000000 + q)::text,
     LATERAL (SELECT (0.05 + (q %% 97) * 0.4) * (1 + 0.1 * sin(i + q))
                     * CASE WHEN i = %(spike_at)s AND q <= 10 THEN 50 ELSE 1 END AS m) mm
"""

_HOURLY = f"""
INSERT INTO {SCHEMA}.query_metrics_hourly (target, hour, query_id, datname, username, query_text, samples, calls,
    total_time, rows_affected, cache_hits, cache_misses, temp_blocks_written, plan_time, peak_mean_time, min_time,
    max_time, spans_reset, is_remainder)
SELECT %(target)s, h, (10000000000 + q)::text, 'app', 'app_user', {_TEXT}, %(per_hour)s,
       %(per_hour)s * (1 + q %% 50), round((%(per_hour)s * (1 + q %% 50) * m)::numeric, 3), %(per_hour)s * (1 + q %% 50),
       %(per_hour)s * (1 + q %% 50) * 20, %(per_hour)s * (q %% 3), 0, 0, round((m * 1.1)::numeric, 3),
       round((m / 2)::numeric, 3), round((m * 3)::numeric, 3), false, false
FROM generate_series(%(first)s::timestamptz, %(last)s::timestamptz, interval '1 hour') AS h,
     generate_series(1, %(statements)s) AS q,
     LATERAL (SELECT 0.05 + (q %% 97) * 0.4 AS m) mm
"""


def _size(cluster: Cluster) -> int:
    return int(cluster.execute(
        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')", params=(SCHEMA,))[0][0] or 0)


def report_over_days(cluster: Cluster, *, days: int, statements: int, interval: int, spool: str,
                     repeats: int = 3) -> dict[str, Any]:
    end = datetime(2026, 2, 1, 0, 30, tzinfo=UTC)  # half an hour into the last day's last hour
    start = end - timedelta(days=days)
    raw_start = end - timedelta(days=1)
    with cluster.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        migrate(conn, SCHEMA)
        ensure_partitions(conn, SCHEMA, [(start + timedelta(days=d)).date() for d in range(days + 2)])
        step = timedelta(seconds=interval)
        t0 = time.perf_counter()
        conn.execute(_RESOURCES, {"target": TARGET, "interval": interval, "start": start, "step": step,
                                  "samples": int(days * 86400 / interval)})
        # Ten statements spike (50x) in one sample, so that the anomaly detector does its whole work.
        conn.execute(_STATEMENTS, {"target": TARGET, "statements": statements})
        conn.execute(_RAW, {"target": TARGET, "interval": interval, "start": raw_start, "step": step,
                            "samples": int(86400 / interval) - 1, "statements": statements,
                            "spike_at": int(43200 / interval)})
        raw_seconds = time.perf_counter() - t0
        first_hour = start.replace(minute=0) + timedelta(hours=1)
        last_rolled = raw_start.replace(minute=0) - timedelta(hours=1)
        t0 = time.perf_counter()
        conn.execute(_HOURLY, {"target": TARGET, "first": first_hour, "last": last_rolled,
                               "per_hour": 3600 // interval, "statements": statements})
        conn.execute(f"INSERT INTO {SCHEMA}.query_rollup_state (target, rolled_until) VALUES (%s, %s)",
                     (TARGET, last_rolled + timedelta(hours=1)))
        hourly_seconds = time.perf_counter() - t0
        # The writer's maintenance runs hourly: leave the last complete hour unrolled, as it may be.
        t0 = time.perf_counter()
        rolled = roll_up(conn, SCHEMA, now=end - timedelta(hours=1), max_hours=48)
        rollup_seconds = time.perf_counter() - t0
        hours_rolled = sum(int((r.end - r.start).total_seconds() // 3600) for r in rolled)
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.query_metrics_hourly")
        conn.execute(f"ANALYZE {SCHEMA}.query_samples")
        conn.execute(f"ANALYZE {SCHEMA}.query_statements")
        conn.execute(f"ANALYZE {SCHEMA}.statement_texts")
        conn.execute(f"ANALYZE {SCHEMA}.resource_metrics")
        counts = conn.execute(f"SELECT (SELECT count(*) FROM {SCHEMA}.query_performance_metrics),"
                              f" (SELECT count(*) FROM {SCHEMA}.query_metrics_hourly),"
                              f" (SELECT count(*) FROM {SCHEMA}.resource_metrics)").fetchone()
    assert counts is not None
    config = load_config(env={}, flags={"profile": "production", "dsn": cluster.dsn(), "target_name": TARGET,
                                        "store": {"schema": SCHEMA, "spool_dir": spool}})
    client = StoreClient(config)
    times, day_times = [], []
    try:
        service = ReportService(config, client)
        report = None
        for _ in range(repeats):
            t0 = time.perf_counter()
            report = service.generate(start, end, kind="on_demand", now=end)
            times.append(time.perf_counter() - t0)
        for _ in range(repeats):
            t0 = time.perf_counter()
            service.generate(end - timedelta(days=1), end, kind="daily", now=end)
            day_times.append(time.perf_counter() - t0)
        # The forecasts alone (what GET /api/v1/forecasts does): a share of each report above.
        forecast_times = []
        made: list[Any] = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            _, _, _, made = service.forecasts(TARGET, since=end - timedelta(days=min(days, 30)), until=end)
            forecast_times.append(time.perf_counter() - t0)
    finally:
        client.close()
    assert report is not None
    return {
        "days": days, "statements": statements, "interval_s": interval, "runs": repeats,
        "raw_query_rows": counts[0], "hourly_rows": counts[1], "resource_rows": counts[2],
        "represented_query_rows": days * statements * int(86400 / interval),
        "generate_raw_seconds": round(raw_seconds, 1), "generate_hourly_seconds": round(hourly_seconds, 1),
        "rollup_hours": hours_rolled, "rollup_seconds_per_hour": round(rollup_seconds / max(hours_rolled, 1), 3),
        "store_bytes": _size(cluster),
        "report_seconds_median": round(statistics.median(times), 2), "report_seconds_max": round(max(times), 2),
        "daily_report_seconds_median": round(statistics.median(day_times), 2),
        "report_rollup_hours": report.data_quality.rollup_hours,
        "report_total_queries": report.summary.total_queries,
        "recommendations": len(report.recommendations), "anomalies": len(report.anomalies),
        "forecast_seconds_median": round(statistics.median(forecast_times), 2),
        "forecasts": len(made), "forecasts_dated": sum(1 for m in made if m.entry().reaches_limit_at is not None),
    }
