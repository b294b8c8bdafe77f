"""Reports over a deterministic store (tests/report_fixture.py) on real PostgreSQL.

Golden files: ``tests/golden/report.{txt,md,json}``; after an intended change of the
report, regenerate them with ``PGPERF_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_reports.py``
and review the diff.
"""

from __future__ import annotations

import json
import os
import types as types_module
import typing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import psycopg
import pytest
from pydantic import BaseModel

import report_fixture as fx
from helpers import make_config
from pgperf.config import Config
from pgperf.reports import ReportNotFound, ReportService, render
from pgperf.reports.builder import CatalogReading, ReportRequest, build_report
from pgperf.reports.catalog import read_catalog, try_read_catalog
from pgperf.reports.model import InvalidReport, Report, ReportSettings, Statement
from pgperf.reports.queries import MAIN_TABLE_SQL, STATEMENT_TYPE_SQL, ReportQueries
from pgperf.reports.recommendations import seq_scans
from pgperf.store import StoreClient
from pgperf.store.rollup import roll_up
from tools.cluster import Cluster

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("PGPERF_UPDATE_GOLDEN") == "1"


def report_config(dsn: str, schema: str, **flags: Any) -> Config:
    return make_config(dsn, profile="production", target_name=fx.TARGET,
                       store={"enabled": True, "schema": schema}, **flags)


def settings() -> ReportSettings:
    """The production profile's; forecasts from a day of history, so that the fixture's two days give some."""
    return ReportSettings.from_config(make_config("postgresql://x@127.0.0.1/x", profile="production",
                                                  reports={"forecast": {"min_history": "1d"}}))


@pytest.fixture(scope="module")
def fixture_store(pg_cluster: Cluster) -> str:
    with pg_cluster.connect() as conn:
        fx.load(conn, "report_fixture")
    return "report_fixture"


def build(conn: psycopg.Connection[Any], schema: str, catalog: CatalogReading, report_id: str = fx.REPORT_ID) -> Report:
    conn.execute("SET TimeZone = 'UTC'")
    request = ReportRequest(fx.TARGET, fx.WINDOW_START, fx.WINDOW_END, "daily", report_id, fx.NOW)
    return build_report(ReportQueries(conn, schema, settings()), request, catalog)


