"""Query insight against a real PostgreSQL: plans on every major (GENERIC_PLAN on 16+,
prepared generic plans on 13-15), nothing executed, wait sampling with lock waits
attributed to the blocked statement, index advice with and without HypoPG, the store's
insight tables, and the end-to-end poker-room proof on PostgreSQL 15 with HypoPG."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from helpers import wait_until
from pgperf.db import SessionSettings
from pgperf.insight import (
    IndexAdvice,
    InsightServer,
    Plan,
    PlanSkipped,
    Statement,
    WaitSampler,
    WaitSourceUnavailable,
    advise,
    detect_insight,
    explain,
    mark_applied,
    refresh_plans,
)
from pgperf.insight.advice import candidates_from_plan, entry_costs, table_facts, write_note
from pgperf.insight.advisor import AdviseResult, render_text
from pgperf.insight.options import AdviceOptions
from pgperf.insight.refresh import pgss_window, top_statements
from pgperf.insight.store import (
    observed_means,
    read_advice,
    read_plans,
    read_waits,
    record_plans,
    save_advice,
    write_wait_profiles,
)
from pgperf.insight.waits import CPU, WaitCount, WaitReading
from pgperf.store.schema import ensure_partitions, migrate
from tools.cluster import Cluster

# Run on every major of the matrix (make test runs -m collectors on 13, 14, 16, 17, 18).
pytestmark = pytest.mark.collectors

SETTINGS = SessionSettings(statement_timeout=5.0, lock_timeout=1.0)
DB = "insight"
RANGE_QUERY = "SELECT count(*), sum(pot) FROM game_hands WHERE created_at BETWEEN now() - %s::interval AND now()"


@pytest.fixture(scope="module")
def insight_db(pg_cluster: Cluster) -> Iterator[str]:
    """A database of its own (extensions created here touch no other test)."""
    pg_cluster.execute(f"DROP DATABASE IF EXISTS {DB}")
    pg_cluster.execute(f"CREATE DATABASE {DB}")
    with pg_cluster.connect(DB) as conn:
        conn.execute("CREATE TABLE players (id int PRIMARY KEY, nick text NOT NULL)")
        conn.execute("CREATE TABLE game_hands (id bigserial PRIMARY KEY, player_id int NOT NULL, table_id int NOT NULL,"
                     " pot numeric(12,2) NOT NULL, created_at timestamptz NOT NULL)")
        conn.execute("INSERT INTO players SELECT g, 'p' || g FROM generate_series(1, 1000) g")
        conn.execute("INSERT INTO game_hands (player_id, table_id, pot, created_at)"
                     " SELECT g % 1000 + 1, g % 50, (g % 997) / 10.0, now() - g * interval '10 seconds'"
                     " FROM generate_series(1, 300000) g")
        conn.execute("VACUUM ANALYZE players")
        conn.execute("VACUUM ANALYZE game_hands")
    yield DB
    pg_cluster.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


@pytest.fixture
def pgperf_conn(pg_cluster: Cluster, insight_db: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection as pgperf opens them (pinned search_path, timeouts, autocommit)."""
    dsn = pg_cluster.dsn(dbname=insight_db)
    with psycopg.connect(dsn, autocommit=True, **SETTINGS.connect_kwargs(dsn)) as conn:
        yield conn


def _server(conn: psycopg.Connection[Any], **overrides: Any) -> InsightServer:
    server = detect_insight(conn)
    return InsightServer(**{**server.__dict__, **overrides})


