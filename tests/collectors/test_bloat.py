"""The bloat collector and ``pgperf bloat``: estimates on a table bloated on purpose,
checked against pgstattuple's exact figures, with and without the extension."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from collecting import run_once, samples, scrape_lint
from pgperf.collectors.bloat import BloatOptions, Inputs, estimate
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors

ROOT = Path(__file__).resolve().parents[2]
DB = "bloat_probe"
# 300 000 rows of mixed types; 60 % deleted and 10 % updated, then VACUUM: the heap and
# its indexes keep their size with most of their space free.
BLOATED = """
CREATE TABLE bloated (id bigint, account int, created timestamptz, note text, flag boolean, amount numeric(12,2));
INSERT INTO bloated SELECT i, i % 1000, now() - i * interval '1 minute', md5(i::text) || repeat('x', i % 40),
                           i % 2 = 0, (i % 5000) / 3.0
FROM generate_series(1, 300000) i;
CREATE INDEX bloated_account ON bloated (account);
CREATE INDEX bloated_id ON bloated (id);
CREATE INDEX bloated_note ON bloated (note);
CREATE INDEX bloated_lower ON bloated (lower(note));
DELETE FROM bloated WHERE id % 10 < 6;
UPDATE bloated SET note = note || 'y' WHERE id % 10 = 7;
CREATE TABLE compact AS SELECT i AS id, md5(i::text) AS note FROM generate_series(1, 50000) i;
CREATE TABLE unanalyzed AS SELECT i AS id FROM generate_series(1, 10000) i;
CREATE SCHEMA s1; CREATE SCHEMA s2; CREATE TABLE s1.twice (i int); CREATE TABLE s2.twice (i int);
"""


@pytest.fixture(scope="module")
def probe(pg_cluster: Cluster) -> Iterator[Cluster]:
    pg_cluster.execute(f"DROP DATABASE IF EXISTS {DB}")
    pg_cluster.execute(f"CREATE DATABASE {DB}")
    pg_cluster.execute(BLOATED, dbname=DB)
    pg_cluster.execute("VACUUM ANALYZE bloated", dbname=DB)
    pg_cluster.execute("VACUUM ANALYZE compact", dbname=DB)
    pg_cluster.execute("VACUUM unanalyzed", dbname=DB)  # pages counted, no column statistics
    yield pg_cluster
    pg_cluster.execute(f"DROP DATABASE IF EXISTS {DB}")


@pytest.fixture
def with_pgstattuple(probe: Cluster) -> Iterator[Cluster]:
    probe.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple", dbname=DB)
    yield probe
    probe.execute("DROP EXTENSION IF EXISTS pgstattuple", dbname=DB)


def _pgperf(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPERF_", "PG"))}
    return subprocess.run([sys.executable, "-m", "pgperf", "bloat", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def _within(estimated: float, exact: float, share: float = 0.2) -> bool:
    return abs(estimated - exact) <= share * exact


def test_estimates_within_20_percent_of_pgstattuple(with_pgstattuple: Cluster) -> None:
    with with_pgstattuple.connect(DB) as conn:
        result = run_once("bloat", conn)
        tables = samples(result, "pg_table_bloat_bytes")
        indexes = samples(result, "pg_index_bloat_bytes")
        estimated = tables[(DB, "public", "bloated")]
        exact = conn.execute("SELECT table_len, tuple_count, tuple_len, free_space, dead_tuple_len "
                             "FROM pgstattuple('bloated')").fetchone()
        index_exact = {name: conn.execute(
            "SELECT index_size, internal_pages, leaf_pages, avg_leaf_density FROM pgstatindex(%s)", (name,)).fetchone()
            for name in ("bloated_account", "bloated_id", "bloated_note", "bloated_lower")}
    table_len, _, _, free_space, dead_len = exact
    # pgstattuple's reclaimable space, as DBAs read it: free space plus dead tuples.
    assert _within(estimated, free_space + dead_len), (estimated, free_space + dead_len)
    assert 0.5 < samples(result, "pg_table_bloat_ratio")[(DB, "public", "bloated")] < 0.7
    assert estimated > 0.5 * table_len
    for name, (size, internal, leaf, density) in index_exact.items():
        measured = size - (1 + internal + leaf * density / 90) * 8192
        assert _within(indexes[(DB, "public", "bloated", name)], measured), (name, indexes, measured)
    # The freshly written table is not bloated (less than a page per thousand).
    assert tables.get((DB, "public", "compact"), 0) < 0.01 * 8192 * 500


def test_unestimated_tables_are_counted(probe: Cluster) -> None:
    with probe.connect(DB) as conn:
        result = run_once("bloat", conn)
    assert (DB, "public", "unanalyzed") not in samples(result, "pg_table_bloat_bytes")
    assert samples(result, "pgperf_bloat_unestimated")[(DB, "table")] == 1
    assert samples(result, "pgperf_bloat_estimated")[(DB, "table")] == 2
    assert samples(result, "pgperf_bloat_estimated")[(DB, "index")] == 4


def _monitor_role(cluster: Cluster) -> None:
    """bloat_monitor: pg_monitor and nothing else (password monitor-pw)."""
    cluster.execute("DO $$ BEGIN CREATE ROLE bloat_monitor LOGIN PASSWORD 'monitor-pw' IN ROLE pg_monitor; "
                    "EXCEPTION WHEN duplicate_object THEN NULL; END $$")


def test_statistics_hidden_from_the_role(probe: Cluster) -> None:
    _monitor_role(probe)
    with probe.connect(DB, user="bloat_monitor", password="monitor-pw") as conn:  # pg_stats shows it nothing
        result = run_once("bloat", conn)
    assert samples(result, "pg_table_bloat_bytes") == {}
    assert samples(result, "pgperf_bloat_unestimated") == {(DB, "table"): 3, (DB, "index"): 4}


def test_helper_gives_the_statistics_to_a_least_privileged_role(probe: Cluster) -> None:
    """docs/setup-bloat.sql, run by a superuser after docs/setup-role.sql: the pg_monitor
    role gets the estimates, and still reads no values of the statistics."""
    _monitor_role(probe)
    probe.execute((ROOT / "docs" / "setup-role.sql").read_text(), dbname=DB)
    probe.execute("ALTER ROLE pgperf PASSWORD 'pgperf-pw'")
    try:
        probe.execute((ROOT / "docs" / "setup-bloat.sql").read_text(), dbname=DB)
        probe.execute((ROOT / "docs" / "setup-bloat.sql").read_text(), dbname=DB)  # again: no error
        with probe.connect(DB, user="pgperf", password="pgperf-pw") as conn:
            result = run_once("bloat", conn)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM pg_catalog.pg_statistic")
            hidden = conn.execute("SELECT count(*) FROM pg_stats WHERE tablename = 'bloated'").fetchone()
        assert hidden == (0,)  # pg_stats itself still shows it nothing
        tables = samples(result, "pg_table_bloat_bytes")
        assert tables[(DB, "public", "bloated")] > 0
        assert samples(result, "pgperf_bloat_unestimated") == {(DB, "table"): 1, (DB, "index"): 0}
        with probe.connect(DB, user="bloat_monitor", password="monitor-pw") as other:  # not granted
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                other.execute("SELECT * FROM pgperf.column_stats()")
    finally:
        probe.execute("DROP SCHEMA IF EXISTS pgperf CASCADE", dbname=DB)


def test_limit_serves_the_most_bloated(probe: Cluster) -> None:
    with probe.connect(DB) as conn:
        result = run_once("bloat", conn, options=BloatOptions(limit=1))
    assert list(samples(result, "pg_table_bloat_bytes")) == [(DB, "public", "bloated")]
    assert len(samples(result, "pg_index_bloat_bytes")) == 1
    assert samples(result, "pgperf_bloat_truncated") == {(DB, "table"): 1, (DB, "index"): 1}


def test_deduplicated_index_estimate() -> None:
    # 120 000 entries over 1 000 keys: the key once per group, 6 bytes per extra row.
    row = Inputs(1, "s", "t", "t_key", 300, 120000, 90, 1, 1, 4.0, False, True, 1000.0)
    plain = estimate(Inputs(**{**vars(row), "dedup": False}), 8192)
    deduplicated = estimate(row, 8192)
    assert plain is not None and deduplicated is not None
    assert plain.bloat_bytes == 0  # 120 000 × 20 bytes need more than 300 pages
    assert 150 * 8192 < deduplicated.bloat_bytes < 250 * 8192
    assert estimate(Inputs(**{**vars(row), "with_stats": 0}), 8192) is None


def test_cli_exact_with_pgstattuple(with_pgstattuple: Cluster) -> None:
    dsn = with_pgstattuple.dsn(dbname=DB)
    done = _pgperf("--dsn", dsn, "--exact", "--json", "public.bloated")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["table"] == "public.bloated" and report["exact_unavailable"] is None
    table = report["objects"][0]
    assert table["kind"] == "table" and table["pgstattuple"]["tuple_count"] == 120000
    assert _within(table["estimate"]["bloat_bytes"], table["exact_bloat_bytes"])
    assert {o["name"] for o in report["objects"][1:]} == {
        "public.bloated_account", "public.bloated_id", "public.bloated_note", "public.bloated_lower"}
    text = _pgperf("--dsn", dsn, "--exact", "bloated")
    assert text.returncode == 0 and "exact (pgstattuple)" in text.stdout and "public.bloated_note" in text.stdout


def test_cli_without_pgstattuple_degrades(probe: Cluster) -> None:
    # The database option picks the table's database on the target's server.
    done = _pgperf("--dsn", probe.dsn(), "--database", DB, "--exact", "bloated")
    assert done.returncode == 1
    assert "Exact figures unavailable: the pgstattuple extension is not installed in database bloat_probe" \
        in done.stdout
    assert "CREATE EXTENSION pgstattuple" in done.stdout
    assert "public.bloated" in done.stdout and "%" in done.stdout  # the estimates are still shown
    estimate_only = _pgperf("--dsn", probe.dsn(), "--database", DB, "bloated")
    assert estimate_only.returncode == 0 and "unavailable" not in estimate_only.stdout


def test_cli_bad_table_is_a_usage_error(probe: Cluster) -> None:
    for name in ("no_such_table", "bad..name", "bloated_id", "other.bloated", "twice"):
        done = _pgperf("--dsn", probe.dsn(dbname=DB), name)
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert done.stderr.startswith("pgperf bloat: ") and "Traceback" not in done.stderr
    assert "s1.twice, s2.twice" in done.stderr


def test_scrape_is_lint_clean(probe: Cluster) -> None:
    text, problems = scrape_lint(probe.dsn(dbname=DB), "bloat", "pg_table_bloat_bytes{")
    assert not [p for p in problems if p.startswith(("pg_table_bloat", "pg_index_bloat", "pgperf_bloat"))], problems
    assert 'relname="bloated"' in text