def golden_report(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    """The fixture's report in its JSON form."""
    return build(conn, schema, CatalogReading(fx.CATALOG)).to_json()


def schema_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(resources.files("pgperf.reports").joinpath("report.schema.json").read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("fmt, name", [("text", "report.txt"), ("md", "report.md"), ("json", "report.json")])
def test_golden(pg_cluster: Cluster, fixture_store: str, fmt: str, name: str) -> None:
    with pg_cluster.connect() as conn:
        data = golden_report(conn, fixture_store)
    out = render(data, fmt)
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(out, encoding="utf-8")
    assert out == path.read_text(encoding="utf-8"), f"{name} differs: PGPERF_UPDATE_GOLDEN=1 to regenerate, then review"


def test_fixture_report_content(pg_cluster: Cluster, fixture_store: str) -> None:
    """What the golden files say, asserted: the seed's sections and the fixture's events."""
    with pg_cluster.connect() as conn:
        data = golden_report(conn, fixture_store)
    s = data["summary"]
    assert s["total_queries"] == sum(x[3] for x in fx.STATEMENTS) * 286 + 50 * 286  # 286 samples up, + remainder
    assert s["error_count"] == 286 * 2 + 1  # rollbacks + the deadlock at 14:05
    assert s["uptime_percent"] == round(100 * 286 / 288, 2)
    assert s["slowest_query"]["query_id"] == "1002" and s["fastest_query"]["query_id"] == "1007"
    assert data["queries"]["slowest_by_mean"][0]["query_id"] == "1002"
    assert data["queries"]["most_frequent"][0]["query_text"] == "BEGIN"
    types = {t["statement_type"]: t for t in data["queries"]["by_statement_type"]}
    assert set(types) == {"SELECT", "INSERT", "UPDATE", "DELETE", "OTHER"}
    assert types["DELETE"]["statements"] == 2  # the WITH ... DELETE counts as a DELETE
    quality = data["data_quality"]
    assert quality["spans_statistics_reset"] and quality["statistics_resets"] == ["2024-01-01T09:00:00.000Z"]
    assert quality["spans_server_restart"] and quality["server_restarts"] == ["2024-01-01T17:58:00.000Z"]
    assert quality["rollup_hours"] == 24
    spike = data["anomalies"][0]
    assert spike["message"] == "Query execution time spike detected: 2150.00ms (47.5x average)"
    assert spike["subject"] == "1001" and spike["impact"] == "high"
    assert any(a["kind"] == "connections" for a in data["anomalies"])
    rules = {r["rule"]: r for r in data["recommendations"]}
    assert set(rules) >= {"slow_queries", "cache_hit_ratio", "cpu_sustained", "connection_utilization",
                          "seq_scans_large_tables", "unused_indexes", "duplicate_indexes", "dead_tuples", "temp_files",
                          "alert_fatigue", "capacity_disk"}
    assert rules["cache_hit_ratio"]["evidence"]["cache_hit_ratio_percent"] == 94.5
    assert rules["cpu_sustained"]["evidence"]["avg_percent"] == 87.5
    assert rules["alert_fatigue"]["evidence"]["count"] == 12
    # The disk grows 1 GB a day from 90 GB of 110: full 18 days after the window (capacity advice with its date);
    # one recommendation for the disk, not also the one of its usage over the profile's threshold.
    disk = rules["capacity_disk"]
    assert disk["message"].startswith("Grow the disk before 2024-01-20") and "disk_growth" not in rules
    assert disk["evidence"]["growth_per_day"] == pytest.approx(2**30, rel=1e-3)
    assert data["resources"]["disk"]["growth_source"] == "disk_usage_bytes"  # database_size_bytes is NULL
    assert data["resources"]["disk"]["days_until_full"] == 18.0
    forecasts = {(f["metric"], f["subject"]): f for f in data["forecasts"]}
    assert forecasts[("disk_usage_bytes", None)]["reaches_limit_at"] == "2024-01-20T00:30:00.000Z"
    assert forecasts[("database_size_bytes", None)]["reason"].startswith("no database size in the stored samples")
    assert {s for m, s in forecasts if m == "statement_mean_time_ms"} == {"1002", "1001", "1005", "1003", "1004"}
    # The 16 kB unused index is below the rule's floor; the 48 MB one is reported.
    assert [i["index"] for i in rules["unused_indexes"]["evidence"]["indexes"]] == ["public.game_hands_pot_idx"]
    assert "error_rate" not in rules  # 0.2 % is under production's 0.5 %
    # Index candidates are query insight's stored advice, not guesses from statement texts.
    seq = rules["seq_scans_large_tables"]
    assert seq["evidence"]["tables"][0]["index_candidates"][0]["columns"] == ["created_at"]
    assert "public.game_hands (created_at, verified by the planner)" in seq["message"]
    advice = rules["index_advice"]
    assert advice["severity"] == "high" and advice["evidence"]["advice"][0]["verified"] == "hypopg"
    assert "falls from 152,000.00 to 21.40" in advice["message"]
    assert data["queries"]["index_advice"][0]["sql"].endswith("ON public.game_hands (created_at)")
    # Where each listed statement's time goes: 1001 spent 3 of 4 sampled seconds on CPU.
    by_total = {s["query_id"]: s for s in data["queries"]["slowest_by_total"]}
    assert by_total["1001"]["time_split_percent"] == {"CPU": 75.0, "IO": 25.0}
    assert by_total["1001"]["cpu_basis"] == "wait_samples" and by_total["1001"]["cpu_seconds_per_day"] > 0
    assert by_total["1003"]["cpu_basis"] == "execution_less_io" and by_total["1003"]["time_split_percent"] == {
        "CPU": 100.0}


def test_report_validates_against_the_json_schema(pg_cluster: Cluster, fixture_store: str) -> None:
    with pg_cluster.connect() as conn:
        data = golden_report(conn, fixture_store)
    errors = [f"{e.json_path}: {e.message}" for e in schema_validator().iter_errors(data)]
    assert errors == []
    data["summary"]["total_queries"] = "many"
    assert list(schema_validator().iter_errors(data)), "the schema must reject a wrong type"


def _schema_types(node: dict[str, Any]) -> tuple[set[str], list[Any] | None]:
    """The JSON types a schema node allows, and its enum (None: any value of those types)."""
    if "const" in node:
        return {type(node["const"]).__name__}, [node["const"]]
    if "enum" in node:
        return set(), node["enum"]
    if "oneOf" in node:
        return {t for alt in node["oneOf"] for t in _schema_types(alt)[0]}, None
    kind = node.get("type")
    return ({kind} if isinstance(kind, str) else set(kind or ())), None


def _model_types(annotation: Any) -> tuple[set[str], list[Any] | None, Any]:
    """What a model field's annotation allows, in the schema's terms: JSON types, enum, and the
    model or list item type to compare further."""
    types: set[str] = set()
    enum: list[Any] | None = None
    inner: Any = None
    for arg in typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types_module.UnionType) \
            else (annotation,):
        if arg is type(None):
            types.add("null")
            continue
        if typing.get_origin(arg) is typing.Annotated:
            arg = typing.get_args(arg)[0]
        origin = typing.get_origin(arg)
        if origin is typing.Literal:
            enum = [*(enum or []), *typing.get_args(arg)]
        elif origin is list:
            types.add("array")
            inner = typing.get_args(arg)[0]
        elif origin is dict:
            types.add("object")
        elif isinstance(arg, type) and issubclass(arg, BaseModel):
            types.add("object")
            inner = arg
        else:
            types.add({bool: "boolean", int: "integer", float: "number", str: "string", datetime: "string"}[arg])
    if "number" in types:
        types.discard("integer")  # float | int: a JSON number
    return types, enum, inner


def _compare(schema: dict[str, Any], node: dict[str, Any], model: Any, where: str) -> list[str]:
    node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]] if "$ref" in node else node
    if "oneOf" in node:  # null, or an object: compare the object
        node = next(alt for alt in node["oneOf"] if alt.get("type") == "object")
    props = node.get("properties", {})
    fields = model.model_fields
    problems = [f"{where}: fields differ: schema {list(props)}, model {list(fields)}"] if list(props) != list(fields) else []
    for name in props.keys() & fields.keys():
        prop = props[name]
        want_types, want_enum = _schema_types(prop)
        types, enum, inner = _model_types(fields[name].annotation)
        if want_enum is not None:
            if set(map(str, want_enum)) != set(map(str, (enum or []) + (["None"] if "null" in types else []))):
                problems.append(f"{where}.{name}: enum {want_enum} in the schema, {enum} in the model")
        elif types != want_types:
            problems.append(f"{where}.{name}: {sorted(want_types)} in the schema, {sorted(types)} in the model")
        item = prop.get("items") if "array" in want_types else prop
        if inner is not None and isinstance(inner, type) and issubclass(inner, BaseModel) and item is not None:
            problems += _compare(schema, item, inner, f"{where}.{name}")
    if set(node.get("required", [])) != set(props):
        problems.append(f"{where}: not every field is required in the schema")
    return problems


