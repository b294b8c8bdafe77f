"""Query insight wired into the product, on every major of the matrix: wait sampling between
samples on the sampler's own connection, Lock waits of a blocked statement on /metrics and in
the store, plans captured by the running exporter (the path each major takes) without any
statement being executed, the statement API, and the configuration."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from helpers import Exporter, make_config, parse, value, wait_until
from pgperf.collectors import Family, MetricDef
from pgperf.config import ConfigError, load_config
from pgperf.db import ServerInfo
from pgperf.sampling import TargetSampler
from pgperf.store.rows import ResourceRow, SampleBatch
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors

VIEWER = "viewer-token-0123456789"
AUTH = {"Authorization": f"Bearer {VIEWER}"}
DB = "insight_wire"
WORK = MetricDef("test_between_runs_total", "counter", "Runs of the test's work between samples.")


class Work:
    """Between-samples work that records the backend it ran on."""

    def __init__(self, interval: float, fail: bool = False) -> None:
        self.interval = interval
        self.fail = fail
        self.pids: list[int] = []

    def run(self, conn: psycopg.Connection[Any], server: ServerInfo) -> None:
        self.pids.append(conn.info.backend_pid)
        if self.fail:
            raise RuntimeError("a defect in the work")

    def families(self) -> Iterable[Family]:
        return (WORK.single(len(self.pids)),)


@pytest.mark.parametrize("fail", [False, True], ids=["works", "fails"])
def test_work_between_samples_uses_the_samplers_connection(pg_cluster: Cluster, fail: bool) -> None:
    config = make_config(pg_cluster.dsn())
    work = Work(0.2, fail=fail)
    sampler = TargetSampler(config.resolved_targets()[0], config, between=work)
    sampler.open()
    stop = threading.Event()
    thread = threading.Thread(target=sampler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        # A work that raises is logged; sampling goes on.
        wait_until(lambda: len(work.pids) >= 8 and sampler.counters.samples >= 3, timeout=20,
                   message="work between three samples")
    finally:
        stop.set()
        thread.join(10)
    try:
        with sampler.db.connection() as conn:  # the pool's one connection: the sampler's
            sampler_pid = conn.info.backend_pid
    finally:
        sampler.close()
    assert set(work.pids) == {sampler_pid}, "the work ran on the sampler's own connection, never a new one"
    latest = sampler.latest
    assert latest is not None and latest.up and sampler.counters.failed_samples == 0
    family = latest.family("test_between_runs_total")
    assert family is not None and family.samples[0][1] >= 1


@pytest.fixture(scope="module")
def wire_db(pg_cluster: Cluster) -> Iterator[str]:
    pg_cluster.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg_cluster.execute(f"CREATE DATABASE {DB}")
    with pg_cluster.connect(DB) as conn:
        conn.execute("CREATE TABLE players (id int PRIMARY KEY, nick text NOT NULL, chips bigint NOT NULL)")
        conn.execute("CREATE TABLE ledger (id bigserial PRIMARY KEY, player_id int NOT NULL, amount bigint NOT NULL)")
        conn.execute("INSERT INTO players SELECT g, 'p' || g, 1000 FROM generate_series(1, 20000) g")
        conn.execute("INSERT INTO ledger (player_id, amount) SELECT g % 20000 + 1, g FROM generate_series(1, 20000) g")
        conn.execute("VACUUM ANALYZE")
    yield DB
    pg_cluster.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


@contextmanager
def exporter(pg_cluster: Cluster, schema: str, tmp_path: Path, **flags: Any) -> Iterator[Exporter]:
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    config = make_config(pg_cluster.dsn(), store={"enabled": True, "schema": schema,
                                                  "spool_dir": str(tmp_path / "spool")},
                         api={"viewer_token": VIEWER}, **flags)
    running = Exporter(config).start()
    try:
        store = running.app.store
        wait_until(lambda: store is not None and store.up, message="the store migrated")
        yield running
    finally:
        running.stop()
        pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextmanager
def blocked_update(pg_cluster: Cluster) -> Iterator[None]:
    """An UPDATE of player 1 waiting for another transaction's row lock."""
    holder, blocked = pg_cluster.connect(DB), pg_cluster.connect(DB)
    holder.execute("BEGIN")
    holder.execute("UPDATE players SET chips = chips WHERE id = 1")
    thread = threading.Thread(target=lambda: blocked.execute("UPDATE players SET chips = chips + %s WHERE id = %s",
                                                             (5, 1)))
    thread.start()
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        thread.join(10)
        holder.close()
        blocked.close()