def _pgss(pg_cluster: Cluster, like: str) -> tuple[int, str]:
    rows = pg_cluster.execute("SELECT queryid, query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                              " WHERE d.datname = %s AND query LIKE %s ORDER BY calls DESC", params=(DB, like))
    assert rows, f"no pg_stat_statements entry like {like!r}"
    return int(rows[0][0]), str(rows[0][1])


def _facts(pg_cluster: Cluster) -> tuple[Any, ...]:
    return pg_cluster.execute(
        "SELECT (SELECT count(*) FROM game_hands), (SELECT max(id) FROM game_hands), (SELECT count(*) FROM players),"
        " (SELECT last_value FROM game_hands_id_seq), (SELECT sum(pot) FROM game_hands)", DB)[0]


def _relations(node: Any) -> set[str]:
    found = {node["Relation Name"]} if "Relation Name" in node else set()
    for child in node.get("Plans") or ():
        found |= _relations(child)
    return found


def test_plans_on_this_major_execute_nothing(pg_cluster: Cluster, pgperf_conn: psycopg.Connection[Any]) -> None:
    server = detect_insight(pgperf_conn)
    statements = [
        Statement(1, "SELECT count(*), sum(pot) FROM game_hands WHERE created_at BETWEEN now() - $1::interval AND now()"),
        Statement(2, "INSERT INTO game_hands (player_id, table_id, pot, created_at) VALUES ($1, $2, $3, now())"),
        Statement(3, "UPDATE game_hands SET pot = pot * $1 WHERE player_id = $2"),
        Statement(4, "DELETE FROM game_hands WHERE table_id = $1"),
        Statement(5, "WITH gone AS (DELETE FROM players RETURNING id) SELECT count(*) FROM gone"),
        Statement(6, "SELECT nextval('game_hands_id_seq')"),
        Statement(7, "SELECT 1; DELETE FROM game_hands"),
        Statement(8, "TRUNCATE game_hands"),
    ]
    if pg_cluster.major >= 15:
        statements.append(Statement(9, "MERGE INTO players p USING (SELECT $1::int AS id) s ON p.id = s.id"
                                       " WHEN MATCHED THEN DELETE"))
    before = _facts(pg_cluster)
    result = refresh_plans(pgperf_conn, statements, server, SETTINGS)
    assert _facts(pg_cluster) == before, "planning wrote something"
    planned = {p.query_id: p for p in result.plans}
    assert set(planned) == {s.query_id for s in statements} - {7, 8}
    assert result.skipped == {"multiple_statements": 1, "not_plannable": 1}
    method = "generic_plan" if pg_cluster.major >= 16 else "prepared_generic"
    assert {p.method for p in result.plans} == {method}
    assert planned[2].root["Node Type"] == "ModifyTable" and planned[2].root["Operation"] == "Insert"
    assert _relations(planned[1].root) == {"game_hands"} and planned[1].total_cost > 0
    # The prepared statement of 13-15 is gone; the transactions left no lock behind.
    assert pgperf_conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)
    assert pgperf_conn.execute("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"
                               " AND locktype = 'relation' AND relation >= 16384").fetchone() == (0,)
    assert pgperf_conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_the_plan_hash_is_stable_and_follows_the_plan(pg_cluster: Cluster, pgperf_conn: psycopg.Connection[Any]) -> None:
    server = detect_insight(pgperf_conn)
    statement = Statement(1, "SELECT * FROM players WHERE nick = $1")
    first = explain(pgperf_conn, statement, server, SETTINGS)
    assert explain(pgperf_conn, statement, server, SETTINGS).plan_hash == first.plan_hash
    pg_cluster.execute("CREATE INDEX players_nick_idx ON players (nick)", DB)
    try:
        indexed = explain(pgperf_conn, statement, server, SETTINGS)
        assert indexed.plan_hash != first.plan_hash
        assert "players_nick_idx" in str(indexed.plan)
    finally:
        pg_cluster.execute("DROP INDEX players_nick_idx", DB)


class _ForgetfulConnection(psycopg.Connection[Any]):
    """A session whose prepared statements vanish after each EXPLAIN (DEALLOCATE ALL), as
    the planning session's once did on a server just restarted."""

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        cursor = super().execute(query, *args, **kwargs)
        text = query.as_string(self) if isinstance(query, psycopg.sql.Composable) else str(query)
        if text.startswith("EXPLAIN"):
            super().execute("DEALLOCATE ALL")
        return cursor


def test_a_prepared_statement_already_gone_does_not_fail_the_plan(pg_cluster: Cluster, insight_db: str) -> None:
    dsn = pg_cluster.dsn(dbname=insight_db)
    with _ForgetfulConnection.connect(dsn, autocommit=True, **SETTINGS.connect_kwargs(dsn)) as conn:
        server = InsightServer(**{**detect_insight(conn).__dict__, "version_num": 150000})  # PREPARE, on any major
        plan = explain(conn, Statement(1, "SELECT * FROM players WHERE id = $1"), server, SETTINGS)
        assert plan.method == "prepared_generic" and plan.total_cost > 0
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_unknown_parameter_types_are_skipped_and_counted(pg_cluster: Cluster,
                                                        pgperf_conn: psycopg.Connection[Any]) -> None:
    server = detect_insight(pgperf_conn)
    result = refresh_plans(pgperf_conn, [Statement(1, "SELECT * FROM players WHERE $1 IS NULL"),
                                         Statement(2, "SELECT * FROM no_such_table WHERE id = $1")], server, SETTINGS)
    if pg_cluster.major >= 16:
        # GENERIC_PLAN plans a parameter of unknown type as it is.
        assert result.skipped == {"undefined_object": 1} and len(result.plans) == 1
    else:
        assert result.skipped == {"parameter_types": 1, "undefined_object": 1} and result.plans == ()
    assert pgperf_conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)


