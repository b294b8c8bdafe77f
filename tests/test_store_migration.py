"""Migration 005 and the compact statement tables, on real PostgreSQL: rows stored under
version 3 come back unchanged through the view, a migration numbered below one already
applied still runs, a statement sample takes at most 250 bytes, a text is written once."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgperf.store import MIGRATIONS, QueryRow, ResourceRow, SampleBatch, list_partitions, migrate
from pgperf.store.schema import Migration
from pgperf.store.tables import REMAINDER_TEXT, TableWriter

# The columns of query_performance_metrics up to version 3, in their order (id apart).
OLD_COLUMNS = ("target", "recorded_at", "interval_seconds", "query_id", "datname", "username", "query_text", "calls",
               "total_time", "mean_time", "min_time", "max_time", "stddev_time", "rows_affected", "cache_hits",
               "cache_misses", "temp_blocks_written", "plan_time", "spans_reset", "is_remainder")
DAYS = (date(2026, 3, 1), date(2026, 3, 2))

# Rows as version 3 stored them, over two daily partitions: two targets; statements in two
# databases and three users, one with an empty user name; statements that do not run in
# every interval; remainder rows without database and user; a sample stored twice (a crash
# between the commit and the spool's cleanup); extreme values; and one query id whose
# text changed over time.
_OLD_ROWS = """
INSERT INTO {s}.query_performance_metrics (target, recorded_at, interval_seconds, query_id, datname, username,
    query_text, calls, total_time, mean_time, min_time, max_time, stddev_time, rows_affected, cache_hits,
    cache_misses, temp_blocks_written, plan_time, spans_reset, is_remainder)
SELECT tg, t, 60 + (i % 7) * 0.001234567, (1000000000000 + q)::text, 'db' || (q % 2),
       CASE WHEN q % 5 = 0 THEN '' ELSE 'u' || (q % 3) END,
       CASE WHEN q = 7 THEN 'SELECT v' || (i / 100) || ' FROM t7' ELSE 'SELECT * FROM t' || q || ' WHERE id = $1' END,
       q * (i % 9 + 1), round((q * (i % 9 + 1) * 1.2345)::numeric, 3), round(1.2345 * (1 + q % 3), 3),
       0.001 * q, CASE WHEN q = 3 THEN 999999999999.999 ELSE 12.5 * q END, 0, i * q, (i * q)::bigint * 100000,
       q % 4, i % 3, round((0.0005 * i)::numeric, 3), i = 50, false
FROM unnest(ARRAY['alpha', 'beta']) AS tg, generate_series(0, 287) AS i,
     LATERAL (SELECT timestamptz '2026-03-01' + i * interval '10 minutes' AS t) ts,
     generate_series(1, 40) AS q
WHERE (i + q) % 3 <> 0 AND (tg = 'alpha' OR q <= 25)
UNION ALL
SELECT tg, timestamptz '2026-03-01' + i * interval '10 minutes', 60, 'other', NULL, NULL, '(12 other statements)',
       50, 5, 0.1, 0.01, 2, 0.05, 50, 500, 5, 0, 0, false, true
FROM unnest(ARRAY['alpha', 'beta']) AS tg, generate_series(0, 287, 5) AS i
UNION ALL
SELECT 'alpha', timestamptz '2026-03-01 12:05Z', 60, '1000000000001', 'db1', 'u1', 'SELECT * FROM t1 WHERE id = $1',
       3, 1.5, 0.5, 0.5, 0.5, 0, 3, 0, 0, 0, 0, false, false
