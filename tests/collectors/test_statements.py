"""pg_stat_statements (the statements collector)."""

from __future__ import annotations

import math
from typing import Any

import psycopg
import pytest

from collecting import family, run
from helpers import make_config
from pgperf.collectors import CollectorDisabled, CollectorResult
from pgperf.collectors.statements import StatementRecords, StatementsOptions
from pgperf.sampling import TargetSampler
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors


def _statements(conn: psycopg.Connection[Any], previous: tuple[float, Any] | None = None, **options: Any
                ) -> tuple[CollectorResult, float]:
    return run("statements", conn, previous=previous, options=StatementsOptions(**options),
               thresholds={"slow_query_time_ms": 50})


def _marker(conn: psycopg.Connection[Any], name: str) -> str:
    """A one-row table named *name*: statements reading it get their own queryid (constants
    and column aliases do not change a queryid; the relations read do)."""
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} AS SELECT 1 AS x")
    return name


def _queryid(conn: psycopg.Connection[Any], fragment: str) -> int:
    row = conn.execute("SELECT queryid FROM pg_stat_statements WHERE query ILIKE 'select%%' AND query LIKE %s LIMIT 1",
                       (f"%{fragment}%",)).fetchone()
    assert row is not None, f"no statement like {fragment!r}"
    return int(row[0])