def test_planning_gives_up_at_the_lock_timeout(pg_cluster: Cluster, pgperf_conn: psycopg.Connection[Any]) -> None:
    server = detect_insight(pgperf_conn)
    with pg_cluster.connect(DB) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE players IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(PlanSkipped) as skipped:
            explain(pgperf_conn, Statement(1, "SELECT * FROM players WHERE id = $1"), server,
                    SessionSettings(statement_timeout=5.0, lock_timeout=0.2))
        holder.execute("ROLLBACK")
    assert skipped.value.reason == "lock_timeout"
    assert pgperf_conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)


def test_statements_resolve_names_with_their_users_search_path(pg_cluster: Cluster,
                                                               pgperf_conn: psycopg.Connection[Any]) -> None:
    pg_cluster.execute("CREATE SCHEMA IF NOT EXISTS poker", DB)
    pg_cluster.execute("CREATE TABLE IF NOT EXISTS poker.seats (id int PRIMARY KEY, player_id int)", DB)
    pg_cluster.execute("DO $$BEGIN CREATE ROLE dealer; EXCEPTION WHEN duplicate_object THEN NULL; END$$")
    pg_cluster.execute(f"ALTER ROLE dealer IN DATABASE {DB} SET search_path = poker, public")
    server = detect_insight(pgperf_conn)
    result = refresh_plans(pgperf_conn, [Statement(1, "SELECT * FROM seats WHERE player_id = $1", username="dealer"),
                                         Statement(2, "SELECT * FROM seats WHERE player_id = $1", username="postgres")],
                           server, SETTINGS)
    assert [p.query_id for p in result.plans] == [1] and result.skipped == {"undefined_object": 1}
    assert result.plans[0].root["Schema"] == "poker"
    # pgperf's own session keeps its pinned search path.
    assert pgperf_conn.execute("SHOW search_path").fetchone() == ("pg_catalog,pg_temp",)


@contextmanager
def _blocked_update(pg_cluster: Cluster) -> Iterator[None]:
    """An UPDATE of players 1 waiting for another transaction's row lock."""
    holder = pg_cluster.connect(DB)
    blocked = pg_cluster.connect(DB)
    holder.execute("BEGIN")
    holder.execute("UPDATE players SET nick = nick WHERE id = 1")
    thread = threading.Thread(target=lambda: blocked.execute("UPDATE players SET nick = %s WHERE id = %s", ("x", 1)))
    thread.start()
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        thread.join(10)
        holder.close()
        blocked.close()


def _sample_lock_waits(sampler: WaitSampler, conn: psycopg.Connection[Any], server: InsightServer,
                       pg_cluster: Cluster) -> None:
    """Sample while an UPDATE waits on a lock, until three readings saw it."""
    with _blocked_update(pg_cluster):
        seen = 0

        def lock_seen() -> bool:
            nonlocal seen
            seen += any(c.wait_event_type == "Lock" for c in sampler.sample(conn, server).counts)
            return seen >= 3

        wait_until(lock_seen, timeout=15, interval=0.2, message="three readings with a Lock wait")


def test_a_session_waiting_on_a_lock_shows_as_lock_waits_of_its_statement(
        pg_cluster: Cluster, pgperf_conn: psycopg.Connection[Any]) -> None:
    server = detect_insight(pgperf_conn)
    sampler = WaitSampler("db1", source="pg_stat_activity", interval=1.0)
    _sample_lock_waits(sampler, pgperf_conn, server, pg_cluster)
    samples = sampler.families()[0]
    lock = [(labels, v) for labels, v in samples.samples if labels[1] == "Lock"]
    assert lock and all(labels[0] == "pg_stat_activity" for labels, _ in lock)
    assert samples.labels == ("source", "wait_event_type", "wait_event")
    rows = sampler.drain()
    locked = [r for r in rows if r.wait_event_type == "Lock" and r.wait_event == "transactionid"]
    assert sum(r.samples for r in locked) >= 3 and all(r.seconds == r.samples * 1.0 for r in locked)
    qid, text = _pgss(pg_cluster, "UPDATE players SET nick = $1 WHERE id = $2")
    if pg_cluster.major >= 14:
        assert {r.query_id for r in locked} == {qid}, "Lock waits belong to the blocked UPDATE"
    else:
        assert {r.query_id for r in locked} == {None}, "PostgreSQL 13 shows no query_id in pg_stat_activity"
    assert CPU not in {r.wait_event_type for r in locked}
    # The store keeps them per statement.
    with _store(pg_cluster, "insight_waits") as store:
        assert write_wait_profiles(store, "insight_waits", rows) == len(rows)
        if pg_cluster.major >= 14:
            now = datetime.now(UTC)
            waits = read_waits(store, "insight_waits", "db1", qid, since=now - timedelta(hours=1), until=now)
            assert waits[0].wait_event_type == "Lock" and waits[0].samples == sum(r.samples for r in locked)


