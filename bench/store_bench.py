"""Sample store figures: time to store one sample, store size per day, a retention run.

Synthetic statement rows (realistic text lengths) are written through the real writer
(one transaction, COPY) into a throwaway PostgreSQL.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pgperf.config import load_config
from pgperf.store import SampleBatch, StoreWriter, apply_retention, ensure_partitions, list_partitions, migrate
from pgperf.store.rows import RESOURCE_COLUMNS
from tools.cluster import Cluster

WORDS = ["SELECT", "id", "name", "FROM", "players", "game_hands", "WHERE", "created_at", "BETWEEN", "$1", "AND",
         "$2", "JOIN", "player_statistics", "ON", "ORDER", "BY", "LIMIT", "count(*)", "GROUP", "sum(pot)"]


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 60)))


def synthetic_batch(target: str, seq: int, at: float, statements: int, texts: list[str], rng: random.Random) -> SampleBatch:
    rows: list[list[Any]] = []
    for i in range(statements):
        calls = rng.randint(1, 500)
        total = round(calls * rng.uniform(0.05, 40.0), 3)
        rows.append([target, at, 60.0, str(10_000_000_000 + i), "app", "app_user", texts[i], calls, total,
                     round(total / calls, 3), 0.01, round(total / calls * 3, 3), round(total / calls / 2, 3),
                     calls * rng.randint(0, 20), calls * rng.randint(1, 50), rng.randint(0, 20), 0, 0.0, False, False])
    resource = dict.fromkeys(RESOURCE_COLUMNS)
    resource.update(target=target, timestamp=at, interval_seconds=60.0, pg_up=True, cpu_usage_percent=12.5,
                    memory_usage_bytes=8_000_000_000, memory_usage_percent=40.0, connection_count=20,
                    connection_utilization=20.0, max_connections=100, statements_reset=False)
    return SampleBatch(target, seq, at, resource, rows)


def _writer(cluster: Cluster, schema: str, spool: str) -> StoreWriter:
    config = load_config(env={}, flags={"profile": "production", "dsn": cluster.dsn(),
                                        "store": {"schema": schema, "spool_dir": spool, "max_query_rows": 100_000}})
    return StoreWriter(config)


def store_one_sample(cluster: Cluster, statements: int, repeats: int, spool: str) -> dict[str, float]:
    rng = random.Random(1)
    texts = [_text(rng) for _ in range(statements)]
    writer = _writer(cluster, "bench_write", spool)
    times = []
    start = datetime.now(UTC).timestamp()
    try:
        for i in range(repeats + 2):
            batch = synthetic_batch("bench", i, start + i * 60, statements, texts, rng)
            t0 = time.perf_counter()
            writer.write_now(batch)
            if i >= 2:  # the first writes create partitions and warm caches
                times.append(time.perf_counter() - t0)
    finally:
        writer.stop(timeout=1)
    return {"statements": statements, "p50_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000}


def store_size_per_day(cluster: Cluster, statements: int, interval: float, spool: str) -> dict[str, float]:
    """Write one day of samples at *interval* with *statements* active statements each."""
    rng = random.Random(2)
    texts = [_text(rng) for _ in range(statements)]
    writer = _writer(cluster, "bench_size", spool)
    day = datetime(2026, 1, 1, tzinfo=UTC)
    samples = int(86400 / interval)
    t0 = time.perf_counter()
    try:
        for i in range(samples):
            writer.write_now(synthetic_batch("bench", i, (day + timedelta(seconds=i * interval)).timestamp(),
                                             statements, texts, rng))
    finally:
        writer.stop(timeout=1)
    elapsed = time.perf_counter() - t0
    size = cluster.execute(
        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'bench_size' AND c.relname LIKE '%%_p20260101'")[0][0]
    rows = cluster.execute("SELECT count(*) FROM bench_size.query_performance_metrics")[0][0]
    return {"statements": statements, "interval_s": interval, "samples": samples, "rows": rows,
            "bytes_per_day": float(size), "bytes_per_row": float(size) / max(rows, 1), "write_seconds": elapsed}


def retention_run(cluster: Cluster, days: int, query_days: int, resource_days: int,
                  statements_per_sample: int) -> dict[str, float]:
    """A store holding *days* days of one-minute samples (every resource sample, and
    *statements_per_sample* statement rows per sample), then one retention run timed."""
    schema = "bench_retention"
    end = datetime(2026, 6, 1, tzinfo=UTC)
    start = end - timedelta(days=days)
    with cluster.connect() as conn:
        migrate(conn, schema)
        t0 = time.perf_counter()
        ensure_partitions(conn, schema, [(start + timedelta(days=i)).date() for i in range(days)])
        partition_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute(f"""
            INSERT INTO {schema}.resource_metrics (target, "timestamp", interval_seconds, pg_up, connection_count)
            SELECT 'bench', %(start)s + i * interval '1 minute', 60, true, 10
            FROM generate_series(0, %(samples)s - 1) AS i""", {"start": start, "samples": days * 1440})
        conn.execute(f"""
            INSERT INTO {schema}.query_performance_metrics (target, recorded_at, interval_seconds, query_id, query_text,
                calls, total_time, mean_time, min_time, max_time, stddev_time, rows_affected, cache_hits, cache_misses)
            SELECT 'bench', %(start)s + i * interval '1 minute', 60, (1000 + q)::text, 'SELECT ' || q, 1, 1, 1, 1, 1, 0,
                   1, 1, 0
            FROM generate_series(0, %(samples)s - 1) AS i, generate_series(1, %(statements)s) AS q""",
                     {"start": start, "samples": days * 1440, "statements": statements_per_sample})
        fill_seconds = time.perf_counter() - t0
        rows = conn.execute(f"SELECT (SELECT count(*) FROM {schema}.resource_metrics)"
                            f" + (SELECT count(*) FROM {schema}.query_performance_metrics)").fetchone()
        t0 = time.perf_counter()
        result = apply_retention(conn, schema, query_days=query_days, resource_days=resource_days,
                                 alerts_days=30, reports_days=90, now=end)
        seconds = time.perf_counter() - t0
        left = len(list_partitions(conn, schema))
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return {"days": days, "query_days": query_days, "resource_days": resource_days,
            "partitions": 2 * days, "rows": int(rows[0]) if rows else 0, "dropped": len(result.dropped),
            "left": left, "seconds": seconds, "partition_seconds": partition_seconds, "fill_seconds": fill_seconds}