def test_the_model_is_the_json_schema() -> None:
    """reports/model.py and report.schema.json describe one report: the same fields in the same
    order, each with the same JSON types, nullability and values."""
    schema = json.loads(resources.files("pgperf.reports").joinpath("report.schema.json").read_text("utf-8"))
    assert _compare(schema, schema, Report, "report") == []


def test_stored_reports_are_validated(pg_cluster: Cluster, fixture_store: str) -> None:
    """A stored body that is not a report is refused when read, with where it differs."""
    with pg_cluster.connect() as conn:
        data = golden_report(conn, fixture_store)
    assert Report.from_json(data).to_json() == data
    data["summary"]["total_queries"] = "many"
    with pytest.raises(InvalidReport, match="summary.total_queries"):
        Report.from_json(data)


def test_rollups_give_the_same_report_as_raw_rows(pg_cluster: Cluster, fixture_store: str) -> None:
    with pg_cluster.connect() as conn:
        fx.load(conn, "report_raw", rollup=False)
        rolled = golden_report(conn, fixture_store)
        raw = golden_report(conn, "report_raw")
    assert rolled["data_quality"].pop("rollup_hours") == 24
    assert raw["data_quality"].pop("rollup_hours") == 0
    assert rolled == raw


def test_a_late_sample_rebuilds_its_rolled_hour(pg_cluster: Cluster) -> None:
    with pg_cluster.connect() as conn:
        fx.load(conn, "report_late")
        hour = datetime(2024, 1, 1, 3, tzinfo=UTC)
        before = conn.execute("SELECT calls FROM report_late.query_metrics_hourly WHERE hour = %s AND query_id = '1006'",
                              (hour,)).fetchone()[0]
        conn.execute("INSERT INTO report_late.query_performance_metrics (target, recorded_at, interval_seconds, query_id,"
                     " datname, username, query_text, calls, total_time, mean_time, min_time, max_time, stddev_time,"
                     " rows_affected, cache_hits, cache_misses) VALUES (%s, %s, 300, '1006', 'poker', 'app', 'x', 7, 7,"
                     " 1, 1, 1, 0, 0, 0, 0)", (fx.TARGET, hour + timedelta(minutes=31)))
        done = roll_up(conn, "report_late", now=fx.NOW, dirty_from={fx.TARGET: hour + timedelta(minutes=31)})
        assert done[0].start == hour and done[0].caught_up
        after = conn.execute("SELECT calls FROM report_late.query_metrics_hourly WHERE hour = %s AND query_id = '1006'",
                             (hour,)).fetchone()[0]
        assert after == before + 7
        # Nothing dirty: a second run has nothing to do.
        assert roll_up(conn, "report_late", now=fx.NOW) == []


