"""pg_stat_user_tables and pg_statio_user_tables (the tables collector)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from collecting import family, run
from pgperf.collectors.tables import TablesOptions, families_from_rows
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors


def test_tables_statistics_sizes_and_vacuum_times(pg_cluster: Cluster) -> None:
    pg_cluster.execute("DROP DATABASE IF EXISTS tables_db")
    pg_cluster.execute("CREATE DATABASE tables_db")
    with pg_cluster.connect("tables_db") as conn:
        conn.execute("CREATE TABLE busy (id int PRIMARY KEY, payload text)")
        conn.execute("INSERT INTO busy SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g")
        conn.execute("DELETE FROM busy WHERE id <= 100")
        conn.execute("CREATE TABLE quiet (id int)")
        conn.execute("ANALYZE busy")
        deadline = time.monotonic() + 5
        while True:  # up to 14 the statistics collector gets the counts asynchronously
            result, _ = run("tables", conn)
            dead = family(result, "pg_stat_user_tables_n_dead_tup").value(relname="busy")
            if (dead or 0) >= 100 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    busy = {"datname": "tables_db", "schemaname": "public", "relname": "busy"}
    assert family(result, "pg_stat_user_tables_n_dead_tup").labels == ("datname", "schemaname", "relname")
    assert family(result, "pg_stat_user_tables_n_tup_ins").value(**busy) == 1000
    assert family(result, "pg_stat_user_tables_n_dead_tup").value(**busy) == 100
    assert (family(result, "pg_stat_user_tables_table_size_bytes").value(**busy) or 0) > 8192
    assert (family(result, "pg_stat_user_tables_index_size_bytes").value(**busy) or 0) >= 8192
    assert (family(result, "pg_stat_user_tables_last_analyze").value(**busy) or 0) > time.time() - 600
    # Never vacuumed: NULL, served as postgres_exporter serves it (0), not left out.
    assert family(result, "pg_stat_user_tables_last_vacuum").value(**busy) == 0
    assert family(result, "pg_stat_user_tables_last_autovacuum").value(relname="quiet") == 0
    # pgperf's rule elsewhere: a table without a TOAST table has no TOAST counters.
    assert family(result, "pg_statio_user_tables_toast_blocks_read").value(relname="quiet") is None
    assert family(result, "pg_statio_user_tables_heap_blocks_hit").value(**busy) is not None
    assert family(result, "pg_stat_user_tables_seq_scan").value(relname="quiet") is not None
    assert family(result, "pgperf_tables").value(datname="tables_db") == 2
    assert family(result, "pgperf_tables_truncated").value(datname="tables_db") == 0


def test_tables_limit_keeps_largest_and_busiest(pg_cluster: Cluster) -> None:
    pg_cluster.execute("DROP DATABASE IF EXISTS limit_db")
    pg_cluster.execute("CREATE DATABASE limit_db")
    with pg_cluster.connect("limit_db") as conn:
        for i in range(6):
            conn.execute(f"CREATE TABLE small_{i} (id int)")
        conn.execute("CREATE TABLE large (id int)")
        conn.execute("INSERT INTO large SELECT generate_series(1, 50000)")
        conn.execute("VACUUM large")  # relpages, the size ranking's input, is set by VACUUM/ANALYZE
        deadline = time.monotonic() + 5
        while True:
            for _ in range(3):
                conn.execute("SELECT * FROM small_3")
            result, _ = run("tables", conn, options=TablesOptions(limit=2))
            served = {labels[2] for labels, _ in family(result, "pg_stat_user_tables_seq_scan").samples}
            if served == {"large", "small_3"} or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    assert served == {"large", "small_3"}
    assert family(result, "pgperf_tables").value(datname="limit_db") == 7
    assert family(result, "pgperf_tables_truncated").value(datname="limit_db") == 1
    assert family(result, "pgperf_tables_served").value(datname="limit_db") == 2


def test_tables_rows_mapped_by_name() -> None:
    """Canned rows: unknown columns are ignored, missing ones not served, a NULL time is 0."""
    row = {"datname": "d", "schemaname": "s", "relname": "r", "seq_scan": 3, "n_dead_tup": 7,
           "last_vacuum": None, "last_analyze": datetime(2024, 1, 1, tzinfo=UTC),
           "a_column_of_postgresql_99": 1, "table_size": 8192}
    fams = {f.name: f for f in families_from_rows([row], "d", total=5, limit=1)}
    assert fams["pg_stat_user_tables_seq_scan"].value(relname="r") == 3
    assert fams["pg_stat_user_tables_last_vacuum"].value(relname="r") == 0
    assert fams["pg_stat_user_tables_last_analyze"].value(relname="r") == 1704067200
    assert "pg_stat_user_tables_idx_scan" not in fams  # column absent: family absent
    assert not any("postgresql_99" in name for name in fams)
    assert fams["pgperf_tables_truncated"].value(datname="d") == 1
    assert fams["pgperf_tables_served"].value(datname="d") == 1


def test_tables_are_chosen_and_measured_on_their_own_interval(pg_cluster: Cluster) -> None:
    pg_cluster.execute("DROP DATABASE IF EXISTS sizes_db")
    pg_cluster.execute("CREATE DATABASE sizes_db")
    with pg_cluster.connect("sizes_db") as conn:
        conn.execute("CREATE TABLE grows (id int PRIMARY KEY, payload text)")
        first, at = run("tables", conn)
        size = family(first, "pg_stat_user_tables_table_size_bytes").value(relname="grows")
        assert size is not None and first.state.sizes
        conn.execute("INSERT INTO grows SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g")
        # Within the interval: the same tables, fresh statistics, the last size.
        deadline = time.monotonic() + 5
        while True:  # the statistics reach the views asynchronously (within a second)
            second, at2 = run("tables", conn, previous=(at, first.state))
            inserted = family(second, "pg_stat_user_tables_n_tup_ins").value(relname="grows")
            if inserted == 5000 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert inserted == 5000
        assert family(second, "pg_stat_user_tables_table_size_bytes").value(relname="grows") == size
        # A table created: chosen at once, and measured, the others keeping their sizes.
        conn.execute("CREATE TABLE newer (id int)")
        third, at3 = run("tables", conn, previous=(at2, second.state))
        assert family(third, "pg_stat_user_tables_table_size_bytes").value(relname="newer") is not None
        assert family(third, "pg_stat_user_tables_table_size_bytes").value(relname="grows") == size
        assert family(third, "pgperf_tables").value(datname="sizes_db") == 2
        assert third.state.at == first.state.at
        # Once the interval has passed, every size is measured again.
        fourth, _ = run("tables", conn, previous=(at3, third.state), options=TablesOptions(refresh_interval=0.001))
        assert (family(fourth, "pg_stat_user_tables_table_size_bytes").value(relname="grows") or 0) > size
        assert fourth.state.at > first.state.at
