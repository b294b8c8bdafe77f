"""One store shared by several pgperf processes: rollups that overlap count every hour
once, a process rolls up and expires only its own targets, and retention is per target
although the daily partitions are shared. Real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import report_fixture as fx
from helpers import make_config
from pgperf.store import apply_retention, ensure_partitions, list_partitions, migrate
from pgperf.store.maintenance import MAINTENANCE_EVERY, Maintenance
from pgperf.store.rollup import RollupResult, floor_hour, roll_up
from pgperf.store.tables import TableWriter
from tools.cluster import Cluster

# Makes every rollup transaction last half a second, so that two started together overlap.
_SLOW_ROLLUP = """
CREATE FUNCTION {s}.slow_rollup() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$;
CREATE TRIGGER slow_rollup AFTER INSERT ON {s}.query_metrics_hourly
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.slow_rollup();
"""


def _hourly_matches_raw(conn: psycopg.Connection[Any], schema: str, until: datetime) -> tuple[Any, ...]:
    row = conn.execute(sql.SQL(
        "SELECT (SELECT sum(calls) FROM {s}.query_metrics_hourly),"
        " (SELECT sum(calls) FROM {s}.query_performance_metrics WHERE recorded_at < %s),"
        " (SELECT count(*) FROM {s}.query_metrics_hourly),"
        " (SELECT count(DISTINCT (date_trunc('hour', recorded_at), statement_id))"
        "  FROM {s}.query_performance_metrics WHERE recorded_at < %s)").format(s=sql.Identifier(schema)),
        (until, until)).fetchone()
    assert row is not None
    return tuple(row)


def test_two_rollups_at_once_count_every_hour_once(pg_cluster: Cluster) -> None:
    schema = "rollup_race"
    with pg_cluster.connect() as conn:
        fx.load(conn, schema, rollup=False)
        conn.execute(sql.SQL(_SLOW_ROLLUP).format(s=sql.Identifier(schema)))
    start = threading.Barrier(2)
    results: list[list[RollupResult]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with pg_cluster.connect() as conn:
                start.wait()
                results.append(roll_up(conn, schema, now=fx.NOW, targets=(fx.TARGET,), max_hours=100))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    # One run rolled up the hours; the other, once the first had finished, found nothing left.
    assert sorted(len(r) for r in results) == [0, 1]
    until = fx.NOW.replace(minute=0)
    with pg_cluster.connect() as conn:
        hourly_calls, raw_calls, hourly_rows, statement_hours = _hourly_matches_raw(conn, schema, until)
        assert hourly_calls == raw_calls and hourly_rows == statement_hours
        # A late sample makes both rebuild its hour at once: still counted once.
        late = fx.WINDOW_START + timedelta(hours=3, minutes=31)
        conn.execute(sql.SQL(
            "INSERT INTO {}.query_performance_metrics (target, recorded_at, interval_seconds, query_id, datname,"
            " username, query_text, calls, total_time, mean_time, min_time, max_time, stddev_time, rows_affected,"
            " cache_hits, cache_misses) VALUES (%s, %s, 300, '1006', 'poker', 'app', 'x', 7, 7, 1, 1, 1, 0, 0, 0, 0)"
        ).format(sql.Identifier(schema)), (fx.TARGET, late))
    results.clear()

    def rebuild() -> None:
        try:
            with pg_cluster.connect() as conn:
                start.wait()
                results.append(roll_up(conn, schema, now=fx.NOW, dirty_from={fx.TARGET: late}))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=rebuild) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert [len(r) for r in results] == [1, 1]
    with pg_cluster.connect() as conn:
        hourly_calls, raw_calls, hourly_rows, statement_hours = _hourly_matches_raw(conn, schema, until)
        assert hourly_calls == raw_calls and hourly_rows == statement_hours
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_maintenance_keeps_to_its_own_targets(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any],
                                              tmp_path: Path) -> None:
    """The process writing target "mine" rolls up and expires the rollups of "mine" only,
    whatever is due for "theirs", and runs again an hour later by its clock."""
    schema = "maintenance_scope"
    s = sql.Identifier(schema)
    pg_conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(s))
    migrate(pg_conn, schema)
    hour = floor_hour(datetime.now(UTC)) - timedelta(hours=3)
    ensure_partitions(pg_conn, schema, [hour.date(), datetime.now(UTC).date()])
    for target in ("mine", "theirs"):
        pg_conn.execute(sql.SQL(
            "INSERT INTO {}.query_performance_metrics (target, recorded_at, interval_seconds, query_id, datname,"
            " username, query_text, calls, total_time, mean_time, min_time, max_time, stddev_time, rows_affected,"
            " cache_hits, cache_misses) SELECT %s, %s + m * interval '1 minute', 600, '1', 'db', 'u', 'SELECT 1', 2,"
            " 2, 1, 1, 1, 0, 0, 0, 0 FROM unnest(ARRAY[5, 15, 25]) AS m").format(s), (target, hour))
        # A rollup older than any retention.
        pg_conn.execute(sql.SQL(
            "INSERT INTO {}.query_metrics_hourly (target, hour, query_id, datname, username, query_text, samples,"
            " calls, total_time, rows_affected, cache_hits, cache_misses, temp_blocks_written, plan_time,"
            " peak_mean_time, min_time, max_time, spans_reset, is_remainder) VALUES (%s, '2020-01-01', '1', 'db',"
            " 'u', 'SELECT 1', 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, false, false)").format(s), (target,))
    config = make_config(pg_cluster.dsn(), target_name="mine",
                         store={"enabled": True, "schema": schema, "spool_dir": str(tmp_path)})
    clock = [1000.0]
    maintenance = Maintenance(config, TableWriter(schema), clock=lambda: clock[0])
    assert maintenance.due()
    maintenance.run(pg_conn)
    assert not maintenance.due()
    clock[0] += MAINTENANCE_EVERY - 1
    assert not maintenance.due()
    clock[0] += 1
    assert maintenance.due()

    hourly = pg_conn.execute(sql.SQL("SELECT target, hour, samples, calls FROM {}.query_metrics_hourly"
                                     " ORDER BY target, hour").format(s)).fetchall()
    assert hourly == [("mine", hour, 3, 6), ("theirs", datetime(2020, 1, 1, tzinfo=UTC), 1, 1)]
    assert pg_conn.execute(sql.SQL("SELECT target FROM {}.query_rollup_state").format(s)).fetchall() == [("mine",)]
    registered = pg_conn.execute(sql.SQL("SELECT target, query_days FROM {}.store_retention").format(s)).fetchall()
    assert registered == [("mine", config.retention.query_metrics_days)]
    pg_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))


def test_retention_is_per_target_in_a_shared_store(pg_conn: psycopg.Connection[Any]) -> None:
    """A process keeping 30 days and one keeping 7 share the daily partitions: the
    partitions go after 30 days, the short one's rows after 7 (both at day boundaries)."""
    schema = "shared_retention"
    s = sql.Identifier(schema)
    pg_conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(s))
    migrate(pg_conn, schema)
    now = datetime(2026, 6, 15, 12, tzinfo=UTC)
    days = [date(2026, 6, 15) - timedelta(days=i) for i in range(40)]
    ensure_partitions(pg_conn, schema, days)
    for target in ("long", "short"):
        pg_conn.execute(sql.SQL(
            'INSERT INTO {}.resource_metrics (target, "timestamp", pg_up) SELECT %s, d + interval \'12 hours\', true'
            " FROM unnest(%s::timestamptz[]) AS d").format(s), (target, [fx_day(d) for d in days]))
        pg_conn.execute(sql.SQL(
            "INSERT INTO {}.query_performance_metrics (target, recorded_at, interval_seconds, query_id, query_text,"
            " calls, total_time, mean_time, min_time, max_time, stddev_time, rows_affected, cache_hits, cache_misses)"
            " SELECT %s, d + interval '12 hours', 60, '1', 'SELECT 1', 1, 1, 1, 1, 1, 0, 0, 0, 0"
            " FROM unnest(%s::timestamptz[]) AS d").format(s), (target, [fx_day(d) for d in days]))
    # A process gone for longer than its 90 days: it keeps nothing any more.
    pg_conn.execute(sql.SQL("INSERT INTO {}.store_retention (target, query_days, resource_days, updated_at)"
                            " VALUES ('gone', 90, 90, %s)").format(s), (now - timedelta(days=100),))
    common = {"alerts_days": 30, "reports_days": 90, "now": now}
    apply_retention(pg_conn, schema, query_days=30, resource_days=30, targets=["long"], **common)
    result = apply_retention(pg_conn, schema, query_days=7, resource_days=7, targets=["short"], **common)

    cut_long, cut_short = date(2026, 5, 16), date(2026, 6, 8)  # the cut-off days: now - 30 and now - 7 days
    assert {d for (_, d) in list_partitions(pg_conn, schema)} == {d for d in days if d >= cut_long}
    assert result.rows_deleted == 2 * len([d for d in days if cut_short > d >= cut_long])
    for table, time in (("query_performance_metrics", "recorded_at"), ("resource_metrics", '"timestamp"')):
        rows = pg_conn.execute(sql.SQL("SELECT target, min({t})::date FROM {s}.{n} GROUP BY target ORDER BY target")
                               .format(t=sql.SQL(time), s=s, n=sql.Identifier(table))).fetchall()
        assert rows == [("long", cut_long), ("short", cut_short)], table
    pg_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))


def fx_day(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