def test_rollup_runs_are_bounded(pg_cluster: Cluster) -> None:
    with pg_cluster.connect() as conn:
        fx.load(conn, "report_bounded", rollup=False)
        first = roll_up(conn, "report_bounded", now=fx.NOW, targets=(fx.TARGET,), max_hours=10)
        assert [(r.start.hour, r.end.hour, r.caught_up) for r in first] == [(0, 10, False)]
        second = roll_up(conn, "report_bounded", now=fx.NOW, max_hours=100)
        assert second[0].start == first[0].end and second[0].caught_up


def test_catalog_reads_columns_and_indexed_columns(pg_cluster: Cluster) -> None:
    with pg_cluster.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS catalog_probe; CREATE TABLE catalog_probe (id int PRIMARY KEY, a int, b text);"
                     " ALTER TABLE catalog_probe DROP COLUMN b; CREATE INDEX ON catalog_probe (a, id);"
                     # Rows: the catalog reads the 200 largest tables, and the session's
                     # database holds hundreds of empty ones (store partitions) by now.
                     " INSERT INTO catalog_probe SELECT g, g FROM generate_series(1, 1000) g")
        conn.commit()
    try:
        facts = read_catalog(pg_cluster.dsn())
        probe = next(t for t in facts.tables if t.name == "public.catalog_probe")
        assert probe.columns == ("id", "a") and sorted(probe.indexed_columns) == ["a", "id"]
    finally:
        with pg_cluster.connect() as conn:
            conn.execute("DROP TABLE catalog_probe")
            conn.commit()