def test_a_blocked_statement_shows_lock_waits_on_metrics_and_in_the_store(
        pg_cluster: Cluster, wire_db: str, tmp_path: Path) -> None:
    schema = "insight_wire_locks"
    with exporter(pg_cluster, schema, tmp_path, insight={"waits": {"interval": "200ms"}}) as running:
        with blocked_update(pg_cluster):
            def lock_samples() -> float | None:
                return value(running.scrape(), "pgperf_wait_event_samples_total", source="pg_stat_activity",
                             wait_event_type="Lock", wait_event="transactionid")
            assert wait_until(lambda: (lock_samples() or 0) >= 5, timeout=30, message="Lock samples on /metrics")

            def stored() -> list[tuple[Any, ...]]:
                return pg_cluster.execute(
                    f"SELECT query_id, wait_event, sum(samples), sum(seconds) FROM {schema}.statement_wait_profiles"
                    " WHERE wait_event_type = 'Lock' AND wait_event = 'transactionid' GROUP BY 1, 2")
            rows = wait_until(lambda: [r for r in stored() if r[2] >= 3], timeout=30, message="Lock waits stored")
        scraped = running.scrape()
    qid = pg_cluster.execute("SELECT queryid::text FROM pg_stat_statements WHERE query LIKE"
                             " 'UPDATE players SET chips = chips + $1 WHERE id = $2'")[0][0]
    if pg_cluster.major >= 14:
        assert {r[0] for r in rows} == {qid}, "the Lock waits belong to the blocked UPDATE"
    else:
        assert {r[0] for r in rows} == {None}, "PostgreSQL 13 shows no query_id in pg_stat_activity"
    assert {r[1] for r in rows} == {"transactionid"}
    assert all(r[3] == pytest.approx(0.2 * int(r[2])) for r in rows), "each sample stands for the 200 ms between looks"
    # /metrics has no statement label on the wait families, and says how often it looked.
    lock = [labels for labels, _ in scraped["pgperf_wait_event_samples_total"] if labels["wait_event_type"] == "Lock"]
    assert lock and all(set(labels) == {"source", "wait_event_type", "wait_event"} for labels in lock)
    assert (value(scraped, "pgperf_wait_sampling_readings_total", source="pg_stat_activity") or 0) >= 5


def _facts(pg_cluster: Cluster) -> tuple[Any, ...]:
    return pg_cluster.execute(
        "SELECT (SELECT count(*) FROM players), (SELECT sum(chips) FROM players), (SELECT count(*) FROM ledger),"
        " (SELECT sum(amount) FROM ledger), (SELECT last_value FROM ledger_id_seq)", DB)[0]


