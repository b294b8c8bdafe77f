"""Building a report: the SQL results of ``queries.py`` arranged into the report model
(``model.py``), with query insight's cost analysis of the listed statements and its index
advice and the capacity forecasts (``forecasting.py``), then the recommendation rules and
the anomaly detector run over it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..insight.advice import IndexAdvice
from ..insight.advisor import ADVISE_KEYS
from ..insight.costs import StatementTotals, statement_cost
from ..insight.waits import CPU
from ..redact import redact_statements_in
from . import anomalies as anomaly_detection
from .catalog import CatalogFacts
from .forecast import Forecast
from .forecasting import Made, make_forecasts
from .model import (
    SCHEMA_VERSION,
    AdviceEntry,
    AlertsInWindow,
    AnomalyEntry,
    AppliedSettings,
    Queries,
    RecommendationEntry,
    Report,
    ReportSettings,
    Resources,
    Statement,
    StatementRef,
    Summary,
    iso,
)
from .queries import AnomalyInputs, ReportQueries, Window
from .recommendations import recommend

__all__ = ["CatalogReading", "ReportRequest", "build_report"]


@dataclass(frozen=True)
class ReportRequest:
    """Which report to build: of *target* over ``[start, end)``, its kind and id, and when
    it is generated."""

    target: str
    start: datetime
    end: datetime
    kind: str
    report_id: str
    generated_at: datetime


@dataclass(frozen=True)
class CatalogReading:
    """The monitored database's catalog facts, or why there are none."""

    facts: CatalogFacts | None
    error: str | None = None