@pytest.mark.parametrize("text, kind, table", [
    ("SELECT * FROM game_hands WHERE id = $1", "SELECT", "game_hands"),
    ("select count(*) from public.\"Players\" p", "SELECT", "public.players"),
    ("/* app */ (SELECT 1)", "SELECT", None),
    ("INSERT INTO audit.log (a) VALUES ($1)", "INSERT", "audit.log"),
    ("UPDATE ONLY accounts SET x = $1", "UPDATE", "accounts"),
    ("DELETE FROM sessions WHERE expires_at < $1", "DELETE", "sessions"),
    ("WITH x AS (SELECT 1) UPDATE t SET a = 1 FROM x", "UPDATE", "t"),
    ("WITH x AS (SELECT a FROM src) SELECT * FROM x", "SELECT", "src"),
    ("select pg_sleep($1)", "SELECT", None),
    ("SELECT extract(epoch FROM now())", "SELECT", None),
    ("SELECT extract($1 FROM write_lag), application_name FROM pg_stat_replication", "SELECT",
     "pg_stat_replication"),
    ("SELECT extract(epoch from now() - xact_start) FROM pg_stat_activity", "SELECT", "pg_stat_activity"),
    ("SELECT substring(name from $1), trim(both $2 from code) FROM products", "SELECT", "products"),
    ("SELECT a IS NOT DISTINCT FROM b FROM pairs", "SELECT", "pairs"),
    ("DELETE FROM t WHERE x IS DISTINCT FROM $1", "DELETE", "t"),
    ("SELECT * FROM generate_series($1, $2) g JOIN items i ON i.id = g", "SELECT", "items"),
    ("BEGIN", "OTHER", None),
    ("VACUUM ANALYZE t", "OTHER", None),
])
def test_statement_type_and_table_heuristic(pg_conn: Any, text: str, kind: str, table: str | None) -> None:
    row = pg_conn.execute(f"SELECT stmt_type, {MAIN_TABLE_SQL} FROM (SELECT query_text, {STATEMENT_TYPE_SQL} AS stmt_type"
                          " FROM (SELECT %s::text AS query_text) q) c", (text,)).fetchone()
    assert row == (kind, table)


def test_service_stores_lists_and_reads_reports(pg_cluster: Cluster, fixture_store: str) -> None:
    config = report_config(pg_cluster.dsn(), fixture_store)
    client = StoreClient(config)
    try:
        service = ReportService(config, client)
        report = service.generate(fx.WINDOW_START, fx.WINDOW_END, kind="daily", now=fx.NOW, catalog=fx.CATALOG)
        assert report.report_id == f"perf-report-daily-{int(fx.WINDOW_END.timestamp() * 1000)}"
        stored = pg_cluster.execute(f"SELECT kind, target, period_start, period_end, report_data->>'report_id'"
                                    f" FROM {fixture_store}.performance_reports WHERE report_id = %s",
                                    params=(report.report_id,))
        assert stored == [("daily", fx.TARGET, fx.WINDOW_START, fx.WINDOW_END, report.report_id)]
        again = service.get(report.report_id)
        assert again == report and again.to_json() == report.to_json()
        listed = service.list(kind="daily")
        assert listed[0].report_id == report.report_id and listed[0].anomalies == len(report.anomalies)
        with pytest.raises(ReportNotFound):
            service.get("perf-report-nope")
        found = service.detect_anomalies(datetime(2024, 1, 1, 14, tzinfo=UTC), datetime(2024, 1, 1, 15, tzinfo=UTC))
        assert [a.subject for a in found if a.kind == "query_performance"] == ["1001"]
        # A baseline of more than six hours is read hour by hour (from the rollups).
        assert found[0].factor == 47.5 and found[0].evidence["resolution"] == "hour"
        assert found[0].at == datetime(2024, 1, 1, 14, tzinfo=UTC)
        quiet = service.detect_anomalies(datetime(2024, 1, 1, 3, tzinfo=UTC), datetime(2024, 1, 1, 4, tzinfo=UTC))
        assert quiet == []
        with pytest.raises(ValueError, match="after the start"):
            service.generate(fx.WINDOW_END, fx.WINDOW_START)
        with pytest.raises(ValueError, match="time zone"):
            service.generate(datetime(2024, 1, 1), datetime(2024, 1, 2))
    finally:
        client.close()


def test_anomalies_sample_by_sample_on_a_short_baseline(pg_cluster: Cluster, fixture_store: str) -> None:
    config = report_config(pg_cluster.dsn(), fixture_store, reports={"baseline_days": 0})
    client = StoreClient(config)
    try:
        found = ReportService(config, client).detect_anomalies(datetime(2024, 1, 1, 13, tzinfo=UTC),
                                                               datetime(2024, 1, 1, 15, tzinfo=UTC))
    finally:
        client.close()
    assert len(found) == 1
    spike = found[0]
    assert spike.evidence["resolution"] == "sample" and spike.evidence["baseline_points"] == 24
    assert spike.at == datetime(2024, 1, 1, 14, 5, tzinfo=UTC) and spike.factor == 47.5
    assert spike.message == "Query execution time spike detected: 2150.00ms (47.5x average)"