FROM generate_series(1, 2)
"""


def _create_old_partitions(conn: psycopg.Connection[Any], schema: str) -> None:
    s = sql.Identifier(schema)
    for table in ("query_performance_metrics", "resource_metrics"):
        for day in DAYS:
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            conn.execute(sql.SQL("CREATE TABLE {s}.{p} PARTITION OF {s}.{t} FOR VALUES FROM ({a}) TO ({b})").format(
                s=s, p=sql.Identifier(f"{table}_p{day:%Y%m%d}"), t=sql.Identifier(table), a=sql.Literal(start),
                b=sql.Literal(start + timedelta(days=1))))


def _rows(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    columns = sql.SQL(", ").join(map(sql.Identifier, OLD_COLUMNS))
    return conn.execute(sql.SQL("SELECT {c} FROM {s}.query_performance_metrics ORDER BY {c}").format(
        c=columns, s=sql.Identifier(schema))).fetchall()


def _columns(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale"
        " FROM information_schema.columns WHERE table_schema = %s AND table_name = 'query_performance_metrics'"
        " ORDER BY ordinal_position", (schema,)).fetchall()


def test_the_view_returns_the_rows_stored_before_migration_005(pg_conn: psycopg.Connection[Any]) -> None:
    schema = "migrate_005"
    s = sql.Identifier(schema)
    pg_conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(s))
    assert migrate(pg_conn, schema, [m for m in MIGRATIONS if m.version <= 3]) == [1, 2, 3]
    _create_old_partitions(pg_conn, schema)
    pg_conn.execute(sql.SQL(_OLD_ROWS).format(s=s))
    # Two hours rolled up twice by two overlapping runs of version 3: every row doubled.
    pg_conn.execute(sql.SQL(
        "INSERT INTO {s}.query_metrics_hourly (target, hour, query_id, datname, username, query_text, samples, calls,"
        " total_time, rows_affected, cache_hits, cache_misses, temp_blocks_written, plan_time, peak_mean_time,"
        " min_time, max_time, spans_reset, is_remainder)"
        " SELECT target, date_trunc('hour', recorded_at), query_id, datname, username, min(query_text), count(*),"
        " sum(calls), sum(total_time), sum(rows_affected), sum(cache_hits), sum(cache_misses),"
        " sum(temp_blocks_written), sum(plan_time), max(mean_time), min(min_time), max(max_time),"
        " bool_or(spans_reset), bool_or(is_remainder)"
        " FROM {s}.query_performance_metrics WHERE recorded_at < '2026-03-01 02:00Z' GROUP BY 1, 2, 3, 4, 5"
    ).format(s=s))
    pg_conn.execute(sql.SQL("INSERT INTO {s}.query_metrics_hourly SELECT * FROM {s}.query_metrics_hourly").format(s=s))
    old_rows = _rows(pg_conn, schema)
    old_columns = _columns(pg_conn, schema)
    hourly = pg_conn.execute(sql.SQL("SELECT count(*) FROM {}.query_metrics_hourly").format(s)).fetchone()
    assert len(old_rows) > 10000 and hourly is not None

    applied = migrate(pg_conn, schema)
    assert 5 in applied and min(applied) > 3

    kind = pg_conn.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass",
                           (f"{schema}.query_performance_metrics",)).fetchone()
    assert kind == ("v",)
    # The seed's columns, with their types, in their order; then the statement's id.
    assert _columns(pg_conn, schema) == [
        ("id", "uuid", None, None, None), *old_columns[1:], ("statement_id", "integer", None, 32, 0)]
    new_rows = _rows(pg_conn, schema)
    # A query id shows its latest text (one text per target and query id): here, q = 7.
    changed = OLD_COLUMNS.index("query_text")
    latest = "SELECT v2 FROM t7"
    assert [r[:changed] + r[changed + 1:] for r in new_rows] == [r[:changed] + r[changed + 1:] for r in old_rows]
    assert [r for r in new_rows if r[3] != "1000000000007"] == [r for r in old_rows if r[3] != "1000000000007"]
    assert {r[changed] for r in new_rows if r[3] == "1000000000007"} == {latest}
    # Ids: one per statement and time (the sample stored twice shares one).
    ids = pg_conn.execute(sql.SQL(
        "SELECT count(DISTINCT id), count(DISTINCT (statement_id, recorded_at)) FROM {}.query_performance_metrics"
    ).format(s)).fetchone()
    assert ids is not None and ids[0] == ids[1] == len(old_rows) - 1
    # The doubled hour is one again, and cannot double any more.
    assert pg_conn.execute(sql.SQL("SELECT count(*) FROM {}.query_metrics_hourly").format(s)).fetchone() == (
        hourly[0] // 2,)
    with pytest.raises(psycopg.errors.UniqueViolation):
        pg_conn.execute(sql.SQL("INSERT INTO {s}.query_metrics_hourly SELECT * FROM {s}.query_metrics_hourly"
                                " LIMIT 1").format(s=s))
    # The old daily partitions became partitions of query_samples; the old table is gone.
    assert {(t, d) for (t, d) in list_partitions(pg_conn, schema)} == {
        (t, d) for t in ("query_samples", "resource_metrics") for d in DAYS}
    assert pg_conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s"
                           " AND tablename LIKE 'query_performance_metrics%%'", (schema,)).fetchone() == (0,)
    pg_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))


def test_insert_into_the_view_files_the_row(pg_conn: psycopg.Connection[Any]) -> None:
    schema = "view_insert"
    s = sql.Identifier(schema)
    pg_conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(s))
    migrate(pg_conn, schema)
    _create_new_partition(pg_conn, schema, DAYS[0])
    pg_conn.execute("SET search_path = pg_catalog")  # the trigger finds its tables whatever the search path
    row = pg_conn.execute(sql.SQL(
        "INSERT INTO {}.query_performance_metrics (target, recorded_at, interval_seconds, query_id, datname, username,"
        " query_text, calls, total_time, mean_time, min_time, max_time, stddev_time, rows_affected, cache_hits,"
        " cache_misses) VALUES ('t', '2026-03-01 10:00Z', 60, '42', NULL, 'u', 'SELECT 1', 2, 3.5, 1.75, 1, 2, 0.5,"
        " 2, 9, 1) RETURNING id, statement_id, temp_blocks_written, spans_reset").format(s)).fetchone()
    assert row is not None and row[1] is not None and row[2:] == (0, False)
    stored = pg_conn.execute(sql.SQL("SELECT id, query_text, datname, calls, total_time FROM"
                                     " {}.query_performance_metrics").format(s)).fetchall()
    assert stored == [(row[0], "SELECT 1", None, 2, Decimal("3.500"))]
    with pytest.raises(psycopg.errors.CheckViolation, match="calls_check"):
        pg_conn.execute(sql.SQL(
            "INSERT INTO {}.query_performance_metrics (target, recorded_at, interval_seconds, query_id, query_text,"
            " calls, total_time, mean_time, min_time, max_time, stddev_time, rows_affected, cache_hits, cache_misses)"
            " VALUES ('t', '2026-03-01 11:00Z', 60, '42', 'SELECT 1', -1, 0, 0, 0, 0, 0, 0, 0, 0)").format(s))
    pg_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))


def _create_new_partition(conn: psycopg.Connection[Any], schema: str, day: date) -> None:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    conn.execute(sql.SQL("CREATE TABLE {s}.{p} PARTITION OF {s}.query_samples FOR VALUES FROM ({a}) TO ({b})").format(
        s=sql.Identifier(schema), p=sql.Identifier(f"query_samples_p{day:%Y%m%d}"), a=sql.Literal(start),
        b=sql.Literal(start + timedelta(days=1))))


def test_a_migration_numbered_below_the_applied_ones_still_runs(pg_conn: psycopg.Connection[Any]) -> None:
    """Two lines of work each add a migration (006 and 007): whichever lands second is
    applied when it arrives, and recorded. (006 is one no later migration builds on; 008
    alters 004's index_advice.)"""
    schema = "migrate_gap"
    pg_conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    present = [m for m in MIGRATIONS if m.version != 6]
    assert migrate(pg_conn, schema, present) == [m.version for m in present]
    late = Migration(6, "arrives_late", "CREATE TABLE arrived_late (x integer)")
    assert migrate(pg_conn, schema, [*present, late]) == [6]
    assert migrate(pg_conn, schema, [*present, late]) == []
    versions = pg_conn.execute(f"SELECT version FROM {schema}.schema_migrations ORDER BY version").fetchall()
    assert [v for (v,) in versions] == sorted({m.version for m in present} | {6})
    assert pg_conn.execute("SELECT to_regclass(%s)", (f"{schema}.arrived_late",)).fetchone() == (f"{schema}.arrived_late",)
    pg_conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _batch(target: str, seq: int, at: float, texts: list[str], rng: random.Random,
           remainder: bool = False) -> SampleBatch:
    rows = []
    for i, text in enumerate(texts):
        calls = rng.randint(1, 500)
        total = round(calls * rng.uniform(0.05, 40.0), 3)
        rows.append(QueryRow(target, at, 60.0, str(7_000_000_000_000_000_000 + i), "app", "app_user", text, calls,
                             total, round(total / calls, 3), 0.01, round(total / calls * 3, 3),
                             round(total / calls / 2, 3), calls * rng.randint(0, 20), calls * rng.randint(1, 50),
                             rng.randint(0, 20)))
    if remainder:
        rows.append(QueryRow(target, at, 60.0, "other", None, None, f"({rng.randint(2, 90)} other statements)", 9,
                             1.0, 0.111, 0.01, 0.5, 0.1, 9, 90, 0, is_remainder=True))
    return SampleBatch(target, seq, at, ResourceRow(target, at, pg_up=True), rows)


def test_a_statement_sample_takes_at_most_250_bytes(pg_conn: psycopg.Connection[Any]) -> None:
    """pg_total_relation_size of the statement tables (heap, indexes, TOAST) over the
    statement samples of 120 one-minute samples of 500 statements with pgperf's texts."""
    schema = "sample_size"
    pg_conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    migrate(pg_conn, schema)
    rng = random.Random(5)
    words = ["SELECT", "id", "name", "FROM", "players", "JOIN", "hands", "ON", "WHERE", "$1", "AND", "ORDER BY"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 60))) for _ in range(500)]
    tables = TableWriter(schema)
    start = datetime(2026, 3, 1, 8, tzinfo=UTC).timestamp()
    for seq in range(120):
        tables.write(pg_conn, _batch("size-target", seq, start + 60 * seq, texts, rng, remainder=True))
    rows, size = pg_conn.execute(
        "SELECT (SELECT count(*) FROM sample_size.query_performance_metrics),"
        " (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        "  WHERE n.nspname = %s AND c.relkind = 'r' AND (c.relname LIKE 'query\\_samples\\_p%%'"
        "  OR c.relname IN ('query_statements', 'statement_texts')))", (schema,)).fetchone() or (0, 0)
    assert rows == 120 * 501
    assert size / rows <= 250, f"{size / rows:.0f} bytes per statement sample"
    pg_conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_a_text_is_written_once_and_again_only_when_it_changes(pg_conn: psycopg.Connection[Any]) -> None:
    schema = "texts_once"
    pg_conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    migrate(pg_conn, schema)
    rng = random.Random(1)
    start = datetime(2026, 3, 1, 8, tzinfo=UTC).timestamp()

    def versions() -> dict[str, tuple[str, str]]:
        rows = pg_conn.execute(f"SELECT query_id, query_text, xmin::text FROM {schema}.statement_texts").fetchall()
        return {q: (text, xmin) for q, text, xmin in rows}

    tables = TableWriter(schema)
    tables.write(pg_conn, _batch("t", 1, start, ["SELECT 1", "SELECT 2"], rng, remainder=True))
    first = versions()
    assert first["other"][0] == REMAINDER_TEXT  # not the sample's count of statements
    tables.write(pg_conn, _batch("t", 2, start + 60, ["SELECT 1", "SELECT 2"], rng, remainder=True))
    assert versions() == first  # known texts: not written again
    TableWriter(schema).write(pg_conn, _batch("t", 3, start + 120, ["SELECT 1", "SELECT 2"], rng))
    assert versions() == first  # a new process writes them, but an unchanged text is not updated
    tables.write(pg_conn, _batch("t", 4, start + 180, ["SELECT 1", "SELECT 2 -- changed"], rng))
    now = versions()
    assert now["7000000000000000000"] == first["7000000000000000000"]
    assert now["7000000000000000001"][0] == "SELECT 2 -- changed" != first["7000000000000000001"][0]
    statements = pg_conn.execute(f"SELECT count(*) FROM {schema}.query_statements").fetchone()
    assert statements == (3,)
    pg_conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_a_refused_sample_leaves_no_statement_id_behind(pg_conn: psycopg.Connection[Any]) -> None:
    """The ids of new statements are remembered only once their sample is committed."""
    schema = "ids_rollback"
    pg_conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    migrate(pg_conn, schema)
    tables = TableWriter(schema)
    at = datetime(2026, 3, 1, 8, tzinfo=UTC).timestamp()
    bad = QueryRow("t", at, 60.0, "99", "db", "u", "SELECT 99", -1, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0)
    with pytest.raises(psycopg.errors.CheckViolation):
        tables.write(pg_conn, SampleBatch("t", 1, at, ResourceRow("t", at), [bad]))
    good = QueryRow("t", at + 60, 60.0, "99", "db", "u", "SELECT 99", 1, 2.0, 2.0, 2.0, 2.0, 0.0, 0, 0, 0)
    tables.write(pg_conn, SampleBatch("t", 2, at + 60, ResourceRow("t", at + 60), [good]))
    rows = pg_conn.execute(f"SELECT query_id, query_text, calls FROM {schema}.query_performance_metrics").fetchall()
    assert rows == [("99", "SELECT 99", 1)]
    pg_conn.execute(f"DROP SCHEMA {schema} CASCADE")