def test_the_pg_wait_sampling_source_needs_the_extension(pgperf_conn: psycopg.Connection[Any]) -> None:
    server = _server(pgperf_conn, wait_sampling_schema=None, wait_sampling_loaded=False)
    with pytest.raises(WaitSourceUnavailable, match="CREATE EXTENSION pg_wait_sampling"):
        WaitSampler("db1", source="pg_wait_sampling").sample(pgperf_conn, server)
    auto = WaitSampler("db1", source="auto")
    assert auto.sample(pgperf_conn, server).source == "pg_stat_activity"


@contextmanager
def _store(pg_cluster: Cluster, schema: str) -> Iterator[psycopg.Connection[Any]]:
    """A fresh store schema in the session cluster, dropped after (other tests count
    the tables of that database)."""
    with pg_cluster.connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        migrate(conn, schema)
        try:
            yield conn
        finally:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_wait_profiles_round_trip_through_the_store(pg_cluster: Cluster) -> None:
    sampler = WaitSampler("db1", interval=1.0)
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    sampler.add(_reading(at.timestamp() - 1, [(42, "Lock", "transactionid", 3), (42, CPU, CPU, 1),
                                              (None, "IO", "WALWrite", 2)]))
    rows = sampler.drain(now=at.timestamp())
    with _store(pg_cluster, "insight_store") as store:
        # The day has no partition yet: it is made on demand.
        assert write_wait_profiles(store, "insight_store", rows) == 3
        waits = read_waits(store, "insight_store", "db1", 42, since=at - timedelta(hours=1), until=at + timedelta(hours=1))
        assert [(w.wait_event_type, w.samples, w.seconds) for w in waits] == [("Lock", 3, 3.0), (CPU, 1, 1.0)]
        assert store.execute("SELECT count(*) FROM insight_store.statement_wait_profiles WHERE query_id IS NULL"
                             ).fetchone() == (1,)


def test_the_weighing_of_advice_round_trips_through_the_store(pg_cluster: Cluster) -> None:
    """The weighing is stored with the advice (migration 008) and read back in the order of
    advice.rank; a store not migrated to 008 yet reads as advice not weighed."""
    def one(relname: str, verdict: str, saving: float | None, maintenance: float | None) -> IndexAdvice:
        return IndexAdvice(schema="public", relname=relname, columns=("created_at",), query_ids=(7,),
                           cost_before=1400.0, cost_after=24.0, verified="hypopg", datname="db1",
                           saving_per_second=saving, maintenance_per_second=maintenance,
                           write_verdict=verdict)  # type: ignore[arg-type]
    advice = [one("heavy", "write_heavy", 0.76, 1606.0), one("unknown", "unknown", None, 8.0),
              one("pays", "pays", 1456.0, 8.03)]
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with _store(pg_cluster, "insight_weigh") as store:
        save_advice(store, "insight_weigh", "db1", advice, at=at)
        back = read_advice(store, "insight_weigh", "db1")
        assert [(a.relname, a.write_verdict, a.saving_per_second, a.maintenance_per_second) for a in back] == [
            ("pays", "pays", 1456.0, 8.03), ("unknown", "unknown", None, 8.0), ("heavy", "write_heavy", 0.76, 1606.0)]
        store.execute("ALTER TABLE insight_weigh.index_advice DROP COLUMN saving_per_second,"
                      " DROP COLUMN maintenance_per_second, DROP COLUMN write_verdict")
        assert {(a.write_verdict, a.saving_per_second) for a in read_advice(store, "insight_weigh", "db1")} == {
            ("unknown", None)}