def test_unreachable_catalog_is_reported_not_fatal(pg_cluster: Cluster, fixture_store: str) -> None:
    facts, error = try_read_catalog("postgresql://nobody@127.0.0.1:1/none", connect_timeout=1)
    assert facts is None and error is not None and "could not be read" in error
    with pg_cluster.connect() as conn:
        report = build(conn, fixture_store, CatalogReading(None, error), report_id="r")
    rules = {r.rule for r in report.recommendations}
    assert not rules & {"seq_scans_large_tables", "unused_indexes", "duplicate_indexes", "dead_tuples"}
    assert {"slow_queries", "cpu_sustained", "cache_hit_ratio"} <= rules
    assert report.to_json()["data_quality"]["catalog"] == {"available": False, "database": None, "read_at": None,
                                                           "stats_reset": None, "error": error}
    assert any("Live catalog facts were not available" in n for n in report.data_quality.notes)
    assert "catalog facts were not available" in render(report, "text")


def test_catalog_facts_from_a_real_database(pg_cluster: Cluster) -> None:
    with pg_cluster.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS catalog_probe")
        conn.execute("CREATE TABLE catalog_probe (id int PRIMARY KEY, v int)")
        conn.execute("INSERT INTO catalog_probe SELECT g, g FROM generate_series(1, 20000) g")
        conn.execute("CREATE INDEX catalog_probe_v ON catalog_probe (v)")
        conn.execute("CREATE INDEX catalog_probe_id_again ON catalog_probe (id)")
        conn.execute("ANALYZE catalog_probe")
    facts = read_catalog(pg_cluster.dsn())
    assert facts.database == "postgres"
    assert facts.setting_bytes("shared_buffers") == 64 * 1024 * 1024  # the test cluster's setting
    assert facts.setting("autovacuum") == "on"
    assert any(d.table_name == "catalog_probe" and set(d.indexes) == {"catalog_probe_pkey", "catalog_probe_id_again"}
               for d in facts.duplicate_indexes)
    unused = {i.index_name for i in facts.unused_indexes}
    assert "catalog_probe_v" in unused and "catalog_probe_pkey" not in unused  # constraints are never "unused"
    probe = next(t for t in facts.tables if t.relname == "catalog_probe")
    assert probe.n_live_tup >= 20000 and probe.size_bytes > 0  # statistics are estimates


def test_the_store_writer_rolls_up_what_it_wrote(pg_cluster: Cluster, tmp_path: Path) -> None:
    from pgperf.store import QueryRow, ResourceRow, SampleBatch, StoreWriter

    pg_cluster.execute("DROP SCHEMA IF EXISTS report_writer CASCADE")
    config = make_config(pg_cluster.dsn(), target_name="w",
                         store={"enabled": True, "schema": "report_writer", "spool_dir": str(tmp_path)})
    writer = StoreWriter(config)

    def batch(seq: int, at: datetime, calls: int) -> SampleBatch:
        row = QueryRow("w", at.timestamp(), 60.0, "42", "db", "u", "SELECT 1", calls, calls * 2.0, 2.0, 0.0, 0.0, 0.0,
                       0, 0, 0)
        return SampleBatch("w", seq, at.timestamp(), ResourceRow("w", at.timestamp(), pg_up=True), [row])

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    try:
        for i in range(3):
            writer.write_now(batch(i, hour + timedelta(minutes=10 * (i + 1)), 5))
        writer.roll_up()
        rows = pg_cluster.execute("SELECT hour, samples, calls, total_time FROM report_writer.query_metrics_hourly")
        assert rows == [(hour, 3, 15, 30)]
        # A sample from the spool lands in the rolled hour later: the next run rebuilds that hour.
        writer.write_now(batch(9, hour + timedelta(minutes=45), 1))
        writer.roll_up()
        rows = pg_cluster.execute("SELECT hour, samples, calls FROM report_writer.query_metrics_hourly")
        assert rows == [(hour, 4, 16)]
        until = pg_cluster.execute("SELECT rolled_until FROM report_writer.query_rollup_state WHERE target = 'w'")
        assert until == [(datetime.now(UTC).replace(minute=0, second=0, microsecond=0),)]
    finally:
        writer.stop(timeout=1)


