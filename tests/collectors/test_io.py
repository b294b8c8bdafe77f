"""The io collector: pg_stat_io on PostgreSQL 16+, under pgbench; disabled on older servers."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from collecting import family, labelled, run_once, scrape_lint
from helpers import make_config, running_exporter, wait_until
from pgperf.collectors.io import query
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors


@pytest.mark.pg(">= 16")
def test_io_under_pgbench(pg_conn: psycopg.Connection[Any], pgbench: Any) -> None:
    before = run_once("io", pg_conn)
    with pgbench(clients=2):
        time.sleep(2)
    pg_conn.execute("SELECT pg_stat_force_next_flush()")  # 15+: this session's counters now
    after = run_once("io", pg_conn)
    fam = family(after, "pg_stat_io_hits_total")
    assert fam.type == "counter" and fam.labels == ("backend_type", "object", "context")
    key = {"backend_type": "client backend", "object": "relation", "context": "normal"}
    hits_before = sum(labelled(family(before, "pg_stat_io_hits_total"), **key))
    assert sum(labelled(fam, **key)) > hits_before
    # Up to 17 an operation is one block (op_bytes); from 18 one operation may combine
    # several blocks (io_combine_limit) and the view gives the bytes.
    for op in ("read", "write", "extend"):
        ops = labelled(family(after, f"pg_stat_io_{op}s_total"), **key)
        data = labelled(family(after, f"pg_stat_io_{op}_bytes_total"), **key)
        if pg_conn.info.server_version < 180000:
            assert data == [n * 8192 for n in ops], op
        else:
            assert len(data) == len(ops) and all(d >= n * 8192 for d, n in zip(data, ops, strict=True)), op
    # Timing is on in the test cluster (track_io_timing): seconds, not milliseconds.
    read_time = sum(labelled(family(after, "pg_stat_io_read_time_seconds_total"), **key))
    reads = sum(labelled(family(after, "pg_stat_io_reads_total"), **key))
    assert read_time < max(1.0, reads)  # at most a second per read: the unit is right
    # A combination where an operation cannot happen has no sample (NULL in the view).
    checkpointer = {"backend_type": "checkpointer", "object": "relation", "context": "normal"}
    assert labelled(family(after, "pg_stat_io_reads_total"), **checkpointer) == []
    assert labelled(family(after, "pg_stat_io_writes_total"), **checkpointer)
    assert family(after, "pg_stat_io_stats_reset_timestamp_seconds").samples[0][1] > 1e9


@pytest.mark.pg(">= 16")
def test_scrape_is_lint_clean(pg_cluster: Cluster) -> None:
    text, problems = scrape_lint(pg_cluster.dsn(), "io", "pg_stat_io_hits_total{")
    assert "# TYPE pg_stat_io_hits_total counter" in text
    assert not [p for p in problems if p.startswith("pg_stat_io")], problems


@pytest.mark.pg("< 16")
def test_nothing_before_16_and_no_fault(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable):  # the view the collector does not query
        pg_conn.execute(query(pg_conn.info.server_version))
    assert run_once("io", pg_conn).families == ()
    config = make_config(pg_cluster.dsn(), collectors={"io": {"enabled": True}})
    with running_exporter(config) as exporter:
        wait_until(lambda: exporter.value("pg_scrape_collector_success", collector="io") == 1, message="io ran")
        assert exporter.value("pgperf_collector_disabled", collector="io") is None
        assert exporter.value("pg_stat_io_reads_total") is None
