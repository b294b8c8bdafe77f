"""The indexes collector: invalid, unused, duplicate and overlapping indexes of a database
built for the purpose, and the classification on canned catalog rows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from collecting import run_once, samples, scrape_lint
from helpers import wait_until
from pgperf.collectors.indexes import Index, IndexesOptions, analyse
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors

DB = "index_probe"
SCHEMA = """
CREATE TABLE parent (id int, CONSTRAINT parent_id UNIQUE (id));
CREATE TABLE t (a int PRIMARY KEY, b int, c text, p int REFERENCES parent (id));
INSERT INTO parent SELECT i FROM generate_series(1, 100) i;
INSERT INTO t SELECT i, i % 100, 'v' || (i % 1000), 1 + i % 100 FROM generate_series(1, 20000) i;
CREATE INDEX t_b ON t (b);
CREATE INDEX t_b_again ON t (b);                  -- duplicate of t_b
CREATE INDEX t_b_c ON t (b, c);                   -- t_b leads it: t_b overlaps
CREATE INDEX t_b_partial ON t (b) WHERE a > 10;   -- another predicate: neither
CREATE UNIQUE INDEX t_c_unique ON t (c, a);
CREATE INDEX t_c_a ON t (c, a);                   -- duplicate of the unique one, which is kept
CREATE INDEX t_b_desc ON t (b DESC);              -- another sort order: not a duplicate of t_b
CREATE INDEX t_lower ON t (lower(c));
CREATE INDEX t_lower_again ON t (lower(c));       -- duplicate expressions
CREATE INDEX t_b_hash ON t USING hash (b);        -- only b-trees overlap
"""


@pytest.fixture(scope="module")
def probe(pg_cluster: Cluster) -> Iterator[Cluster]:
    pg_cluster.execute(f"DROP DATABASE IF EXISTS {DB}")
    pg_cluster.execute(f"CREATE DATABASE {DB}")
    pg_cluster.execute(SCHEMA, dbname=DB)
    # A failed concurrent build leaves an invalid index behind (b has duplicate values).
    with pytest.raises(psycopg.errors.UniqueViolation):
        pg_cluster.execute("CREATE UNIQUE INDEX CONCURRENTLY t_b_invalid ON t (b)", dbname=DB)
    # Scans: t_b_c and the primary key are used; ANALYZE sets relpages.
    with pg_cluster.connect(DB) as conn:
        conn.execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        conn.execute("SELECT * FROM t WHERE b = 5 AND c = 'v5'").fetchall()
        conn.execute("ANALYZE")
    yield pg_cluster
    pg_cluster.execute(f"DROP DATABASE IF EXISTS {DB}")


def _run(cluster: Cluster, **options: Any) -> Any:
    with cluster.connect(DB) as conn:
        def scanned() -> Any:
            result = run_once("indexes", conn, options=IndexesOptions(**options))
            # Up to PostgreSQL 14 the statistics collector counts the scan up to 500 ms later.
            return result if ("t_b_c",) not in {k[3:] for k in samples(result, "pg_index_unused_bytes")} else None
        return wait_until(scanned, message="the scan of t_b_c counted")


def test_findings_of_a_real_database(probe: Cluster) -> None:
    result = _run(probe)
    invalid = samples(result, "pg_index_invalid_bytes")
    # The build failed before writing anything: an empty file, but a sample (not "unknown").
    assert invalid == {(DB, "public", "t", "t_b_invalid"): 0}
    duplicate = {k[3]: k[4] for k in samples(result, "pg_index_duplicate_bytes")}
    assert duplicate == {"t_b_again": "t_b", "t_c_a": "t_c_unique", "t_lower_again": "t_lower"}
    overlapping = {k[3]: k[4] for k in samples(result, "pg_index_overlapping_bytes")}
    assert overlapping == {"t_b": "t_b_c"}
    unused = {k[3] for k in samples(result, "pg_index_unused_bytes")}
    # Never scanned and enforcing nothing; the unique ones, the primary key, the constraint
    # a foreign key references, the scanned t_b_c and the invalid one are not "unused".
    assert unused == {"t_b", "t_b_again", "t_b_partial", "t_c_a", "t_b_desc", "t_lower", "t_lower_again", "t_b_hash"}
    assert samples(result, "pg_indexes_unused") == {(DB,): 8}
    assert samples(result, "pg_indexes_invalid") == {(DB,): 1}
    sizes = samples(result, "pg_index_unused_bytes")
    assert all(v >= 8192 and v % 8192 == 0 for v in sizes.values())
    assert samples(result, "pg_index_stats_age_seconds")[(DB,)] > 0
    assert set(samples(result, "pgperf_indexes_truncated").values()) == {0}


def test_limit_serves_the_largest_and_counts_them_all(probe: Cluster) -> None:
    every = samples(_run(probe), "pg_index_unused_bytes")
    result = _run(probe, limit=1)
    unused = samples(result, "pg_index_unused_bytes")
    assert len(unused) == 1 and list(unused.values())[0] == max(every.values())
    assert samples(result, "pg_indexes_unused") == {(DB,): 8}
    truncated = samples(result, "pgperf_indexes_truncated")
    assert truncated[(DB, "unused")] == 1 and truncated[(DB, "duplicate")] == 1
    assert truncated[(DB, "invalid")] == 0 and truncated[(DB, "overlapping")] == 0


def test_an_index_being_built_is_not_invalid(probe: Cluster) -> None:
    writer = probe.connect(DB)
    writer.autocommit = False
    # A writer of t: CREATE INDEX CONCURRENTLY waits for it ("waiting for writers before build").
    writer.execute("INSERT INTO t VALUES (900001, 1, 'w', 1)")
    errors: list[Exception] = []

    def build() -> None:
        try:
            probe.execute("CREATE INDEX CONCURRENTLY t_building ON t (c)", dbname=DB)
        except psycopg.Error as exc:
            errors.append(exc)

    thread = threading.Thread(target=build)
    thread.start()
    try:
        wait_until(lambda: probe.execute("SELECT count(*) FROM pg_stat_progress_create_index")[0][0],
                   message="the concurrent build")
        assert probe.execute("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = 't_building'::regclass",
                             dbname=DB)[0][0]
        result = _run(probe)
    finally:
        writer.rollback()
        writer.close()
        thread.join(30)
        probe.execute("DROP INDEX IF EXISTS t_building", dbname=DB)
    assert not errors, errors
    assert [k[3] for k in samples(result, "pg_index_invalid_bytes")] == ["t_b_invalid"]


def _index(oid: int, columns: tuple[int, ...], *, key: int | None = None, am: str = "btree", unique: bool = False,
           predicate: str | None = None, scans: int = 1) -> Index:
    n = len(columns) if key is None else key
    return Index(oid, 1, "s", "t", f"i{oid}", am, True, unique, False, unique, n, columns, (1,) * n, (0,) * n,
                 (0,) * n, None, predicate, scans, 10, False)


def test_overlap_rules_on_canned_rows() -> None:
    found = analyse([
        _index(1, (1,)), _index(2, (1, 2)), _index(3, (1, 2, 3)),   # 1 and 2 lead 3
        _index(4, (2,), unique=True), _index(5, (2, 3)),           # unique: never overlapping
        _index(6, (3, 4), key=1), _index(7, (3, 4)),               # INCLUDE (4) covered by 7's keys
        _index(8, (5, 6), key=1), _index(9, (5, 7)),               # INCLUDE (6) not covered
    ])
    assert {(a.oid, b.oid) for a, b in found.overlapping} == {(1, 2), (2, 3), (6, 7)}
    assert found.unused == [] and found.duplicate == []


def test_scrape_is_lint_clean(probe: Cluster) -> None:
    _, problems = scrape_lint(probe.dsn(), "indexes", "pg_index_duplicate_bytes{", )
    assert not [p for p in problems if p.startswith(("pg_index", "pgperf_indexes"))], problems