def test_scans_are_not_called_calls() -> None:
    """pg_stat_user_tables counts each process of a parallel scan: the sentence says that the
    scans are scans (parallel workers included) and gives the statements' calls beside them."""
    table = fx.CATALOG.tables[0]
    parallel = replace(fx.CATALOG, tables=(replace(table, n_live_tup=510_000, seq_scan=8_446,
                                                   seq_tup_read=8_446 * 168_421, idx_scan=12),))
    statement = Statement.model_validate({
        "query_id": "7", "datname": "poker", "username": "app", "statement_type": "SELECT",
        "query_text": "SELECT count(*) FROM game_hands WHERE created_at >= $1", "table": "game_hands",
        "calls": 2_758, "total_time_ms": 5.0, "mean_time_ms": 5.0, "peak_interval_mean_ms": 5.0, "max_time_ms": 5.0,
        "rows": 1, "cache_hit_ratio_percent": 100.0, "temp_blocks_written": 0, "share_of_time_percent": 100.0,
        "intervals": 1, "spans_reset": False})
    with_statement = _report_with(statement)
    [rec] = seq_scans(with_statement, settings(), parallel)
    assert "8,446 full scans" not in rec.message
    assert ("public.game_hands (510,000 rows) had 8,446 sequential scans since 2023-12-01T00:00:00.000Z (each "
            "parallel worker's share counts as one scan), reading 168,421 rows per scan, against 12 index scans; "
            "the listed statements reading it ran 2,758 times in the window") in rec.message
    assert rec.evidence["tables"][0]["statement_calls"] == 2_758
    assert "parallel worker" in rec.evidence["scans_count"]
    # Without query insight's advice the rule says so, and guesses nothing.
    assert "Query insight has no index advice for them" in rec.message


def _report_with(statement: Statement) -> Report:
    """The fixture's report with *statement* as its only listed statement and no advice."""
    data = json.loads((GOLDEN / "report.json").read_text(encoding="utf-8"))
    report = Report.from_json(data)
    queries = report.queries.model_copy(update={"slowest_by_total": [statement], "slowest_by_mean": [statement],
                                                "most_frequent": [], "spilling_to_disk": [], "index_advice": []})
    return report.model_copy(update={"queries": queries})


def test_a_window_without_samples_says_so(pg_cluster: Cluster, fixture_store: str) -> None:
    """A window the store holds nothing of: the report says the window holds no samples,
    measures nothing (no "CPU: not measured (pgperf does not run on the database host)")
    and recommends nothing from today's catalog, which says nothing about that window."""
    with pg_cluster.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        start = datetime(2023, 6, 1, tzinfo=UTC)
        request = ReportRequest(fx.TARGET, start, start + timedelta(days=1), "on_demand", "perf-report-empty", fx.NOW)
        report = build_report(ReportQueries(conn, fixture_store, settings()), request, CatalogReading(fx.CATALOG))
    assert report.summary.samples == 0
    assert report.recommendations == [] and report.anomalies == []
    assert not report.data_quality.catalog.available and report.data_quality.catalog.error == "the window holds no samples"
    text = render(report, "text")
    assert "No samples in the window: nothing was measured for poker-db from 2023-06-01T00:00:00.000Z to " \
           "2023-06-02T00:00:00.000Z." in text
    assert "CPU: not measured" not in text and "pgperf does not run on the database host" not in text
    assert "No samples were stored for this target in the window." in text
    html = render(report, "html")
    assert "The window holds no samples" in html and "None: the window holds no samples." in html
    assert "pgperf does not run on the database host" not in html
