"""The log_errors collector on a real server writing csvlog (and jsonlog from 15): errors
by kind, statement timeouts among them, read through SQL across samples and log files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from collecting import family, run
from helpers import wait_until
from pgperf.collectors import CollectorDisabled
from pgperf.collectors.log_errors import LogErrorsOptions, count_csv, kind
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors


def _errors(cluster: Cluster) -> None:
    with cluster.connect() as conn:
        conn.execute("SET statement_timeout = '50ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(1)")
        conn.execute("RESET statement_timeout")
        conn.execute("CREATE TABLE IF NOT EXISTS uniq (id int PRIMARY KEY)")
        conn.execute("INSERT INTO uniq VALUES (1) ON CONFLICT DO NOTHING")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO uniq VALUES (1)")


@pytest.mark.parametrize("destination", ["csvlog", pytest.param("jsonlog", marks=pytest.mark.pg(">=15"))])
def test_errors_counted_by_kind_across_samples_and_files(make_cluster: Callable[..., Cluster],
                                                         destination: str) -> None:
    cluster = make_cluster(settings={"logging_collector": "on", "log_destination": f"'{destination}'",
                                     "log_directory": "'log'"})
    with cluster.connect() as conn:
        first, at = run("log_errors", conn)  # starts at the end of the file
        assert family(first, "pg_log_errors_total").value(type="statement_timeout") == 0
        _errors(cluster)

        def counted() -> Any:
            result, _ = run("log_errors", conn, previous=(at, first.state))
            return result if family(result, "pg_log_errors_total").value(type="unique_violation") else None

        second = wait_until(counted, timeout=10, message="the errors in the log")
        errors = family(second, "pg_log_errors_total")
        assert errors.value(type="statement_timeout") == 1
        assert errors.value(type="unique_violation") == 1
        assert errors.value(type="deadlock_detected") == 0  # known kinds are served at 0
        assert family(second, "postgresql_errors_total").samples == errors.samples
        assert family(second, "pg_log_unread_bytes").samples[0][1] == 0
        # A new log file: the rest of the old one, then the new one.
        conn.execute("SELECT pg_rotate_logfile()")
        _errors(cluster)

        def rotated() -> Any:
            result, _ = run("log_errors", conn, previous=(at, second.state))
            return result if family(result, "pg_log_errors_total").value(type="statement_timeout") == 2 else None

        third = wait_until(rotated, timeout=10, message="the errors of the new log file")
        assert family(third, "pg_log_errors_total").value(type="unique_violation") == 2
        # A small budget: the log is read over several samples, and the lag is served.
        _errors(cluster)
        small = LogErrorsOptions(max_bytes=4096)
        state, seen = third.state, 0.0
        for _ in range(50):
            result, _ = run("log_errors", conn, previous=(at, state), options=small)
            state = result.state
            seen = family(result, "pg_log_errors_total").value(type="unique_violation")
            if seen == 3:
                break
        assert seen == 3


def test_without_a_log_file_the_collector_is_disabled(pg_conn: psycopg.Connection[Any]) -> None:
    if pg_conn.execute("SELECT current_setting('logging_collector') = 'on'").fetchone()[0]:
        pytest.fail("the session cluster is expected to run without logging_collector")
    with pytest.raises(CollectorDisabled) as info:
        run("log_errors", pg_conn)
    assert info.value.reason == "unsupported"


def test_kinds_and_records_spanning_lines() -> None:
    assert kind("57014", "canceling statement due to statement timeout") == "statement_timeout"
    assert kind("55P03", "canceling statement due to lock timeout") == "lock_timeout"
    assert kind("57014", "canceling statement due to user request") == "query_canceled"
    assert kind("40P01", "deadlock detected") == "deadlock_detected"
    assert kind("XX000", "x") == "internal_error"
    head = b'2024-01-01 00:00:00 UTC,"u","d",1,"h",s,1,"",t,3/4,0,ERROR,40P01,"deadlock detected","Process 1\n'
    counts: dict[str, int] = {}
    assert count_csv(head, counts) == 0 and counts == {}  # the record goes on: nothing consumed
    whole = head + b'waits",,,,,,,,"psql","client backend",,0\n'
    assert count_csv(whole, counts) == len(whole) and counts == {"deadlock_detected": 1}
