"""Query insight without a database: the statement guard, plan shapes and hashes, the
conditions read from plans, index candidates, cost analysis and the wait counters."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from helpers import make_config
from pgperf.collectors.statements import StatementDelta, StatementRecords
from pgperf.insight import Statement, StatementRefused, choose_statements, parse_statement, plan_hash
from pgperf.insight.advice import EntryCosts, IndexAdvice, ReadSaving, btree_depth, candidates_from_plan, rank, weigh
from pgperf.insight.advisor import ADVISE_KEYS, AdviseResult, render_text
from pgperf.insight.costs import StatementTotals, statement_costs
from pgperf.insight.expressions import comparisons, sort_columns
from pgperf.insight.options import InsightOptions
from pgperf.insight.plans import plan_without_expressions
from pgperf.insight.service import TargetInsight
from pgperf.insight.statement import quote_ident
from pgperf.insight.waits import MAX_INTERVAL_KEYS, WaitCount, WaitReading, WaitSampler, _differences
from pgperf.reports.model import AdviceEntry, Report, ReportSettings
from pgperf.reports.recommendations import index_advice
from pgperf.reports.text import advice_line

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.mark.parametrize(("text", "kind", "parameters", "writes"), [
    ("SELECT * FROM t WHERE a = $1 AND b > $2", "select", 2, False),
    ("insert into t values ($1, $2, $3)", "insert", 3, True),
    ("UPDATE t SET a = $1 WHERE id = $2", "update", 2, True),
    ("DELETE FROM t WHERE id = $1", "delete", 1, True),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "merge", 0, True),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d", "select", 0, True),
    ("/* app */ SELECT 1;", "select", 0, False),
])
def test_the_five_plannable_kinds_pass(text: str, kind: str, parameters: int, writes: bool) -> None:
    parsed = parse_statement(text)
    assert (parsed.kind, parsed.parameters, parsed.writes) == (kind, parameters, writes)


@pytest.mark.parametrize(("text", "reason"), [
    ("SELECT 1; DELETE FROM t", "multiple_statements"),
    ("SELECT 1; COMMIT; DROP TABLE t", "multiple_statements"),
    ("VACUUM t", "not_plannable"),
    ("EXPLAIN SELECT 1", "not_plannable"),
    ("CREATE TABLE x AS SELECT 1", "not_plannable"),
    ("TRUNCATE t", "not_plannable"),
    ("COPY t FROM STDIN", "not_plannable"),
    ("SELECT 1 INTO x", "select_into"),
    ("SELECT 1 UNION SELECT 2 INTO y", "select_into"),
    ("SELEC 1", "unparsable"),
    ("   ", "empty"),
    # A backslash does not escape a quote with standard_conforming_strings (the server
    # plans under it too): this is a literal, then a second statement.
    ("SELECT '\\'; DELETE FROM t; --'", "multiple_statements"),
])
def test_everything_else_is_refused_before_the_server(text: str, reason: str) -> None:
    with pytest.raises(StatementRefused) as refused:
        parse_statement(text)
    assert refused.value.reason == reason


def test_identifiers_are_quoted_only_when_needed() -> None:
    assert [quote_ident(n) for n in ("created_at", "user", "Pot", 'a"b', "name", "order")] == \
        ["created_at", '"user"', '"Pot"', '"a""b"', "name", '"order"']


def _plan(index: str | None = None, cost: float = 1396.63, rows: int = 1500) -> dict[str, Any]:
    scan: dict[str, Any] = {
        "Node Type": "Seq Scan", "Parent Relationship": "Outer", "Parallel Aware": False, "Relation Name": "game_hands",
        "Schema": "public", "Alias": "game_hands", "Total Cost": cost, "Plan Rows": rows,
        "Filter": "((game_hands.created_at >= (now() - $1)) AND (game_hands.created_at <= now()))",
    }
    if index:
        scan.update({"Node Type": "Index Scan", "Index Name": index, "Scan Direction": "Forward"})
    return {"Plan": {"Node Type": "Aggregate", "Strategy": "Plain", "Partial Mode": "Simple", "Total Cost": cost + 1,
                     "Plan Rows": 1, "Plans": [scan]}}


def test_the_plan_hash_follows_the_shape_not_the_estimates() -> None:
    base = plan_hash(_plan())
    assert base == plan_hash(_plan(cost=99999.0, rows=7)), "estimates moved: not a plan change"
    assert len(base) == 16 and int(base, 16) >= 0
    assert plan_hash(_plan(index="game_hands_created_at_idx")) != base
    assert plan_hash(_plan(index="game_hands_created_at_idx")) != plan_hash(_plan(index="other_idx"))
    parallel = copy.deepcopy(_plan())
    parallel["Plan"]["Plans"][0]["Parallel Aware"] = True
    assert plan_hash(parallel) != base
    assert plan_hash(_plan()["Plan"]) == base  # the object or its "Plan" node


def test_a_plan_without_expressions_keeps_shape_and_estimates_only() -> None:
    bare = plan_without_expressions(_plan())
    assert "Filter" not in str(bare) and "$1" not in str(bare)
    assert bare["Plan"]["Plans"][0]["Total Cost"] == 1396.63 and bare["Plan"]["Plans"][0]["Relation Name"] == "game_hands"
    assert plan_hash(bare) == plan_hash(_plan())


def test_conditions_are_read_as_expressions() -> None:
    found = comparisons("((h.player_id = $1) AND ((h.status)::text = ANY ($2)) AND (h.pot > h.rake) "
                        "AND (h.created_at >= (now() - $3)) AND (h.table_id = t.id) AND (lower(h.nick) = $4))")
    assert [(c.column, c.use, sorted(c.other_aliases)) for c in found if c.alias == "h"] == [
        ("player_id", "eq", []), ("status", "eq", []), ("created_at", "range", []), ("table_id", "eq", ["t"])]
    assert comparisons("((h.a = $1) OR (h.b = $2))") == [], "an OR is not one index condition"
    assert [c.column for c in comparisons("((h.x = (SubPlan 1)) AND (h.deleted_at IS NULL))")] == ["x", "deleted_at"]
    assert [(k.alias, k.column) for k in sort_columns(["h.created_at DESC", "h.id"]) or []] == \
        [("h", "created_at"), ("h", "id")]
    assert sort_columns(["(h.pot + h.rake)"]) is None


def test_candidates_come_from_the_plan_equality_columns_first() -> None:
    plan = {"Plan": {"Node Type": "Limit", "Plans": [{"Node Type": "Sort", "Sort Key": ["h.created_at DESC"],
            "Plans": [{"Node Type": "Hash Join", "Hash Cond": "(h.table_id = t.id)", "Plans": [
                {"Node Type": "Seq Scan", "Relation Name": "game_hands", "Schema": "poker", "Alias": "h",
                 "Filter": "((h.pot > $1) AND (h.player_id = $2))"},
                {"Node Type": "Hash", "Plans": [{"Node Type": "Seq Scan", "Relation Name": "tables",
                                                 "Schema": "poker", "Alias": "t", "Filter": "(t.stakes = $3)"}]}]}]}]}}
    found = {(c.relname, c.columns, c.reason) for c in candidates_from_plan(plan)}
    assert found == {
        ("game_hands", ("player_id", "pot"), "filter"),
        ("game_hands", ("table_id", "player_id"), "join"),
        ("tables", ("stakes",), "filter"),
        ("tables", ("id", "stakes"), "join"),
    }
    # A sort directly over the scan proposes its keys after the equality columns.
    sorted_scan = {"Plan": {"Node Type": "Limit", "Plans": [{"Node Type": "Sort", "Sort Key": ["h.created_at DESC"],
                   "Plans": [{"Node Type": "Seq Scan", "Relation Name": "game_hands", "Schema": "poker", "Alias": "h",
                              "Filter": "(h.player_id = $1)"}]}]}}
    assert ("game_hands", ("player_id", "created_at"), "sort") in {
        (c.relname, c.columns, c.reason) for c in candidates_from_plan(sorted_scan)}
    assert [c.columns for c in candidates_from_plan(_plan())] == [("created_at",)]
    wide = {"Plan": {"Node Type": "Seq Scan", "Relation Name": "t", "Schema": "public", "Alias": "t",
                     "Filter": "((t.a = $1) AND (t.b = $2) AND (t.c = $3) AND (t.d = $4))"}}
    assert [c.columns for c in candidates_from_plan(wide, max_columns=2)] == [("a", "b")]


def test_advice_renders_the_issue_shape() -> None:
    advice = IndexAdvice(schema="public", relname="game_hands", columns=("created_at",), query_ids=(-42, 7),
                         cost_before=1396.634, cost_after=24.051, verified="hypopg", writes_per_second=1.5)
    data = advice.to_json()
    assert data["sql"] == "CREATE INDEX CONCURRENTLY IF NOT EXISTS game_hands_created_at_idx ON public.game_hands (created_at)"
    assert {k: data[k] for k in ("kind", "table", "columns", "query_ids", "cost_before", "cost_after", "verified",
                                 "status", "observed_mean_ms_before", "observed_mean_ms_after")} == {
        "kind": "index", "table": "public.game_hands", "columns": ["created_at"], "query_ids": ["-42", "7"],
        "cost_before": 1396.63, "cost_after": 24.05, "verified": "hypopg", "status": "open",
        "observed_mean_ms_before": None, "observed_mean_ms_after": None}
    long = IndexAdvice(schema="s", relname="x" * 60, columns=("y" * 60,), query_ids=(1,), cost_before=1,
                       cost_after=None, verified="heuristic")
    assert len(long.index_name.encode()) <= 63 and long.index_name.endswith("_idx")


def test_cost_analysis_shares_and_cpu_per_day() -> None:
    costs = statement_costs([
        StatementTotals(1, calls=100, total_ms=6000.0, wait_seconds={"CPU": 3.0, "Lock": 1.0}),
        StatementTotals(2, calls=10, total_ms=3000.0, io_ms=1000.0),
        StatementTotals(3, calls=1, total_ms=1000.0, wait_seconds={"IO": 0.25}, waits_include_cpu=False),
    ], window_seconds=3600.0)
    by_id = {c.query_id: c for c in costs}
    assert [c.query_id for c in costs] == [1, 2, 3]
    assert by_id[1].share_of_db_time_percent == pytest.approx(60.0)
    assert by_id[1].time_split == {"CPU": 75.0, "Lock": 25.0} and by_id[1].cpu_basis == "wait_samples"
    # 6 s x 75 % CPU per hour = 4.5 s per hour = 108 s per day
    assert by_id[1].cpu_seconds_per_day == pytest.approx(108.0)
    assert by_id[2].cpu_basis == "execution_less_io" and by_id[2].cpu_seconds_per_day == pytest.approx(48.0)
    assert by_id[3].cpu_basis == "execution_less_waits" and by_id[3].time_split == {"IO": 25.0, "CPU": 75.0}
    assert by_id[2].mean_ms == 300.0
    with pytest.raises(ValueError, match="window_seconds"):
        statement_costs([], 0)


def test_wait_counters_stay_bounded_and_drain_per_statement() -> None:
    sampler = WaitSampler("db1", interval=1.0, max_events=3)
    counts = tuple(WaitCount(qid, "LWLock", f"event{qid}", 1) for qid in range(6))
    sampler.add(WaitReading("pg_stat_activity", 1000.0, 1.0, counts))
    sampler.add(WaitReading("pg_stat_activity", 1001.0, 1.0, (WaitCount(5, "CPU", "CPU", 2),)))
    samples, seconds, readings = sampler.families()
    events = {labels[2] for labels, _ in samples.samples}
    assert len(events) == 3 and "other" in events, "at most max_events series per source"
    assert sum(v for _, v in samples.samples) == 8 and readings.value(source="pg_stat_activity") == 2
    assert all("query_id" not in name for name in samples.labels)
    rows = sampler.drain(now=1001.0)
    assert {(r.query_id, r.wait_event) for r in rows} >= {(0, "event0"), (5, "event5"), (5, "CPU")}
    assert sum(r.samples for r in rows) == 8 and rows[0].interval_seconds == pytest.approx(2.0)
    assert sampler.drain(now=1002.0) == ()
    assert MAX_INTERVAL_KEYS >= 10_000


def test_profile_differences_start_from_a_baseline_and_survive_a_reset() -> None:
    first = {(1, "IO", "DataFileRead"): 10}
    assert list(_differences(None, first)) == []
    assert list(_differences(first, {(1, "IO", "DataFileRead"): 15, (2, "Lock", "tuple"): 3})) == [
        WaitCount(1, "IO", "DataFileRead", 5), WaitCount(2, "Lock", "tuple", 3)]
    assert list(_differences(first, {(1, "IO", "DataFileRead"): 4})) == [WaitCount(1, "IO", "DataFileRead", 4)]


def test_insight_options_parse_durations_and_refuse_unknown_keys() -> None:
    options = InsightOptions.model_validate({"waits": {"interval": "500ms"}, "plans": {"interval": "5m"}})
    assert (options.waits.interval, options.plans.interval, options.plans.max_statements) == (0.5, 300.0, 50)
    with pytest.raises(ValueError, match="extra"):
        InsightOptions.model_validate({"plans": {"max_statement": 3}})
    with pytest.raises(ValueError):
        InsightOptions.model_validate({"plans": {"max_statements": 0}})


def test_refreshes_plan_the_slow_statements_first_then_by_total_time() -> None:
    statements = [
        Statement(1, "SELECT 1", calls=1000, total_ms=9000.0),        # 9 ms each, most time
        Statement(2, "SELECT 2", calls=2, total_ms=4000.0),           # 2 s each: slow
        Statement(3, "SELECT 3", calls=10, total_ms=500.0),
        Statement(4, "VACUUM t", calls=1, total_ms=99999.0),          # not plannable
        Statement(5, "EXPLAIN (GENERIC_PLAN) SELECT 1", calls=1, total_ms=5000.0),
        Statement(6, "SELECT 6", calls=0, total_ms=0.0),
    ]
    assert [s.query_id for s in choose_statements(statements, 3, slow_query_ms=1000.0)] == [2, 1, 3]
    assert [s.query_id for s in choose_statements(statements, 10, slow_query_ms=1000.0)] == [2, 1, 3, 6]


# -- the write cost of an index ----------------------------------------------------------------

ISSUE_KEYS = ("kind", "table", "columns", "sql", "query_ids", "cost_before", "cost_after", "verified", "status",
              "observed_mean_ms_before", "observed_mean_ms_after")


def test_an_entry_costs_a_random_page_and_a_tuple_per_level() -> None:
    assert [btree_depth(n) for n in (0, 1, 256, 257, 65_536, 65_537, 300_000, 10**9)] == [1, 1, 1, 2, 2, 3, 3, 4]
    costs = EntryCosts(random_page_cost=4.0, cpu_index_tuple_cost=0.005)
    assert costs.per_row(300_000) == pytest.approx(4.015)
    assert EntryCosts(random_page_cost=1.1, cpu_index_tuple_cost=0.005).per_row(100) == pytest.approx(1.105)


def test_the_read_saving_is_weighed_against_the_upkeep() -> None:
    per_row = EntryCosts().per_row(300_000)  # 4.015
    # Read once a second (and another statement once in ten), two rows written a second.
    reads = [ReadSaving(calls=600, window_seconds=600.0, cost_before=1400.0, cost_after=24.0),
             ReadSaving(calls=60, window_seconds=600.0, cost_before=900.0, cost_after=100.0)]
    pays = weigh(reads, 2.0, per_row, "since the table's last analyze")
    assert pays.verdict == "pays"
    assert pays.saving_per_second == pytest.approx(1376.0 + 80.0)
    assert pays.maintenance_per_second == pytest.approx(8.03)
    assert pays.note == ("At the current rates the index pays for its upkeep: it saves its statements' reads about 1,456 "
                         "planner cost units per second (1.1 calls per second), against about 8.0 per second to keep it "
                         "up to date (2.0 rows written per second since the table's last analyze, about 4.0 each to "
                         "enter in the index).")
    # Read twice an hour, 400 rows written a second.
    heavy = weigh([ReadSaving(2, 3600.0, 1400.0, 24.0)], 400.0, per_row)
    assert heavy.verdict == "write_heavy"
    assert heavy.saving_per_second == pytest.approx(2 / 3600 * 1376.0)
    assert heavy.maintenance_per_second == pytest.approx(1606.0)
    assert heavy.note.startswith("The index would cost more to maintain than it saves at the current rates: about 1,606 "
                                 "planner cost units per second to keep it up to date (400 rows written per second, "
                                 "about 4.0 each to enter in the index), against about 0.76 per second saved")
    assert heavy.note.endswith("Not worth creating unless the reads grow or the writes slow down.")
    # No window (PostgreSQL 13): the saving is unknown, the upkeep is not.
    no_window = weigh([ReadSaving(600, None, 1400.0, 24.0)], 2.0, per_row)
    assert (no_window.verdict, no_window.saving_per_second) == ("unknown", None)
    assert no_window.maintenance_per_second == pytest.approx(8.03) and "PostgreSQL 14" in no_window.note
    # Not verified: no cost after is invented, and the weighing says nothing.
    heuristic = weigh([ReadSaving(600, 600.0, 1400.0, None)], 2.0, per_row)
    assert (heuristic.verdict, heuristic.saving_per_second, heuristic.note) == ("unknown", None, "")
    # No write rate: the saving alone.
    no_writes = weigh(reads, None, per_row)
    assert (no_writes.verdict, no_writes.maintenance_per_second) == ("unknown", None)
    assert no_writes.saving_per_second == pytest.approx(1456.0) and "write rate is not known" in no_writes.note


def _weighed(relname: str, verdict: str, saving: float | None, maintenance: float | None, cost_before: float,
             status: str = "open") -> IndexAdvice:
    return IndexAdvice(schema="public", relname=relname, columns=("created_at",), query_ids=(1,),
                       cost_before=cost_before, cost_after=10.0, verified="hypopg", status=status,  # type: ignore[arg-type]
                       saving_per_second=saving, maintenance_per_second=maintenance,
                       write_verdict=verdict)  # type: ignore[arg-type]


def test_advice_that_pays_ranks_first_write_heavy_last() -> None:
    advice = [
        _weighed("heavy_big", "write_heavy", 5.0, 500.0, 99_000.0),   # the largest cost saved, a loss
        _weighed("heavy_small", "write_heavy", 5.0, 50.0, 100.0),
        _weighed("unknown", "unknown", None, 8.0, 50_000.0),
        _weighed("pays_little", "pays", 20.0, 10.0, 90_000.0),
        _weighed("pays_most", "pays", 900.0, 100.0, 1_000.0),
    ]
    assert [a.relname for a in sorted(advice, key=rank)] == [
        "pays_most", "pays_little", "unknown", "heavy_small", "heavy_big"]
    assert advice[3].net_per_second == pytest.approx(10.0) and advice[2].net_per_second is None


def test_advise_json_only_adds_the_weighing() -> None:
    assert ADVISE_KEYS[: len(ISSUE_KEYS)] == ISSUE_KEYS
    assert ADVISE_KEYS[len(ISSUE_KEYS):] == ("saving_per_second", "maintenance_per_second", "write_verdict")
    data = _weighed("t", "write_heavy", 0.76444, 2007.5, 1400.0).to_json()
    assert (data["saving_per_second"], data["maintenance_per_second"], data["write_verdict"]) == (
        0.764, 2007.5, "write_heavy")
    shown = AdviseResult("db1", (_weighed("t", "write_heavy", 0.76, 2007.5, 1400.0),), (), 1, None).to_json()
    assert tuple(shown["advice"][0]) == ADVISE_KEYS
    text = render_text(AdviseResult("db1", (_weighed("t", "write_heavy", 0.76, 2007.5, 1400.0),
                                            _weighed("u", "pays", 900.0, 1.0, 1400.0)), (), 2, None))
    assert "t (created_at); -- would cost more to maintain than it saves at the current rates" in text
    assert "u (created_at); --" not in text


def _report_with(*advice: AdviceEntry) -> Report:
    report = Report.from_json(json.loads((GOLDEN / "report.json").read_text("utf-8")))
    return report.model_copy(update={"queries": report.queries.model_copy(update={"index_advice": list(advice)})})


def _entry(table: str, verdict: str, saving: float | None, maintenance: float | None) -> AdviceEntry:
    return AdviceEntry.model_validate({
        "kind": "index", "table": f"public.{table}", "columns": ["created_at"],
        "sql": f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {table}_created_at_idx ON public.{table} (created_at)",
        "query_ids": ["1001"], "cost_before": 152000.0, "cost_after": 21.4, "verified": "hypopg", "status": "open",
        "observed_mean_ms_before": None, "observed_mean_ms_after": None, "saving_per_second": saving,
        "maintenance_per_second": maintenance, "write_verdict": verdict, "datname": "poker", "writes_per_second": 500.0,
        "applied_at": None})


def test_the_report_never_recommends_a_write_heavy_index() -> None:
    settings = ReportSettings.from_config(make_config("postgresql://x@127.0.0.1/x", profile="production"))
    heavy = _entry("busy_hands", "write_heavy", 0.76, 2007.5)
    paying = _entry("game_hands", "pays", 5066.0, 1.4)
    assert index_advice(_report_with(heavy), settings, None) == []
    [rec] = index_advice(_report_with(heavy, paying), settings, None)
    assert rec.message.startswith("Create an index on public.game_hands (created_at)")
    assert "it pays for its upkeep at the current rates: it saves the reads about 5,066.0 planner cost units per " \
           "second, maintaining it costs about 1.4" in rec.message
    assert "busy_hands" not in rec.message and [a["table"] for a in rec.evidence["advice"]] == ["public.game_hands"]
    assert "(1 other index advice left out: it would cost more to maintain than it saves at the current rates)" \
        in rec.message
    assert advice_line(heavy).endswith("; would cost more to maintain than it saves at the current rates "
                                       "(saves 0.76, upkeep 2,007.5 planner cost units/s)")
    assert advice_line(paying).endswith("; pays for its upkeep (saves 5,066.0, upkeep 1.4 planner cost units/s)")
    # A report stored before the weighing existed reads as not weighed.
    old = json.loads((GOLDEN / "report.json").read_text("utf-8"))
    for a in old["queries"]["index_advice"]:
        for key in ("saving_per_second", "maintenance_per_second", "write_verdict"):
            a.pop(key, None)
    assert Report.from_json(old).queries.index_advice[0].write_verdict == "unknown"


def test_the_service_counts_the_window_of_the_calls() -> None:
    """In pgperf serve the calls of a refresh's statements were counted over the sampling
    intervals observed since the previous refresh: their seconds are the window."""
    config = make_config("postgresql://x@127.0.0.1/x")
    insight = TargetInsight(config.resolved_targets()[0], config)

    def snap(seconds: float, calls: int) -> Any:
        delta = StatementDelta(dbid=1, userid=1, queryid=7, datname="db", username="u", calls=calls,
                               total_ms=calls * 2.0, rows=calls, hit=0, read=0, temp_written=0, plan_ms=0.0,
                               sum_squares=0.0, min_ms=2.0, max_ms=2.0, restarted=False)
        records = StatementRecords(interval_seconds=seconds, deltas=(delta,) if calls else (), texts={7: "SELECT 1"},
                                   stats_reset=False, deallocations=0)
        return SimpleNamespace(records={StatementRecords: records})

    for seconds, calls in ((15.0, 3), (15.2, 0), (14.8, 5)):
        insight.observe(snap(seconds, calls))
    [statement] = insight.take_statements()
    assert (statement.calls, statement.window_seconds) == (8, pytest.approx(45.0))
    insight.observe(snap(15.0, 1))
    assert [s.window_seconds for s in insight.take_statements()] == [15.0]
    assert insight.take_statements() == []