def _reading(at: float, counts: list[tuple[int | None, str, str, int]]) -> WaitReading:
    return WaitReading("pg_stat_activity", at, 1.0, tuple(WaitCount(*c) for c in counts))


def test_a_bulk_load_before_the_last_analyze_does_not_inflate_the_write_rate(
        pg_cluster: Cluster, insight_db: str) -> None:
    """The write rate of an advice is the rows changed since the table's last analyze: the
    300,000 rows loaded before it are not spread over the time since the stats reset."""
    with psycopg.connect(pg_cluster.dsn(dbname=insight_db), autocommit=True) as conn:

        def inserted(n: int) -> None:  # until the statistics hold this session's inserts
            def seen() -> bool:
                row = conn.execute("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'bulk_loaded'"
                                   ).fetchone()
                return row is not None and row[0] >= n
            wait_until(seen, timeout=20, message=f"{n} inserts in pg_stat_user_tables")

        conn.execute("DROP TABLE IF EXISTS bulk_loaded")
        conn.execute("CREATE TABLE bulk_loaded (id int)")
        conn.execute("INSERT INTO bulk_loaded SELECT generate_series(1, 300000)")
        inserted(300000)
        never = table_facts(conn, [("public", "bulk_loaded")])[("public", "bulk_loaded")]
        conn.execute("ANALYZE bulk_loaded")
        conn.execute("INSERT INTO bulk_loaded SELECT generate_series(1, 10)")
        inserted(300010)
        conn.execute("SELECT pg_sleep(1.1)")
        facts = table_facts(conn, [("public", "bulk_loaded")])[("public", "bulk_loaded")]
        conn.execute("DROP TABLE bulk_loaded")
    # Before the analyze: every row since the reset.
    assert never.since_analyze is False and never.writes_per_second is not None
    assert facts.since_analyze is True and facts.writes_per_second is not None
    assert 0 < facts.writes_per_second <= 10  # 10 rows in at least a second, not 300,010 rows
    assert "since its last analyze" in write_note(facts)


def test_advice_without_hypopg_is_heuristic(pg_cluster: Cluster, pgperf_conn: psycopg.Connection[Any]) -> None:
    server = _server(pgperf_conn, hypopg_schema=None)
    qid = 7
    statement = Statement(qid, "SELECT count(*), sum(pot) FROM game_hands WHERE player_id = $1 AND created_at > $2")
    plans = refresh_plans(pgperf_conn, [statement], server, SETTINGS).plans
    advice = advise(pgperf_conn, plans, [statement], server, SETTINGS)
    assert [(a.table, a.columns, a.verified, a.cost_after, a.query_ids) for a in advice] == [
        ("public.game_hands", ("player_id", "created_at"), "heuristic", None, (qid,))]
    assert advice[0].cost_before == plans[0].total_cost
    assert "Not verified by the planner" in advice[0].note and "rows inserted, updated or deleted per second" in advice[0].note
    # The rows written since the table's last analyze (none, or pgbench's few), per second.
    assert advice[0].writes_per_second is not None and advice[0].writes_per_second >= 0
    # A small table proposes nothing, nor does a column an index already starts with.
    assert advise(pgperf_conn, plans, [statement], server, SETTINGS, AdviceOptions(min_table_rows=10**9)) == []
    # (A plan that scans the table filtering on id, as the planner makes for a wide range.)
    scan = {"Plan": {"Node Type": "Seq Scan", "Schema": "public", "Relation Name": "game_hands",
                     "Alias": "game_hands", "Filter": "(game_hands.id > $1)", "Total Cost": 6000.0}}
    pk_plan = Plan(8, "0", scan, 6000.0, "generic_plan")
    assert [c.columns for c in candidates_from_plan(scan)] == [("id",)]
    pk = Statement(8, "SELECT * FROM game_hands WHERE id > $1")
    assert advise(pgperf_conn, [pk_plan], [pk], server, SETTINGS) == [], "the primary key starts with id"


@pytest.fixture
def hypopg(pg_cluster: Cluster, insight_db: str) -> Iterator[None]:
    pg_cluster.execute("CREATE EXTENSION IF NOT EXISTS hypopg", insight_db)
    yield
    pg_cluster.execute("DROP EXTENSION IF EXISTS hypopg", insight_db)