def test_the_exporter_plans_writes_without_executing_them(pg_cluster: Cluster, wire_db: str, tmp_path: Path) -> None:
    writes = [
        ("INSERT INTO ledger (player_id, amount) VALUES (%s, %s)", (1, 10)),
        ("UPDATE players SET chips = chips - %s WHERE id = %s", (10, 2)),
        ("DELETE FROM ledger WHERE player_id = %s", (3,)),
        ("WITH gone AS (DELETE FROM players WHERE chips > %s RETURNING id) SELECT count(*) FROM gone", (0,)),
        ("SELECT nextval('ledger_id_seq') FROM players WHERE id = %s", (4,)),
    ]
    if pg_cluster.major >= 15:
        writes.append(("MERGE INTO players p USING (SELECT %s::int AS id) s ON p.id = s.id WHEN MATCHED THEN DELETE",
                       (5,)))
    schema = "insight_wire_plans"
    with exporter(pg_cluster, schema, tmp_path, insight={"plans": {"interval": "1s", "max_statements": 1000}}) as running:
        wait_until(lambda: running.sampler.targets[running.config.resolved_targets()[0].name].counters.samples >= 2,
                   message="two samples (the statements' baseline)")
        with pg_cluster.connect(DB) as app:
            for text, params in writes:  # each once, then undone: pg_stat_statements keeps them
                app.execute("BEGIN")
                app.execute(text, params)
                app.execute("ROLLBACK")
        before = _facts(pg_cluster)
        # (pg_stat_statements numbers constants after the parameters: nextval($2) ... id = $1)
        texts = [t.split("%s")[0].split("'")[0] + "%" for t, _ in writes]

        def planned() -> list[tuple[Any, ...]]:
            return pg_cluster.execute(
                f"SELECT s.query, p.method, p.plan_hash FROM {schema}.statement_plans p JOIN pg_stat_statements s"
                " ON s.queryid::text = p.query_id WHERE p.datname = %s AND s.query LIKE ANY(%s)", params=(DB, texts))
        rows = wait_until(lambda: (r := planned()) and len({q for q, _, _ in r}) == len(writes) and r, timeout=40,
                          message="a plan of every write")
        captured = value(running.scrape(), "pgperf_statement_plans_captured_total")
        # Refreshes go on while the statements stay among the latest: still nothing written.
        wait_until(lambda: (value(running.scrape(), "pgperf_statement_plans_captured_total") or 0) > (captured or 0),
                   timeout=30, message="another refresh")
        assert _facts(pg_cluster) == before, "planning wrote something"
    method = "generic_plan" if pg_cluster.major >= 16 else "prepared_generic"
    assert {m for _, m, _ in rows} == {method}, "PostgreSQL 16+ plans GENERIC_PLAN, 13-15 a prepared generic plan"
    assert pg_cluster.execute("SELECT count(*) FROM pg_prepared_statements")[0][0] == 0
    # No pgperf session is left holding a lock or a transaction.
    assert pg_cluster.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgperf%%'"
                              " AND state <> 'idle'")[0][0] == 0


def test_statement_api(pg_cluster: Cluster, wire_db: str, tmp_path: Path) -> None:
    schema = "insight_wire_api"
    with exporter(pg_cluster, schema, tmp_path, insight={"plans": {"interval": "1s", "max_statements": 1000}}) as running:
        with pg_cluster.connect(DB) as app:
            wait_until(lambda: running.sampler.snapshots(), message="a first sample")
            qid = 0

            def planned() -> int:
                nonlocal qid
                app.execute("SELECT nick FROM players WHERE chips > %s ORDER BY nick LIMIT 5", (999,))
                rows = pg_cluster.execute(
                    f"SELECT p.query_id FROM {schema}.statement_plans p JOIN pg_stat_statements s"
                    " ON s.queryid::text = p.query_id WHERE s.query LIKE 'SELECT nick FROM players WHERE chips >%%'")
                qid = int(rows[0][0]) if rows else 0
                return qid
            wait_until(planned, timeout=30, interval=0.5, message="a stored plan of the statement")
        answer = running.get(f"/api/v1/statements/{qid}", headers=AUTH)
        assert answer.status_code == 200, answer.text
        detail = answer.json()
        assert detail["query_id"] == str(qid) and detail["datname"] == DB
        # expose_query_text is off: no text, and plans without their expressions.
        assert detail["query_text"] is None and detail["query_text_hidden"] is True
        plan = detail["plans"][0]
        assert set(plan) >= {"plan_hash", "first_seen", "last_seen", "plan"}
        assert "players" in json.dumps(plan["plan"]) and "chips" not in json.dumps(plan["plan"])
        assert detail["cost"]["calls"] >= 1 and 0 < detail["cost"]["share_of_db_time_percent"] <= 100
        assert detail["cost"]["cpu_seconds_per_day"] is not None
        assert isinstance(detail["waits"], list) and isinstance(detail["advice"], list)

        assert running.get(f"/api/v1/statements/{qid}").status_code == 401
        for bad in ("abc", "1.5", "99999999999999999999", "--1"):
            answer = running.get(f"/api/v1/statements/{bad}", headers=AUTH)
            assert answer.status_code == 400 and "query id" in answer.json()["error"], (bad, answer.text)
        assert running.get("/api/v1/statements/12345", headers=AUTH).status_code == 404
        unknown = running.get(f"/api/v1/statements/{qid}?target=nope", headers=AUTH)
        assert unknown.status_code == 400 and "unknown target" in unknown.json()["error"]
        assert running.get(f"/api/v1/statements/{qid}?from=yesterday", headers=AUTH).status_code == 400