def test_statements_per_queryid_series(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    with pg_cluster.connect() as work:
        for _ in range(3):
            work.execute("SELECT count(*) AS per_queryid_marker FROM pg_class")
    qid = _queryid(pg_conn, "per_queryid_marker")
    result, _ = _statements(pg_conn, top_n=10000)  # a cheap statement: make room for every one
    calls = family(result, "pg_stat_statements_calls_total")
    assert calls.labels == ("user", "datname", "queryid")
    assert (calls.value(queryid=str(qid), datname="postgres", user="postgres") or 0) >= 3
    assert family(result, "pg_stat_statements_seconds_total").value(queryid=str(qid)) is not None
    totals = family(result, "pg_stat_statements_all_calls_total")
    assert totals.labels == ("datname", "user")
    assert (totals.value(datname="postgres", user="postgres") or 0) >= 3
    assert family(result, "pg_stat_statements_entries").samples[0][1] > 0
    assert all("query" not in f.labels for f in result.families)  # no text label by default


def test_statements_of_dropped_databases_keep_distinct_labels(pg_cluster: Cluster,
                                                             pg_conn: psycopg.Connection[Any]) -> None:
    for name in ("gone_a", "gone_b"):
        pg_cluster.execute(f"DROP DATABASE IF EXISTS {name}")
        pg_cluster.execute(f"CREATE DATABASE {name}")
        pg_cluster.execute("SELECT 4242 AS dropped_db_marker", name)
        pg_cluster.execute(f"DROP DATABASE {name}")
    result, _ = _statements(pg_conn, top_n=10000)
    calls = family(result, "pg_stat_statements_calls_total")
    assert len({labels for labels, _ in calls.samples}) == len(calls.samples)  # no duplicate series
    orphans = [labels for labels, _ in calls.samples if labels[1].startswith("oid:")]
    assert len({labels[1] for labels in orphans}) >= 2


def test_statements_interval_deltas(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    _marker(pg_conn, "delta_marker")
    base, t0 = _statements(pg_conn)
    assert base.record is None  # the first sample is a baseline
    with pg_cluster.connect() as work:
        for _ in range(5):
            work.execute("SELECT pg_sleep(0.02) FROM delta_marker")
    second, _ = _statements(pg_conn, previous=(t0, base.state))
    qid = _queryid(pg_conn, "delta_marker")
    record = second.record
    assert isinstance(record, StatementRecords)
    deltas = {d.queryid: d for d in record.deltas}
    d = deltas[qid]
    assert d.calls == 5
    assert 100 <= d.total_ms < 1000
    assert math.isclose(d.mean_ms, d.total_ms / d.calls)
    assert d.stddev_ms >= 0
    assert record.texts[qid].startswith("SELECT pg_sleep")
    assert not record.stats_reset


def test_statements_reset_never_negative(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    _marker(pg_conn, "reset_marker")
    with pg_cluster.connect() as work:
        for _ in range(20):
            work.execute("SELECT x FROM reset_marker")
    first, t0 = _statements(pg_conn)
    total_before = family(first, "pg_stat_statements_all_calls_total").value(datname="postgres", user="postgres")
    pg_conn.execute("SELECT pg_stat_statements_reset()")
    with pg_cluster.connect() as work:
        for _ in range(3):
            work.execute("SELECT x FROM reset_marker")
    second, _ = _statements(pg_conn, previous=(t0, first.state))
    record = second.record
    assert isinstance(record, StatementRecords)
    assert all(d.calls > 0 and d.total_ms >= 0 and d.rows >= 0 for d in record.deltas)
    qid = _queryid(pg_conn, "reset_marker")
    assert {d.queryid: d.calls for d in record.deltas}[qid] == 3
    if pg_conn.info.server_version >= 140000:
        assert record.stats_reset
    total_after = family(second, "pg_stat_statements_all_calls_total").value(datname="postgres", user="postgres")
    assert total_after is not None and total_before is not None and total_after >= total_before


def test_statements_slow_count_and_top_n(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    _marker(pg_conn, "slow_marker")
    first, t0 = _statements(pg_conn, top_n=2)
    with pg_cluster.connect() as work:
        work.execute("SELECT pg_sleep(0.12) FROM slow_marker")
        for i in range(30):
            work.execute(f"SELECT {i} FROM (VALUES (1){', (2)' * (i % 5)}) v")
    second, _ = _statements(pg_conn, previous=(t0, first.state), top_n=2)
    slow_qid = _queryid(pg_conn, "slow_marker")
    assert (family(second, "pg_stat_statements_slow_statements").value(datname="postgres") or 0) >= 1
    assert (family(second, "pg_stat_statements_slowest_mean_seconds").value(datname="postgres") or 0) >= 0.1
    calls = family(second, "pg_stat_statements_calls_total")
    assert len(calls.samples) == 2
    assert calls.value(queryid=str(slow_qid)) == 1  # slow statements are always served
    assert family(second, "pg_stat_statements_selected_statements").samples[0][1] == 2


def _text(conn: psycopg.Connection[Any], queryid: int) -> str:
    row = conn.execute("SELECT query FROM pg_stat_statements WHERE queryid = %s LIMIT 1", (queryid,)).fetchone()
    assert row is not None
    return str(row[0])


def test_statements_include_query(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    _marker(pg_conn, "include_query_marker")
    with pg_cluster.connect() as work:
        work.execute("SELECT x FROM include_query_marker")
    qid = _queryid(pg_conn, "include_query_marker")
    result, _ = _statements(pg_conn, include_query=True, query_length=30, top_n=10000)
    fam = family(result, "pg_stat_statements_query_id")
    assert fam.labels == ("queryid", "query")
    assert all(len(labels[1]) <= 30 for labels, _ in fam.samples)
    labels = {values[0]: values[1] for values, _ in fam.samples}
    assert labels[str(qid)] == _text(pg_conn, qid)[:30] == "SELECT x FROM include_query_ma"


def test_query_label_holds_the_text_with_the_store_disabled(pg_cluster: Cluster) -> None:
    """The query texts do not depend on the sample store: with it disabled, the query
    label of pg_stat_statements_query_id still holds each statement's text."""
    with pg_cluster.connect() as conn:
        _marker(conn, "storeless_text_marker")
        conn.execute("SELECT x FROM storeless_text_marker")
        qid = _queryid(conn, "storeless_text_marker")
        text = _text(conn, qid)
    config = make_config(pg_cluster.dsn(), store={"enabled": False},
                         collectors={"statements": {"include_query": True, "top_n": 10000}})
    sampler = TargetSampler(config.resolved_targets()[0], config)
    sampler.open()
    try:
        snap = sampler.sample()
    finally:
        sampler.close()
    assert snap is not None and snap.up
    fam = snap.family("pg_stat_statements_query_id")
    assert fam is not None
    labels = {values[0]: values[1] for values, _ in fam.samples}
    assert labels[str(qid)] == text[:120] == "SELECT x FROM storeless_text_marker"
    assert all(query for query in labels.values())  # no statement without its text


def _text_reads(conn: psycopg.Connection[Any]) -> int:
    """Rows the statements collector's text query has returned so far: one per text read
    from pg_stat_statements' text file."""
    row = conn.execute("SELECT coalesce(sum(rows), 0) FROM pg_stat_statements WHERE query LIKE %s",
                       ("SELECT DISTINCT ON (queryid) queryid, query FROM %pg_stat_statements(%",)).fetchone()
    assert row is not None
    return int(row[0])


def test_texts_are_read_only_for_statements_not_seen_before(pg_cluster: Cluster) -> None:
    """A statement's text is read from pg_stat_statements once: a later sample in which it
    ran again takes it from the target's cache, and reads only the texts of new query ids."""
    config = make_config(pg_cluster.dsn(), store={"enabled": False},
                         collectors={"statements": {"top_n": 10000}})
    sampler = TargetSampler(config.resolved_targets()[0], config)
    with pg_cluster.connect() as conn:
        _marker(conn, "seen_text_marker")
        _marker(conn, "new_text_marker")
        sampler.open()
        try:
            assert sampler.sample() is not None  # the baseline
            conn.execute("SELECT x FROM seen_text_marker")
            assert sampler.sample() is not None  # reads the text of seen_text_marker
            seen = _queryid(conn, "seen_text_marker")
            assert seen in sampler.text_cache.texts
            cached_before = set(sampler.text_cache.texts)
            conn.execute("SELECT x FROM seen_text_marker")
            conn.execute("SELECT x FROM new_text_marker")
            reads_before = _text_reads(conn)
            snap = sampler.sample()
            reads = _text_reads(conn) - reads_before
        finally:
            sampler.close()
    assert snap is not None and snap.up
    records = snap.records.get(StatementRecords)
    assert records is not None
    ran = {d.queryid for d in records.deltas}
    new = _queryid_of(records, "new_text_marker")
    assert {seen, new} <= ran
    assert new not in cached_before
    # Only the texts the cache did not hold were read: not the seen statement's.
    assert reads == len(ran - cached_before) >= 1
    assert reads < len(ran)
    assert records.texts[seen] == "SELECT x FROM seen_text_marker"
    assert records.texts[new] == sampler.text_cache.texts[new] == "SELECT x FROM new_text_marker"


def _queryid_of(records: StatementRecords, fragment: str) -> int:
    found = [qid for qid, text in records.texts.items() if text.startswith("SELECT") and fragment in text]
    assert len(found) == 1, f"no single statement like {fragment!r} in {sorted(records.texts.values())}"
    return found[0]


def test_statements_disabled_without_extension(pg_cluster: Cluster) -> None:
    pg_cluster.execute("DROP DATABASE IF EXISTS no_pgss")
    pg_cluster.execute("CREATE DATABASE no_pgss")
    with pg_cluster.connect("no_pgss") as conn, pytest.raises(CollectorDisabled) as info:
        _statements(conn)
    assert info.value.reason == "extension_missing"
    assert "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" in info.value.detail