@pytest.mark.pg("== 15")  # Debian's postgresql-15-hypopg; the npm majors have no HypoPG
def test_poker_room_range_query_gets_verified_advice_then_applied(
        pg_cluster: Cluster, pgperf_conn: psycopg.Connection[Any], hypopg: None) -> None:
    # The application runs the unindexed range query; pg_stat_statements has it normalized.
    with pg_cluster.connect(DB) as app:
        for _ in range(3):
            app.execute(RANGE_QUERY, ("1 hour",))
    qid, text = _pgss(pg_cluster, "SELECT count(*), sum(pot) FROM game_hands WHERE created_at BETWEEN%")
    assert "$1" in text
    statement = Statement(qid, text, datname=DB, username="postgres")
    server = detect_insight(pgperf_conn)
    assert server.hypopg_schema == "public"
    with _store(pg_cluster, "insight_e2e") as store:
        try:
            before_at = datetime.now(UTC)
            plans = refresh_plans(pgperf_conn, [statement], server, SETTINGS).plans
            assert record_plans(store, "insight_e2e", "poker", plans, at=before_at) == []
            first_hash = plans[0].plan_hash
            advice = advise(pgperf_conn, plans, [statement], server, SETTINGS)
            assert len(advice) == 1
            a = advice[0]
            assert a.sql == "CREATE INDEX CONCURRENTLY IF NOT EXISTS game_hands_created_at_idx ON public.game_hands (created_at)"
            assert (a.verified, a.status, a.query_ids) == ("hypopg", "open", (qid,))
            assert a.cost_after is not None and 0 < a.cost_after <= a.cost_before / 2
            assert a.cost_before == plans[0].total_cost
            # The hypothetical index is gone from the session, and nothing was created.
            assert pgperf_conn.execute("SELECT count(*) FROM public.hypopg_list_indexes").fetchone() == (0,)
            assert pg_cluster.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'game_hands'", DB) == [(1,)]
            save_advice(store, "insight_e2e", "poker", advice, at=before_at)
            _observed(store, qid, before_at - timedelta(minutes=10), mean_ms=180.0)

            # Someone follows the advice.
            pg_cluster.execute(a.sql, DB)
            pg_cluster.execute("ANALYZE game_hands", DB)
            after_at = before_at + timedelta(minutes=5)
            replanned = refresh_plans(pgperf_conn, [statement], server, SETTINGS).plans
            changes = record_plans(store, "insight_e2e", "poker", replanned, at=after_at)
            assert [(c.query_id, c.previous_hash, c.plan_hash) for c in changes] == [(qid, first_hash, replanned[0].plan_hash)]
            assert replanned[0].plan_hash != first_hash and "game_hands_created_at_idx" in str(replanned[0].plan)
            stored = read_plans(store, "insight_e2e", "poker", qid)
            assert [p.plan_hash for p in stored] == [replanned[0].plan_hash, first_hash]
            assert stored[1].first_seen == stored[1].last_seen == before_at and stored[0].first_seen == after_at

            applied = mark_applied(pgperf_conn, read_advice(store, "insight_e2e", "poker"), now=after_at)
            assert [x.status for x in applied] == ["applied"] and applied[0].applied_at == after_at
            _observed(store, qid, after_at + timedelta(minutes=10), mean_ms=2.5)
            means = observed_means(store, "insight_e2e", "poker", applied[0].query_ids, after_at,
                                   until=after_at + timedelta(hours=1))
            assert means == (180.0, 2.5)
            save_advice(store, "insight_e2e", "poker", [replace(applied[0], observed_mean_ms_before=means[0],
                                                                observed_mean_ms_after=means[1])], at=after_at)
            final = read_advice(store, "insight_e2e", "poker", query_id=qid)
            assert [x.to_json()["status"] for x in final] == ["applied"]
            assert (final[0].observed_mean_ms_before, final[0].observed_mean_ms_after) == (180.0, 2.5)
            assert final[0].applied_at == after_at and final[0].verified == "hypopg"
            # Advising again proposes nothing new: the index exists.
            assert advise(pgperf_conn, replanned, [statement], server, SETTINGS) == []
        finally:
            pg_cluster.execute("DROP INDEX IF EXISTS game_hands_created_at_idx", DB)


