"""Sample store figures: time to store one sample, store size per day, a retention run.

Synthetic statement rows (realistic text lengths) are written through the real writer
(one transaction, COPY) into a throwaway PostgreSQL. The size per day is measured twice:
with today's tables (statement samples in query_samples, statements and texts apart,
migration 005) and with the layout before migration 005 (one query_performance_metrics
row per statement sample, text and names repeated in each), written the way the writer
of that version wrote it.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from psycopg import sql

from pgperf.config import load_config
from pgperf.store import (
    MIGRATIONS,
    QueryRow,
    ResourceRow,
    SampleBatch,
    StoreWriter,
    apply_retention,
    ensure_partitions,
    list_partitions,
    migrate,
)
from pgperf.store.rows import QUERY_COLUMNS, RESOURCE_COLUMNS
from tools.cluster import Cluster

WORDS = ["SELECT", "id", "name", "FROM", "players", "game_hands", "WHERE", "created_at", "BETWEEN", "$1", "AND",
         "$2", "JOIN", "player_statistics", "ON", "ORDER", "BY", "LIMIT", "count(*)", "GROUP", "sum(pot)"]


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 60)))


def synthetic_batch(target: str, seq: int, at: float, statements: int, texts: list[str], rng: random.Random) -> SampleBatch:
    rows: list[QueryRow] = []
    for i in range(statements):
        calls = rng.randint(1, 500)
        total = round(calls * rng.uniform(0.05, 40.0), 3)
        rows.append(QueryRow(target, at, 60.0, str(10_000_000_000 + i), "app", "app_user", texts[i], calls, total,
                             round(total / calls, 3), 0.01, round(total / calls * 3, 3), round(total / calls / 2, 3),
                             calls * rng.randint(0, 20), calls * rng.randint(1, 50), rng.randint(0, 20)))
    resource = ResourceRow(target, at, interval_seconds=60.0, pg_up=True, cpu_usage_percent=12.5,
                           memory_usage_bytes=8_000_000_000, memory_usage_percent=40.0, connection_count=20,
                           connection_utilization=20.0, max_connections=100)
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


def _size_and_rows(cluster: Cluster, schema: str, statement_tables: tuple[str, ...]) -> tuple[float, float, int]:
    """Bytes of the day's partitions (both sample tables), bytes of the statement samples
    (their partition and *statement_tables*, indexes and TOAST included), statement rows."""
    day = cluster.execute(
        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname LIKE '%%_p20260101'", params=(schema,))[0][0]
    statements = cluster.execute(
        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = ANY(%s)", params=(schema, list(statement_tables)))[0][0]
    rows = cluster.execute(f"SELECT count(*) FROM {schema}.query_performance_metrics")[0][0]
    return float(day), float(statements), int(rows)


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
    size, statement_bytes, rows = _size_and_rows(
        cluster, "bench_size", ("query_samples_p20260101", "query_statements", "statement_texts"))
    return {"statements": statements, "interval_s": interval, "samples": samples, "rows": rows,
            "bytes_per_day": size, "bytes_per_row": statement_bytes / max(rows, 1), "write_seconds": elapsed}


def store_size_per_day_before(cluster: Cluster, statements: int, interval: float) -> dict[str, float]:
    """The same day of samples in the layout before migration 005, written as its writer
    did: one transaction per sample, COPY into resource_metrics and query_performance_metrics."""
    schema = "bench_size_004"
    rng = random.Random(2)
    texts = [_text(rng) for _ in range(statements)]
    day = datetime(2026, 1, 1, tzinfo=UTC)
    samples = int(86400 / interval)
    ident = sql.Identifier(schema)
    # resource_metrics as version 3 had it (migration 007 added xid_age).
    kept = [i for i, name in enumerate(RESOURCE_COLUMNS) if name != "xid_age"]
    resource_copy = sql.SQL("COPY {}.resource_metrics ({}) FROM STDIN").format(
        ident, sql.SQL(", ").join(sql.Identifier(RESOURCE_COLUMNS[i]) for i in kept))
    query_copy = sql.SQL("COPY {}.query_performance_metrics ({}) FROM STDIN").format(
        ident, sql.SQL(", ").join(map(sql.Identifier, QUERY_COLUMNS)))
    t0 = time.perf_counter()
    with cluster.connect() as conn:
        migrate(conn, schema, [m for m in MIGRATIONS if m.version <= 3])
        for table in ("query_performance_metrics", "resource_metrics"):
            conn.execute(sql.SQL("CREATE TABLE {s}.{p} PARTITION OF {s}.{t} FOR VALUES FROM ({a}) TO ({b})").format(
                s=ident, p=sql.Identifier(f"{table}_p20260101"), t=sql.Identifier(table), a=sql.Literal(day),
                b=sql.Literal(day + timedelta(days=1))))
        for i in range(samples):
            batch = synthetic_batch("bench", i, (day + timedelta(seconds=i * interval)).timestamp(), statements,
                                    texts, rng)
            at = datetime.fromtimestamp(batch.taken_at, UTC)
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(resource_copy) as copy:
                    values = batch.resource.copy_values()
                    copy.write_row([values[i] for i in kept])
                with cur.copy(query_copy) as copy:
                    for row in batch.queries:
                        copy.write_row([row.target, at, *row.to_list()[2:]])
    elapsed = time.perf_counter() - t0
    size, statement_bytes, rows = _size_and_rows(cluster, schema, ("query_performance_metrics_p20260101",))
    cluster.execute(f"DROP SCHEMA {schema} CASCADE")
    return {"statements": statements, "interval_s": interval, "samples": samples, "rows": rows,
            "bytes_per_day": size, "bytes_per_row": statement_bytes / max(rows, 1), "write_seconds": elapsed}


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
            INSERT INTO {schema}.query_statements (id, target, query_id)
            SELECT q, 'bench', (1000 + q)::text FROM generate_series(1, %(statements)s) AS q""",
                     {"statements": statements_per_sample})
        conn.execute(f"""
            INSERT INTO {schema}.query_samples (statement_id, recorded_at, interval_seconds, calls, total_time,
                mean_time, min_time, max_time, stddev_time, rows_affected, cache_hits, cache_misses)
            SELECT q, %(start)s + i * interval '1 minute', 60, 1, 1, 1, 1, 1, 0, 1, 1, 0
            FROM generate_series(0, %(samples)s - 1) AS i, generate_series(1, %(statements)s) AS q""",
                     {"start": start, "samples": days * 1440, "statements": statements_per_sample})
        fill_seconds = time.perf_counter() - t0
        rows = conn.execute(f"SELECT (SELECT count(*) FROM {schema}.resource_metrics)"
                            f" + (SELECT count(*) FROM {schema}.query_samples)").fetchone()
        t0 = time.perf_counter()
        result = apply_retention(conn, schema, query_days=query_days, resource_days=resource_days,
                                 alerts_days=30, reports_days=90, now=end)
        seconds = time.perf_counter() - t0
        left = len(list_partitions(conn, schema))
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return {"days": days, "query_days": query_days, "resource_days": resource_days,
            "partitions": 2 * days, "rows": int(rows[0]) if rows else 0, "dropped": len(result.dropped),
            "left": left, "seconds": seconds, "partition_seconds": partition_seconds, "fill_seconds": fill_seconds}
