"""pg_stat_activity (the activity collector)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from collecting import family, run
from pgperf.collectors.activity import Connections
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors


def test_activity_states_and_idle_in_transaction(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    with pg_cluster.connect() as idle:
        idle.autocommit = False
        idle.execute("SELECT 1")  # now idle in transaction
        time.sleep(0.6)
        result, _ = run("activity", pg_conn, thresholds={"idle_in_transaction_seconds": 0.5,
                                                        "long_running_query_seconds": 60})
        idle.rollback()
    count = family(result, "pg_stat_activity_count")
    # postgres_exporter 0.20's labels
    assert count.labels == ("datname", "state", "usename", "application_name", "backend_type", "wait_event_type",
                            "wait_event")
    assert (count.value(datname="postgres", state="idle in transaction", usename="postgres",
                        backend_type="client backend", wait_event_type="Client", wait_event="ClientRead") or 0) >= 1
    # zero samples kept, with the other labels empty, for every database and state without sessions
    assert count.value(datname="template1", state="active", usename="", application_name="", backend_type="") == 0
    max_tx = family(result, "pg_stat_activity_max_tx_duration")
    assert (max_tx.value(datname="postgres", state="idle in transaction", usename="postgres") or 0) >= 0.5
    assert (family(result, "pg_stat_activity_idle_in_transaction_sessions").value(datname="postgres") or 0) >= 1
    assert (family(result, "pg_stat_activity_oldest_idle_in_transaction_age_seconds").value(datname="postgres") or 0) >= 0.5
    ratio = family(result, "pg_stat_activity_connection_utilization_ratio").samples[0][1]
    assert 0 < ratio < 1
    assert result.record == Connections(result.record.count, 100, result.record.count / 100)
    assert result.record.count >= 2
    assert family(result, "pg_stat_activity_client_connections").samples[0][1] == result.record.count


def test_activity_long_running_query(pg_cluster: Cluster, pg_conn: psycopg.Connection[Any]) -> None:
    def sleeper() -> None:
        with pg_cluster.connect() as c:
            c.execute("SELECT pg_sleep(1.5)")

    thread = threading.Thread(target=sleeper)
    thread.start()
    time.sleep(0.8)
    result, _ = run("activity", pg_conn, thresholds={"long_running_query_seconds": 0.5,
                                                    "idle_in_transaction_seconds": 60})
    thread.join()
    assert (family(result, "pg_stat_activity_long_running_queries").value(datname="postgres") or 0) >= 1
    assert (family(result, "pg_stat_activity_oldest_query_age_seconds").value(datname="postgres") or 0) >= 0.5