def _hands_table(conn: psycopg.Connection[Any], name: str) -> None:
    """50,000 hands in table *name*, analyzed; autovacuum off, so that only the test's
    writes count since that analyze."""
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id bigserial PRIMARY KEY, player_id int NOT NULL, pot numeric(12,2) NOT NULL,"
                 " created_at timestamptz NOT NULL) WITH (autovacuum_enabled = off)")
    conn.execute(f"INSERT INTO {name} (player_id, pot, created_at) SELECT g % 1000 + 1, (g % 997) / 10.0,"
                 " now() - g * interval '10 seconds' FROM generate_series(1, 50000) g")
    # The load reaches the statistics after the analyze otherwise, and counts as written since.
    _written(conn, name, 50_000)
    conn.execute(f"ANALYZE {name}")


def _written(conn: psycopg.Connection[Any], name: str, rows: int) -> None:
    """Wait until the statistics hold *rows* rows written to *name* since its analyze."""
    def seen() -> bool:
        row = conn.execute("SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = %s", (name,)).fetchone()
        return row is not None and row[0] >= rows
    wait_until(seen, timeout=20, message=f"{rows} rows written to {name} in pg_stat_user_tables")


@pytest.mark.pg("== 15")  # Debian's postgresql-15-hypopg
def test_write_cost_is_weighed_against_the_read_saving(
        pg_cluster: Cluster, pgperf_conn: psycopg.Connection[Any], hypopg: None) -> None:
    """The same range query on a read-mostly table and on one written heavily: both indexes
    are verified by HypoPG; the first pays for its upkeep, the second would cost more to
    maintain than it saves, is kept but said so, and ranks after the first although it
    saves more planner cost per call."""
    with psycopg.connect(pg_cluster.dsn(dbname=DB), autocommit=True) as app:
        _hands_table(app, "calm_hands")
        _hands_table(app, "busy_hands")
        app.execute("INSERT INTO calm_hands (player_id, pot, created_at) SELECT 1, 1, now() FROM generate_series(1, 10)")
        app.execute("UPDATE busy_hands SET pot = pot + 1")
        app.execute("UPDATE busy_hands SET pot = pot + 1")
        _written(app, "calm_hands", 10)
        _written(app, "busy_hands", 100_000)
    try:
        server = detect_insight(pgperf_conn)
        text = "SELECT count(*), sum(pot) FROM {} WHERE created_at BETWEEN now() - $1::interval AND now()"
        # Read once a second for ten minutes; twice in those ten minutes.
        calm = Statement(101, text.format("calm_hands"), DB, "postgres", calls=600, total_ms=6000.0, window_seconds=600.0)
        busy = Statement(102, text.format("busy_hands"), DB, "postgres", calls=2, total_ms=20.0, window_seconds=600.0)
        plans = refresh_plans(pgperf_conn, [calm, busy], server, SETTINGS).plans
        advice = advise(pgperf_conn, plans, [calm, busy], server, SETTINGS)
        assert [(a.relname, a.columns, a.verified) for a in advice] == [
            ("calm_hands", ("created_at",), "hypopg"), ("busy_hands", ("created_at",), "hypopg")]
        paying, heavy = advice
        assert paying.write_verdict == "pays" and heavy.write_verdict == "write_heavy"
        assert paying.saving_per_second is not None and paying.maintenance_per_second is not None
        assert heavy.saving_per_second is not None and heavy.maintenance_per_second is not None
        assert paying.saving_per_second > paying.maintenance_per_second
        assert heavy.maintenance_per_second > heavy.saving_per_second
        # Ranked by net benefit, not by the cost saved: the busy table's bloated scan saves more.
        assert heavy.cost_saved > paying.cost_saved
        # The saving: calls per second times each statement's cost before less after.
        assert paying.cost_after is not None
        assert paying.saving_per_second == pytest.approx(1.0 * (paying.cost_before - paying.cost_after))
        # The upkeep: the rows written per second times one entry in the index.
        per_row = entry_costs(pgperf_conn).per_row(50_000)
        assert heavy.writes_per_second is not None and heavy.writes_per_second > 1000
        assert heavy.maintenance_per_second == pytest.approx(heavy.writes_per_second * per_row)
        assert "pays for its upkeep" in paying.note
        assert "would cost more to maintain than it saves at the current rates" in heavy.note
        assert "Not worth creating" in heavy.note
        shown = render_text(AdviseResult("t", tuple(advice), (), 2, None))
        assert shown.count("would cost more to maintain than it saves") == 2  # the heading and the note
        assert "1. CREATE INDEX CONCURRENTLY IF NOT EXISTS calm_hands_created_at_idx" in shown
        assert "2. CREATE INDEX CONCURRENTLY IF NOT EXISTS busy_hands_created_at_idx ON public.busy_hands (created_at);" \
            " -- would cost more to maintain than it saves at the current rates" in shown

        # Without the window of the calls (PostgreSQL 13's pg_stat_statements), no verdict.
        unknown = advise(pgperf_conn, plans, [replace(calm, window_seconds=None), busy], server, SETTINGS)
        assert [(a.relname, a.write_verdict) for a in unknown] == [("calm_hands", "unknown"), ("busy_hands", "write_heavy")]
        assert unknown[0].saving_per_second is None and unknown[0].maintenance_per_second is not None
        assert "Whether the index pays for its upkeep is unknown: the time over which" in unknown[0].note
        # Nor without HypoPG: there is no cost after to weigh, and none is invented.
        heuristic = advise(pgperf_conn, plans, [calm, busy], _server(pgperf_conn, hypopg_schema=None), SETTINGS)
        assert {(a.relname, a.write_verdict, a.saving_per_second) for a in heuristic} == {
            ("calm_hands", "unknown", None), ("busy_hands", "unknown", None)}
    finally:
        pg_cluster.execute("DROP TABLE IF EXISTS calm_hands, busy_hands", DB)