def _num(value: Any, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _statement(q: dict[str, Any], total_time: float) -> Statement:
    hits, misses = _int(q["hits"]), _int(q["misses"])
    return Statement.model_validate({
        "query_id": q["query_id"], "datname": q["datname"], "username": q["username"], "query_text": q["query_text"],
        "statement_type": q["statement_type"], "table": q["main_table"], "calls": _int(q["calls"]),
        "total_time_ms": _num(q["total_time"]), "mean_time_ms": _num(q["mean"]),
        "peak_interval_mean_ms": _num(q["peak"]), "max_time_ms": _num(q["max_time"]), "rows": _int(q["rows"]),
        "cache_hit_ratio_percent": round(100.0 * hits / (hits + misses), 2) if hits + misses else None,
        "temp_blocks_written": _int(q["temp_blocks"]),
        "share_of_time_percent": round(100.0 * float(q["total_time"]) / total_time, 2) if total_time else None,
        "intervals": _int(q["samples"]), "spans_reset": bool(q["spans_reset"]),
    })


def _queries(st: dict[str, Any], settings: ReportSettings) -> tuple[Queries, StatementRef | None, StatementRef | None]:
    """The query analysis, and the slowest and fastest statements (by mean)."""
    totals = st.get("totals") or {}
    total_time = float(totals.get("total_time") or 0)
    top = st.get("top") or []
    stmts = [(_statement(q, total_time), q) for q in top]

    def ranked(key: str, limit: int = settings.top_n) -> list[Statement]:
        chosen = [(q[key], s) for s, q in stmts if q.get(key) is not None and q[key] <= limit]
        return [s for _, s in sorted(chosen, key=lambda item: item[0])]

    def share(value: Any) -> float | None:
        return round(100.0 * float(value) / total_time, 2) if total_time else None

    remainder = st.get("remainder") or {}
    queries = Queries.model_validate({
        "slowest_by_mean": ranked("r_mean"),
        "slowest_by_total": ranked("r_total"),
        "most_frequent": ranked("r_calls"),
        "spilling_to_disk": ranked("r_temp", 5),
        "by_statement_type": [
            {"statement_type": x["statement_type"], "statements": _int(x["statements"]), "calls": _int(x["calls"]),
             "total_time_ms": _num(x["total_time"]), "share_of_time_percent": share(x["total_time"])}
            for x in st.get("by_type") or []],
        "by_table": [
            {"table": x["main_table"], "statement_types": x["statement_types"].split(","),
             "statements": _int(x["statements"]), "calls": _int(x["calls"]), "total_time_ms": _num(x["total_time"]),
             "share_of_time_percent": share(x["total_time"])}
            for x in st.get("by_table") or []],
        "slow_statements": {
            "threshold_ms": settings.thresholds.slow_query_time_ms, "count": _int(st.get("slow_count")),
            "statements": [{"query_id": x["query_id"], "mean_time_ms": _num(x["mean"]), "calls": _int(x["calls"]),
                            "total_time_ms": _num(x["total_time"])} for x in st.get("slow") or []],
        },
        "remainder": ({"calls": _int(remainder.get("calls")), "total_time_ms": _num(remainder.get("total_time"))}
                      if remainder.get("calls") is not None else None),
    })
    fastest = ranked("r_fast", 1)
    slowest = queries.slowest_by_mean[0].ref() if queries.slowest_by_mean else None
    return queries, slowest, fastest[0].ref() if fastest else None


def _listed(q: Queries) -> list[Statement]:
    return [*q.slowest_by_mean, *q.slowest_by_total, *q.most_frequent, *q.spilling_to_disk]


def _query_ids(q: Queries) -> list[int]:
    """The listed statements' query ids (the remainder row has none)."""
    return sorted({int(s.query_id) for s in _listed(q) if s.query_id.lstrip("-").isdigit()})


def _sampled_seconds(res: dict[str, Any]) -> float | None:
    """Seconds the window's samples cover: first to last, plus one interval; None without."""
    first, last = _when(res.get("first")), _when(res.get("last"))
    if first is None or last is None or not _int(res.get("samples")):
        return None
    return (last - first).total_seconds() + float(res.get("median_interval") or 0)


def _with_costs(q: Queries, st: dict[str, Any], waits: dict[int, dict[str, float]], seconds: float | None) -> Queries:
    """Each listed statement with its time split and CPU-seconds per day (``insight.costs``):
    the split from its wait samples where it has some, else its execution time as CPU."""
    if not seconds:
        return q
    db_ms = float((st.get("totals") or {}).get("total_time") or 0)

    def cost(s: Statement) -> Statement:
        if not s.query_id.lstrip("-").isdigit():
            return s
        sampled = waits.get(int(s.query_id), {})
        c = statement_cost(StatementTotals(int(s.query_id), s.calls, s.total_time_ms, wait_seconds=sampled,
                                           waits_include_cpu=CPU in sampled), db_ms, seconds)
        return s.model_copy(update={"time_split_percent": {k: round(v, 1) for k, v in c.time_split.items()},
                                    "cpu_seconds_per_day": round(c.cpu_seconds_per_day, 3), "cpu_basis": c.cpu_basis})

    return q.model_copy(update={key: [cost(s) for s in getattr(q, key)]
                                for key in ("slowest_by_mean", "slowest_by_total", "most_frequent", "spilling_to_disk")})


def _advice_entry(a: IndexAdvice) -> AdviceEntry:
    shown = a.to_json()
    return AdviceEntry.model_validate({**{k: shown[k] for k in ADVISE_KEYS}, "datname": a.datname,
                                       "writes_per_second": shown["writes_per_second"], "applied_at": a.applied_at})


def _disk_outlook(made: list[Made]) -> tuple[float | None, str | None, float | None]:
    """Growth per day, its source and the days until the disk is full, from the forecasts: the
    growth of the database size when one was made, else of the filesystem's usage."""
    by_metric = {m.forecast.metric: m.forecast for m in made if isinstance(m.forecast, Forecast)}
    growth, source = None, None
    for metric in ("database_size_bytes", "disk_usage_bytes"):
        if metric in by_metric:
            growth, source = by_metric[metric].growth_per_day, metric
            break
    disk = by_metric.get("disk_usage_bytes")
    days = None
    if disk is not None and disk.reaches_limit_at is not None and disk.last_at is not None:
        days = round(max(0.0, (disk.reaches_limit_at - disk.last_at).total_seconds() / 86400), 1)
    return growth, source, days


def _resources(res: dict[str, Any], settings: ReportSettings, series: tuple[int, list[dict[str, Any]]],
               made: list[Made]) -> Resources:
    cpu, mem, conn, disk = (res.get(k) or {} for k in ("cpu", "memory", "connections", "disk"))
    growth, source, days = _disk_outlook(made)
    width, points = series
    t = settings.thresholds
    return Resources.model_validate({
        "cpu": {"samples": _int(cpu.get("samples")), "avg_percent": _num(cpu.get("avg"), 2),
                "p95_percent": _num(cpu.get("p95"), 2), "max_percent": _num(cpu.get("max"), 2),
                "samples_over_threshold": _int(cpu.get("over")), "threshold_percent": t.cpu_usage_max_percent,
                "trend_percent_per_day": _num(cpu.get("trend_per_day"))},
        "memory": {"samples": _int(mem.get("samples")), "avg_percent": _num(mem.get("avg"), 2),
                   "p95_percent": _num(mem.get("p95"), 2), "max_percent": _num(mem.get("max"), 2),
                   "samples_over_threshold": _int(mem.get("over")), "threshold_percent": t.memory_usage_max_percent,
                   "trend_percent_per_day": _num(mem.get("trend_per_day")),
                   "avg_bytes": int(mem["avg_bytes"]) if mem.get("avg_bytes") is not None else None},
        "disk": {"used_bytes": disk.get("used_bytes"), "total_bytes": disk.get("total_bytes"),
                 "used_percent": _num(disk.get("used_percent"), 2),
                 "database_size_bytes": disk.get("database_size_bytes"),
                 "growth_bytes_per_day": int(growth) if growth is not None else None, "growth_source": source,
                 "days_until_full": days},
        "connections": {
            "samples": _int(conn.get("samples")), "avg": _num(conn.get("avg"), 2), "max": conn.get("max"),
            "max_connections": conn.get("max_connections"),
            "utilization_avg_percent": _num(conn.get("utilization_avg"), 2),
            "utilization_p95_percent": _num(conn.get("utilization_p95"), 2),
            "utilization_max_percent": _num(conn.get("utilization_max"), 2),
            "samples_over_warning": _int(conn.get("over_warning")),
            "by_hour": [{"hour": h["hour"], "samples": h["samples"], "connections_avg": _num(h["connections_avg"], 2),
                         "connections_max": h["connections_max"],
                         "utilization_avg_percent": _num(h["utilization_avg"], 2),
                         "utilization_max_percent": _num(h["utilization_max"], 2)} for h in res.get("by_hour") or []],
        },
        "chart": {"bucket_seconds": width, "points": points},
    })


def _summary(st: dict[str, Any], res: dict[str, Any], span: float, slowest: StatementRef | None,
             fastest: StatementRef | None) -> Summary:
    totals = st.get("totals") or {}
    calls, total_time = _int(totals.get("calls")), float(totals.get("total_time") or 0)
    samples, up = _int(res.get("samples")), _int(res.get("up"))
    commits, rollbacks, deadlocks = _int(res.get("commits")), _int(res.get("rollbacks")), _int(res.get("deadlocks"))
    hit, read = _int(res.get("blks_hit")), _int(res.get("blks_read"))
    s_hit, s_miss = _int(totals.get("hits")), _int(totals.get("misses"))
    return Summary.model_validate({
        "total_queries": calls,
        "total_time_ms": round(total_time, 3),
        "average_query_time_ms": round(total_time / calls, 3) if calls else None,
        "queries_per_second": round(calls / span, 3) if span > 0 else None,
        "distinct_statements": _int(totals.get("statements")),
        "slowest_query": slowest,
        "fastest_query": fastest,
        "max_execution_time_ms": _num(totals.get("max_time")),
        "error_count": rollbacks + deadlocks,
        "errors": {"rollbacks": rollbacks, "deadlocks": deadlocks, "commits": commits,
                   "error_rate_percent": round(100.0 * (rollbacks + deadlocks) / (commits + rollbacks), 3)
                   if commits + rollbacks else None},
        "uptime_percent": round(100.0 * up / samples, 2) if samples else None,
        "samples": samples,
        "cache_hit_ratio_percent": round(100.0 * hit / (hit + read), 2) if hit + read else None,
        "cache": {"blocks_hit": hit, "blocks_read": read,
                  "statements_hit_ratio_percent": round(100.0 * s_hit / (s_hit + s_miss), 2) if s_hit + s_miss else None,
                  "statements_blocks": s_hit + s_miss},
        "temp_bytes": _int(res.get("temp_bytes")),
    })


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _data_quality(res: dict[str, Any], window: Window, inputs: AnomalyInputs, catalog: CatalogReading) -> dict[str, Any]:
    samples, up = _int(res.get("samples")), _int(res.get("up"))
    resets = [_when(t) for t in res.get("resets") or []]
    restarts = sorted(t for t in (_when(t) for t in res.get("server_starts") or []) if t is not None)
    notes = []
    if resets:
        notes.append(f"The window spans a pg_stat_statements reset ({', '.join(iso(r) or '' for r in resets)}): "
                     "statement figures of the interval around it start from zero.")
    if restarts:
        notes.append(f"The window spans a server restart ({', '.join(iso(r) or '' for r in restarts)}): cumulative "
                     "statistics were reset.")
    if samples and up < samples:
        notes.append(f"PostgreSQL was unreachable in {samples - up} of {samples} samples.")
    if not samples:
        notes.append("No samples were stored for this target in the window.")
    facts = catalog.facts
    if facts is None:
        notes.append("Live catalog facts were not available"
                     + (f": {catalog.error}" if catalog.error else "")
                     + "; the index, dead-tuple, sequential-scan and settings recommendations were skipped.")
    else:
        notes.append(f"Index, table and settings recommendations come from database {facts.database!r} as of "
                     f"{iso(facts.read_at)}; their counters are cumulative since "
                     f"{iso(facts.stats_reset) or 'the statistics were last reset'}, not limited to the window.")
    return {
        "samples": samples, "first_sample": _when(res.get("first")), "last_sample": _when(res.get("last")),
        "sampling_interval_seconds": _num(res.get("median_interval")),
        "statistics_resets": resets, "server_restarts": restarts,
        "spans_statistics_reset": bool(resets), "spans_server_restart": bool(restarts),
        "rollup_hours": window.rollup_hours,
        "anomaly_baseline": {"start": inputs.baseline_start, "resolution": inputs.resolution},
        "catalog": {"available": facts is not None, "database": facts.database if facts else None,
                    "read_at": facts.read_at if facts else None, "stats_reset": facts.stats_reset if facts else None,
                    "error": catalog.error},
        "notes": notes,
    }


def _alerts(alerts: dict[str, Any]) -> AlertsInWindow:
    return AlertsInWindow.model_validate({"total": _int(alerts.get("total")), "by_metric": [
        {"metric": a["metric"], "alertname": a["alertname"], "severity": a["severity"], "count": _int(a["count"]),
         "threshold": _num(a["threshold"]), "current_avg": _num(a["current_avg"]),
         "resolved_within_10m": _int(a["resolved_within_10m"]), "acknowledged": _int(a["acknowledged"])}
        for a in alerts.get("by_metric") or []]})


def build_report(queries: ReportQueries, request: ReportRequest, catalog: CatalogReading) -> Report:
    """Build the report *request* names from the store *queries* read (one snapshot)."""
    settings = queries.settings
    window = queries.window(request.target, request.start, request.end)
    # Statement texts are redacted where they are collected; what a store written by an
    # earlier version holds is redacted here, where texts enter a report.
    st = redact_statements_in(queries.statements(window))
    res = queries.resources(window)
    sampled = bool(_int(res.get("samples")))
    if not sampled:
        # Nothing was measured in the window: today's catalog and today's index advice say
        # nothing about it.
        catalog = CatalogReading(None, "the window holds no samples")
    inputs = queries.anomaly_inputs(request.target, request.start, request.end)
    inputs = dataclasses.replace(inputs, statements=redact_statements_in(inputs.statements))
    analysis, slowest, fastest = _queries(st, settings)
    waits, advice = queries.insight(window, _query_ids(analysis)) if sampled else ({}, [])
    analysis = _with_costs(analysis, st, waits, _sampled_seconds(res)).model_copy(
        update={"index_advice": [_advice_entry(a) for a in advice]})
    top = [s.query_id for s in analysis.slowest_by_total if s.query_id.lstrip("-").isdigit()]
    made = make_forecasts(queries, request.target, request.end, top[:settings.forecast.statements])
    report = Report.model_validate({
        "schema_version": SCHEMA_VERSION,
        "report_id": request.report_id,
        "kind": request.kind,
        "target": request.target,
        "period": {"start": request.start, "end": request.end},
        "generated_at": request.generated_at,
        "settings": AppliedSettings.of(settings),
        "data_quality": _data_quality(res, window, inputs, catalog),
        "summary": _summary(st, res, (request.end - request.start).total_seconds(), slowest, fastest),
        "queries": analysis,
        "resources": _resources(res, settings, queries.series(window), made),
        "alerts": _alerts(queries.alerts(window)),
        "recommendations": [],
        "anomalies": [],
        "forecasts": [m.entry() for m in made],
        "forecast_details": [m.detail() for m in made],
    })
    recommendations = [RecommendationEntry.of(r) for r in recommend(report, settings, catalog.facts)]
    found = [AnomalyEntry.of(a) for a in anomaly_detection.detect(inputs, settings, request.target)]
    return report.model_copy(update={"recommendations": recommendations, "anomalies": found})
