"""Assembling a report: the builder's SQL results into the documented JSON form
(docs/report-schema.md, ``report.schema.json``), with recommendations and anomalies.

The JSON form is the report: it is what ``performance_reports.report_data`` holds, what
the API returns, and what every renderer reads, so a stored report renders the same later.

Statement texts are redacted where they are collected; what a store written by an earlier
version holds is redacted here, where texts enter a report: the builder's results and a
stored report's JSON form both pass through ``redact_statements_in``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from ..models import Anomaly, PerformanceReport, Recommendation
from ..redact import redact_statements_in
from . import anomalies as anomaly_detection
from .builder import SCHEMA_VERSION, ReportBuilder, ReportSettings, Window, iso
from .catalog import CatalogFacts
from .recommendations import recommend

__all__ = ["build_report", "report_from_data"]


def _num(value: Any, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _statement(q: dict[str, Any], total_time: float) -> dict[str, Any]:
    hits, misses = _int(q["hits"]), _int(q["misses"])
    return {
        "query_id": q["query_id"], "datname": q["datname"], "username": q["username"], "query_text": q["query_text"],
        "statement_type": q["statement_type"], "table": q["main_table"], "calls": _int(q["calls"]),
        "total_time_ms": _num(q["total_time"]), "mean_time_ms": _num(q["mean"]),
        "peak_interval_mean_ms": _num(q["peak"]), "max_time_ms": _num(q["max_time"]), "rows": _int(q["rows"]),
        "cache_hit_ratio_percent": round(100.0 * hits / (hits + misses), 2) if hits + misses else None,
        "temp_blocks_written": _int(q["temp_blocks"]),
        "share_of_time_percent": round(100.0 * float(q["total_time"]) / total_time, 2) if total_time else None,
        "intervals": _int(q["samples"]), "spans_reset": bool(q["spans_reset"]),
    }


def _ref(s: dict[str, Any] | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {k: s[k] for k in ("query_id", "query_text", "mean_time_ms", "calls", "total_time_ms")}


def _queries(st: dict[str, Any], top_n: int, slow_ms: float) -> tuple[dict[str, Any], dict[str, Any]]:
    totals = st.get("totals") or {}
    total_time = float(totals.get("total_time") or 0)
    top = st.get("top") or []
    stmts: list[tuple[dict[str, Any], dict[str, Any]]] = [(_statement(q, total_time), q) for q in top]

    def ranked(key: str, limit: int = top_n) -> list[dict[str, Any]]:
        chosen = [(q[key], s) for s, q in stmts if q.get(key) is not None and q[key] <= limit]
        return [s for _, s in sorted(chosen, key=lambda item: item[0])]

    def share(value: Any) -> float | None:
        return round(100.0 * float(value) / total_time, 2) if total_time else None

    remainder = st.get("remainder") or {}
    queries: dict[str, Any] = {
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
            "threshold_ms": slow_ms, "count": _int(st.get("slow_count")),
            "statements": [{"query_id": x["query_id"], "mean_time_ms": _num(x["mean"]), "calls": _int(x["calls"]),
                            "total_time_ms": _num(x["total_time"])} for x in st.get("slow") or []],
        },
        "remainder": ({"calls": _int(remainder.get("calls")), "total_time_ms": _num(remainder.get("total_time"))}
                      if remainder.get("calls") is not None else None),
    }
    fastest = ranked("r_fast", 1)
    extremes = {"slowest": _ref(queries["slowest_by_mean"][0]) if queries["slowest_by_mean"] else None,
                "fastest": _ref(fastest[0]) if fastest else None}
    return queries, extremes


def _resources(res: dict[str, Any], s: ReportSettings, series: tuple[int, list[dict[str, Any]]]) -> dict[str, Any]:
    cpu, mem, conn, disk = (res.get(k) or {} for k in ("cpu", "memory", "connections", "disk"))
    # Growth from the database size when a collector stores it, else from the filesystem.
    if _int(disk.get("size_points")) >= 2:
        growth, source = disk.get("size_growth_per_day"), "database_size_bytes"
    elif _int(disk.get("disk_points")) >= 2:
        growth, source = disk.get("disk_growth_per_day"), "disk_usage_bytes"
    else:
        growth, source = None, None
    free = None
    if disk.get("total_bytes") is not None and disk.get("used_bytes") is not None:
        free = int(disk["total_bytes"]) - int(disk["used_bytes"])
    days = round(free / float(growth), 1) if free is not None and growth and float(growth) > 0 else None
    width, points = series
    return {
        "cpu": {"samples": _int(cpu.get("samples")), "avg_percent": _num(cpu.get("avg"), 2),
                "p95_percent": _num(cpu.get("p95"), 2), "max_percent": _num(cpu.get("max"), 2),
                "samples_over_threshold": _int(cpu.get("over")), "threshold_percent": s.cpu_usage_max_percent,
                "trend_percent_per_day": _num(cpu.get("trend_per_day"))},
        "memory": {"samples": _int(mem.get("samples")), "avg_percent": _num(mem.get("avg"), 2),
                   "p95_percent": _num(mem.get("p95"), 2), "max_percent": _num(mem.get("max"), 2),
                   "samples_over_threshold": _int(mem.get("over")), "threshold_percent": s.memory_usage_max_percent,
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
    }


def _when(value: Any) -> str | None:
    if value is None:
        return None
    return iso(value if isinstance(value, datetime) else datetime.fromisoformat(str(value)))


def _anomaly_json(a: Anomaly) -> dict[str, Any]:
    out = a.to_dict()
    out.pop("target")
    out["at"] = iso(a.at)
    return out


def build_report(
    conn: psycopg.Connection[Any],
    schema: str,
    settings: ReportSettings,
    *,
    target: str,
    start: datetime,
    end: datetime,
    kind: str,
    report_id: str,
    now: datetime | None = None,
    catalog: CatalogFacts | None = None,
    catalog_error: str | None = None,
) -> PerformanceReport:
    """Build one report from the store reachable through *conn*."""
    now = now or datetime.now(UTC)
    builder = ReportBuilder(conn, schema, settings)
    window: Window = builder.window(target, start, end)
    st = redact_statements_in(builder.statements(window))
    res = builder.resources(window)
    series = builder.series(window)
    alerts = builder.alerts(window)
    inputs = builder.anomaly_inputs(target, start, end)
    inputs["statements"] = redact_statements_in(inputs["statements"])

    queries, extremes = _queries(st, settings.top_n, settings.slow_query_time_ms)
    totals = st.get("totals") or {}
    calls, total_time = _int(totals.get("calls")), float(totals.get("total_time") or 0)
    samples, up = _int(res.get("samples")), _int(res.get("up"))
    commits, rollbacks, deadlocks = _int(res.get("commits")), _int(res.get("rollbacks")), _int(res.get("deadlocks"))
    hit, read = _int(res.get("blks_hit")), _int(res.get("blks_read"))
    s_hit, s_miss = _int(totals.get("hits")), _int(totals.get("misses"))
    span = (end - start).total_seconds()
    summary = {
        "total_queries": calls,
        "total_time_ms": round(total_time, 3),
        "average_query_time_ms": round(total_time / calls, 3) if calls else None,
        "queries_per_second": round(calls / span, 3) if span > 0 else None,
        "distinct_statements": _int(totals.get("statements")),
        "slowest_query": extremes["slowest"],
        "fastest_query": extremes["fastest"],
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
    }

    resets = [_when(t) for t in res.get("resets") or []]
    restarts = sorted(_when(t) or "" for t in res.get("server_starts") or [])
    notes = []
    if resets:
        notes.append(f"The window spans a pg_stat_statements reset ({', '.join(r or '' for r in resets)}): statement "
                     "figures of the interval around it start from zero.")
    if restarts:
        notes.append(f"The window spans a server restart ({', '.join(restarts)}): cumulative statistics were reset.")
    if samples and up < samples:
        notes.append(f"PostgreSQL was unreachable in {samples - up} of {samples} samples.")
    if not samples:
        notes.append("No samples were stored for this target in the window.")
    if catalog is None:
        notes.append("Live catalog facts were not available"
                     + (f": {catalog_error}" if catalog_error else "")
                     + "; the index, dead-tuple, sequential-scan and settings recommendations were skipped.")
    else:
        notes.append(f"Index, table and settings recommendations come from database {catalog.database!r} as of "
                     f"{iso(catalog.read_at)}; their counters are cumulative since "
                     f"{iso(catalog.stats_reset) or 'the statistics were last reset'}, not limited to the window.")
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "report_id": report_id,
        "kind": kind,
        "target": target,
        "period": {"start": iso(start), "end": iso(end)},
        "generated_at": iso(now),
        "settings": {
            "slow_query_time_ms": settings.slow_query_time_ms, "query_spike_factor": settings.query_spike_factor,
            "cache_hit_ratio_min_percent": settings.cache_hit_ratio_min,
            "cpu_usage_max_percent": settings.cpu_usage_max_percent,
            "memory_usage_max_percent": settings.memory_usage_max_percent,
            "connection_utilization_warning_percent": settings.connection_utilization_warning_percent,
            "error_rate_max_percent": settings.error_rate_max, "dead_tuple_max_percent": settings.dead_tuple_max_percent,
            "top_n": settings.top_n, "anomaly_z": settings.anomaly_z, "baseline_days": settings.baseline_days,
        },
        "data_quality": {
            "samples": samples, "first_sample": _when(res.get("first")), "last_sample": _when(res.get("last")),
            "sampling_interval_seconds": _num(res.get("median_interval")),
            "statistics_resets": resets, "server_restarts": restarts,
            "spans_statistics_reset": bool(resets), "spans_server_restart": bool(restarts),
            "rollup_hours": window.rollup_hours,
            "anomaly_baseline": {"start": iso(inputs["baseline_start"]), "resolution": inputs["resolution"]},
            "catalog": {"available": catalog is not None, "database": catalog.database if catalog else None,
                        "read_at": iso(catalog.read_at) if catalog else None,
                        "stats_reset": iso(catalog.stats_reset) if catalog else None, "error": catalog_error},
            "notes": notes,
        },
        "summary": summary,
        "queries": queries,
        "resources": _resources(res, settings, series),
        "alerts": {"total": _int(alerts.get("total")), "by_metric": [
            {"metric": a["metric"], "alertname": a["alertname"], "severity": a["severity"], "count": _int(a["count"]),
             "threshold": _num(a["threshold"]), "current_avg": _num(a["current_avg"]),
             "resolved_within_10m": _int(a["resolved_within_10m"]), "acknowledged": _int(a["acknowledged"])}
            for a in alerts.get("by_metric") or []]},
    }
    recs = recommend(data, settings, catalog)
    found = anomaly_detection.detect(inputs, settings, target)
    data["recommendations"] = [r.to_dict() for r in recs]
    data["anomalies"] = [_anomaly_json(a) for a in found]
    return PerformanceReport(report_id=report_id, target=target, kind=kind, period_start=start, period_end=end,
                             generated_at=now, data=data, recommendations=tuple(recs), anomalies=tuple(found))


def report_from_data(data: dict[str, Any]) -> PerformanceReport:
    """A PerformanceReport from its stored JSON form."""
    data = redact_statements_in(data)
    def when(value: str | None) -> datetime:
        assert value is not None
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    recs = tuple(Recommendation(**r) for r in data.get("recommendations", []))
    found = tuple(Anomaly(**{**a, "at": when(a["at"]) if a.get("at") else None, "target": data.get("target")})
                  for a in data.get("anomalies", []))
    return PerformanceReport(report_id=data["report_id"], target=data.get("target"), kind=data["kind"],
                             period_start=when(data["period"]["start"]), period_end=when(data["period"]["end"]),
                             generated_at=when(data["generated_at"]), data=data, recommendations=recs, anomalies=found)


HIDDEN = "(query text hidden: set expose_query_text: true to show it)"


def hide_query_texts(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a report's JSON form without statement texts, which can hold literal
    values of the application (served over HTTP unless ``expose_query_text``)."""
    from .recommendations import _short

    texts: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "query_text" and isinstance(value, str) and value:
                    texts.add(value)
                else:
                    collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(data)
    # Longest first, so that a text is replaced before a shorter one that prefixes it.
    fragments = sorted({f for t in texts for f in (t, " ".join(t.split()), _short(t)) if len(f) >= 8},
                       key=len, reverse=True)

    def clean(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            return {k: clean(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [clean(item) for item in node]
        if isinstance(node, str):
            if key == "query_text":
                return HIDDEN if node else node
            for fragment in fragments:
                if fragment in node:
                    node = node.replace(fragment, "[query text hidden]")
            return node
        return node

    cleaned: dict[str, Any] = clean(data)
    return cleaned