def test_the_window_of_the_calls_is_known_from_postgresql_14(pg_cluster: Cluster) -> None:
    """pgperf advise counts the calls since pg_stat_statements' reset: pg_stat_statements_info
    says when that was from 14 on; on 13 the window, and so the weighing, is unknown."""
    pg_cluster.execute("SELECT count(*) FROM pg_class WHERE relname = 'window_probe'")
    with pg_cluster.connect() as conn:
        version = conn.info.server_version
        window = pgss_window(conn, "public")
        statements = top_statements(conn, "public", 50, 1000.0)
    assert statements
    if version < 140000:
        assert window is None and {s.window_seconds for s in statements} == {None}
    else:
        assert window is not None and window > 0
        assert all(s.window_seconds == pytest.approx(window, abs=1.0) for s in statements)


def _observed(store: psycopg.Connection[Any], qid: int, at: datetime, mean_ms: float) -> None:
    """A row as the sampler writes it: 10 calls of the statement in one interval."""
    ensure_partitions(store, "insight_e2e", [at.date()])
    store.execute(
        "INSERT INTO insight_e2e.query_performance_metrics (target, recorded_at, interval_seconds, query_id,"
        " query_text, calls, total_time, mean_time, min_time, max_time, stddev_time, rows_affected, cache_hits,"
        " cache_misses) VALUES ('poker', %s, 60, %s, 'q', 10, %s, %s, 0, 0, 0, 10, 0, 0)",
        (at, str(qid), mean_ms * 10, mean_ms))


@pytest.mark.pg("== 15")  # Debian's postgresql-15-pg-wait-sampling, which must be preloaded
def test_lock_waits_from_pg_wait_sampling(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"shared_preload_libraries": "'pg_stat_statements,pg_wait_sampling'"})
    cluster.execute(f"CREATE DATABASE {DB}")
    cluster.execute("CREATE EXTENSION pg_wait_sampling", DB)
    cluster.execute("CREATE TABLE players (id int PRIMARY KEY, nick text)", DB)
    cluster.execute("INSERT INTO players VALUES (1, 'a')", DB)
    dsn = cluster.dsn(dbname=DB)
    with psycopg.connect(dsn, autocommit=True, **SETTINGS.connect_kwargs(dsn)) as conn:
        server = detect_insight(conn)
        assert server.wait_sampling and server.wait_sampling_period_ms == 10.0
        sampler = WaitSampler("db1", interval=1.0)
        assert sampler.sample(conn, server).counts == (), "the first reading is the baseline"
        _sample_lock_waits(sampler, conn, server, cluster)
    rows = sampler.drain()
    locked = [r for r in rows if r.wait_event_type == "Lock" and r.wait_event == "transactionid"]
    assert locked and {r.source for r in rows} == {"pg_wait_sampling"}
    qid = int(cluster.execute("SELECT queryid FROM pg_stat_statements WHERE query LIKE 'UPDATE players SET nick%'")[0][0])
    assert {r.query_id for r in locked} == {qid}
    # 10 ms per sample: well over a hundred samples in the second or more it waited.
    assert sum(r.samples for r in locked) > 50 and sum(r.seconds for r in locked) == pytest.approx(
        sum(r.samples for r in locked) * 0.01)
    assert ("pg_wait_sampling", "Lock", "transactionid") in {labels for labels, _ in sampler.families()[0].samples}