def test_statement_api_shows_texts_and_expressions_where_allowed(pg_cluster: Cluster, wire_db: str,
                                                                 tmp_path: Path) -> None:
    schema = "insight_wire_text"
    with exporter(pg_cluster, schema, tmp_path, insight={"plans": {"interval": "1s", "max_statements": 1000}},
                  expose_query_text=True) as running:
        with pg_cluster.connect(DB) as app:
            wait_until(lambda: running.sampler.snapshots(), message="a first sample")

            def planned() -> list[tuple[Any, ...]]:
                app.execute("SELECT amount FROM ledger WHERE player_id = %s", (7,))
                return pg_cluster.execute(
                    f"SELECT p.query_id FROM {schema}.statement_plans p JOIN pg_stat_statements s"
                    " ON s.queryid::text = p.query_id WHERE s.query LIKE 'SELECT amount FROM ledger WHERE%%'")
            qid = wait_until(planned, timeout=30, interval=0.5, message="a stored plan")[0][0]
        detail = requests.get(f"{running.url}/api/v1/statements/{qid}", headers=AUTH, timeout=10).json()
    assert detail["query_text"] == "SELECT amount FROM ledger WHERE player_id = $1"
    assert "player_id" in json.dumps(detail["plans"][0]["plan"])


def test_insight_settings_and_their_variables() -> None:
    config = load_config(flags={"profile": "development"}, env={
        "PGPERF_INSIGHT_WAITS_INTERVAL": "500ms", "PGPERF_INSIGHT_PLANS_INTERVAL": "10m",
        "PGPERF_INSIGHT_PLANS_MAX_STATEMENTS": "20", "PGPERF_INSIGHT_WAITS_SOURCE": "pg_stat_activity"})
    insight = config.insight
    assert (insight.waits.interval, insight.plans.interval, insight.plans.max_statements) == (0.5, 600.0, 20)
    assert insight.waits.source == "pg_stat_activity"
    assert (insight.waits.every(10.0), insight.plans.every(10.0)) == (0.5, 600.0)  # set: whatever the sampling
    # Unset: a quarter of the sampling interval (at least 1 s), 80 of them (at least 5 minutes).
    for profile, waits, plans in (("development", 2.5, 800.0), ("production", 15.0, 4800.0),
                                  ("analytics", 30.0, 9600.0)):
        config = load_config(flags={"profile": profile}, env={})
        defaults = config.insight
        assert (defaults.waits.interval, defaults.plans.interval) == (None, None)
        assert defaults.waits.every(config.sampling_interval) == waits
        assert defaults.plans.every(config.sampling_interval) == plans
    assert (defaults.waits.every(1.0), defaults.plans.every(1.0)) == (1.0, 300.0)
    with pytest.raises(ConfigError) as refused:
        load_config(flags={"profile": "development"}, env={"PGPERF_INSIGHT_PLANS_MAX_STATEMENTS": "0",
                                                            "PGPERF_INSIGHT_WAITS_INTERVAL": "soon"})
    problems = "\n".join(refused.value.problems)
    assert "insight.plans.max_statements" in problems and "insight.waits.interval" in problems


def test_wait_rows_survive_the_spool() -> None:
    rows = [["db1", 1700000000.0, 10.0, "pg_stat_activity", "42", "Lock", "transactionid", 3, 3.0]]
    batch = SampleBatch("db1", 1, 1700000000.0, ResourceRow("db1", 1700000000.0), [], rows)
    assert SampleBatch.from_json(batch.to_json()).waits == rows
    older = json.dumps({"target": "db1", "seq": 1, "taken_at": 1.0, "resource": {"target": "db1", "timestamp": 1.0},
                        "queries": []}).encode()
    assert SampleBatch.from_json(older).waits == [], "a batch spooled before insight has no waits"


def test_metrics_pass_promtool_with_insight(pg_cluster: Cluster, wire_db: str, tmp_path: Path) -> None:
    import shutil
    import subprocess

    with exporter(pg_cluster, "insight_wire_lint", tmp_path, insight={"plans": {"interval": "1s", "max_statements": 1000}}) as running:
        wait_until(lambda: "\npgperf_insight_refresh_duration_seconds " in running.get("/metrics").text,
                   timeout=30, message="a plans refresh on /metrics")
        text = running.get("/metrics").text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install the Debian package prometheus (make deps)"
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "wait" in line or "plan" in line or "advice" in line or "insight" in line]
    assert problems == [], problems
    assert parse(text)["pgperf_index_advice"], "the advice counts are served"
