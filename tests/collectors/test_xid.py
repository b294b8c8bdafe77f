"""The xid collector: transaction ID consumption as a counter, read without consuming one."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from collecting import family, run_once, scrape_lint
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors


def test_counts_the_transaction_ids_assigned(pg_conn: psycopg.Connection[Any], pg_cluster: Cluster) -> None:
    first = family(run_once("xid", pg_conn), "pg_transaction_ids_assigned_total").samples[0][1]
    with pg_cluster.connect() as other:
        for _ in range(5):  # each write in autocommit is a transaction with its own ID
            other.execute("CREATE TEMP TABLE IF NOT EXISTS xid_probe (i int); INSERT INTO xid_probe VALUES (1)")
    second = family(run_once("xid", pg_conn), "pg_transaction_ids_assigned_total").samples[0][1]
    assert second - first >= 5
    current = pg_conn.execute("SELECT pg_current_xact_id()::text::numeric").fetchone()
    assert current is not None and float(current[0]) >= second


def test_reading_consumes_no_transaction_id(pg_conn: psycopg.Connection[Any]) -> None:
    values = [family(run_once("xid", pg_conn), "pg_transaction_ids_assigned_total").samples[0][1] for _ in range(20)]
    # Nothing else writes on the test server meanwhile except, rarely, autovacuum.
    assert values[-1] - values[0] < 5, values


def test_scrape_is_lint_clean_and_typed_counter(pg_cluster: Cluster) -> None:
    text, problems = scrape_lint(pg_cluster.dsn(), "xid", "pg_transaction_ids_assigned_total ")
    assert "# TYPE pg_transaction_ids_assigned_total counter" in text
    assert not [p for p in problems if "pg_transaction_ids" in p], problems
