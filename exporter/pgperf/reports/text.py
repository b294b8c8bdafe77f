"""Text, Markdown and JSON renderings of a report.

The text layout is the requirement's sample report (📊 header, 🐌 slowest queries,
💡 recommendations, ⚠️ anomalies) followed by the other sections. Every renderer reads only
the report, so a stored report renders the same whenever it is rendered.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from .formatting import evidence_line, ms, pct, scalar, short, size, time_split, title
from .model import AdviceEntry, Cpu, ForecastDetail, ForecastEntry, Memory, Report, Statement, iso

__all__ = ["TOP_TEXT", "advice_line", "forecast_lines", "forecast_pairs", "render_json", "render_markdown",
           "render_text", "resource_lines"]

TOP_TEXT = 5


def _usage_line(label: str, usage: Cpu | Memory, missing: str) -> str:
    """``CPU: average …, p95 …, max …, trend …`` of a usage series, or *missing*."""
    if not usage.samples:
        return f"{label}: {missing}"
    slope = usage.trend_percent_per_day
    trend = f", trend {slope:+.2f} points/day" if slope is not None else ""
    return (f"{label}: average {pct(usage.avg_percent)}, p95 {pct(usage.p95_percent)}, "
            f"max {pct(usage.max_percent)}{trend}")


def resource_lines(report: Report) -> list[str]:
    if not report.summary.samples:
        return [f"No samples in the window: nothing was measured for {report.target} from {_period(report)}."]
    r = report.resources
    cpu, mem, disk, conn = r.cpu, r.memory, r.disk, r.connections
    lines = [_usage_line("CPU", cpu, "not measured (pgperf does not run on the database host)"),
             _usage_line("Memory", mem, "not measured")]
    disk_parts = []
    if disk.used_percent is not None:
        disk_parts.append(f"{pct(disk.used_percent, 1)} used ({size(disk.used_bytes)} of {size(disk.total_bytes)})")
    if disk.database_size_bytes is not None:
        disk_parts.append(f"database {size(disk.database_size_bytes)}")
    if disk.growth_bytes_per_day is not None:
        source = "database size" if disk.growth_source == "database_size_bytes" else "filesystem"
        disk_parts.append(f"growing {size(disk.growth_bytes_per_day)}/day ({source})")
    if disk.days_until_full is not None:
        disk_parts.append(f"full in {disk.days_until_full:,.1f} days")
    lines.append("Disk: " + (", ".join(disk_parts) if disk_parts else "not measured"))
    if conn.samples:
        lines.append(f"Connections: average {conn.avg or 0:,.1f}, max {conn.max} of {conn.max_connections} "
                     f"(utilization average {pct(conn.utilization_avg_percent)}, "
                     f"max {pct(conn.utilization_max_percent)})")
        hours = " ".join(f"{h.hour:02d}h:{h.utilization_max_percent or 0:.0f}%" for h in conn.by_hour)
        lines.append(f"Peak connection utilization by hour (UTC): {hours}")
    return lines


def forecast_lines(report: Report) -> list[str]:
    """Each forecast in a sentence, with its dates: "Disk usage: disk full in 46 days, between 41
    and 52 (2024-02-15; 95 % interval 2024-02-10 to 2024-02-21)"."""
    out = []
    for entry, detail in forecast_pairs(report):
        sentence = detail.sentence if detail is not None else (entry.reason or entry.method or "")
        dates = ""
        if entry.reaches_limit_at is not None:
            low, high = entry.interval.low, entry.interval.high
            dates = (f" ({_day(entry.reaches_limit_at)}; 95 % interval {_day(low) if low else 'now'} to "
                     f"{_day(high) if high else 'beyond the horizon'})")
        out.append(f"{sentence[:1].upper()}{sentence[1:]}{dates}")
    return out


def forecast_pairs(report: Report) -> list[tuple[ForecastEntry, ForecastDetail | None]]:
    """Each forecast with its detail (none in a report whose details do not match its forecasts)."""
    details = report.forecast_details
    if len(details) != len(report.forecasts) or any(
            d.metric != e.metric or d.subject != e.subject for e, d in zip(report.forecasts, details, strict=True)):
        return [(e, None) for e in report.forecasts]
    return list(zip(report.forecasts, details, strict=True))


def _day(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d")


def advice_line(a: AdviceEntry) -> str:
    """One index advice: its statement, what the planner says, and where it stands."""
    cost = f"cost {a.cost_before:,.2f} -> {a.cost_after:,.2f}" if a.cost_after is not None else \
        f"cost {a.cost_before:,.2f}"
    how = "verified by HypoPG" if a.verified == "hypopg" else "not verified"
    state = (f"applied since {iso(a.applied_at)}, mean {ms(a.observed_mean_ms_before)} before, "
             f"{ms(a.observed_mean_ms_after)} after" if a.status == "applied" else "open")
    rates = f"saves {_rate(a.saving_per_second)}, upkeep {_rate(a.maintenance_per_second)} planner cost units/s"
    weighed = {"pays": f"; pays for its upkeep ({rates})",
               "write_heavy": f"; would cost more to maintain than it saves at the current rates ({rates})"}
    return f"{a.sql} - statements {', '.join(a.query_ids)}; {cost} ({how}); {state}{weighed.get(a.write_verdict, '')}"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}" if abs(value) >= 1 else f"{value:.2g}"


def _period(report: Report) -> str:
    return f"{iso(report.period.start)} to {iso(report.period.end)}"


def render_text(report: Report) -> str:
    s = report.summary
    q = report.queries
    out = [
        f"📊 {title(report.kind, report.report_id)}",
        f"Target: {report.target}",
        f"Period: {_period(report)}",
        f"Total Queries: {s.total_queries:,}",
        f"Average Query Time: {ms(s.average_query_time_ms)}",
        f"Slowest Query: {ms(s.slowest_query.mean_time_ms) if s.slowest_query else 'n/a'}",
        f"Fastest Query: {ms(s.fastest_query.mean_time_ms) if s.fastest_query else 'n/a'}",
        f"Error Count: {s.error_count:,} (rollbacks + deadlocks)",
        f"System Uptime: {pct(s.uptime_percent, 1)}",
        f"Cache Hit Ratio: {pct(s.cache_hit_ratio_percent)}",
        "",
        f"🐌 Top {TOP_TEXT} Slowest Queries:",
    ]
    for i, st in enumerate(q.slowest_by_mean[:TOP_TEXT], 1):
        out += [f"{i}. {ms(st.mean_time_ms)} - {st.calls:,} calls", f"   Query: {short(st.query_text)}"]
    if not q.slowest_by_mean:
        out.append("(no statements in the window)")
    out += ["", f"⏱️ Top {TOP_TEXT} Queries by Total Time:"]
    for i, st in enumerate(q.slowest_by_total[:TOP_TEXT], 1):
        out += [f"{i}. {ms(st.total_time_ms)} total ({pct(st.share_of_time_percent, 1)}) - {st.calls:,} calls, "
                f"{ms(st.mean_time_ms)} average", f"   Query: {short(st.query_text)}"]
        if split := time_split(st.time_split_percent, st.cpu_basis, st.cpu_seconds_per_day):
            out.append(f"   Time: {split}")
    out += ["", f"🔁 Top {TOP_TEXT} Most Frequent Queries:"]
    for i, st in enumerate(q.most_frequent[:TOP_TEXT], 1):
        out += [f"{i}. {st.calls:,} calls - {ms(st.mean_time_ms)} average", f"   Query: {short(st.query_text)}"]
    out += ["", "🧩 By Statement Type:"]
    for t in q.by_statement_type:
        out.append(f"- {t.statement_type}: {t.calls:,} calls, {ms(t.total_time_ms)} total "
                   f"({pct(t.share_of_time_percent, 1)}), {t.statements} statement(s)")
    out += ["", "📋 By Table:"]
    for b in q.by_table:
        out.append(f"- {b.table or '(no table)'} [{', '.join(b.statement_types)}]: {b.calls:,} calls, "
                   f"{ms(b.total_time_ms)} total ({pct(b.share_of_time_percent, 1)})")
    if q.index_advice:
        out += ["", "🛠️ Index Advice (query insight):", *(f"{i}. {line}" for i, line in enumerate(
            (advice_line(a) for a in q.index_advice), 1))]
    out += ["", "🖥️ Resources:", *resource_lines(report)]
    if report.forecasts:
        out += ["", "🔮 Forecasts (as of the window's end):", *(f"- {line}" for line in forecast_lines(report))]
    alerts = report.alerts
    out += ["", f"🔔 Alerts in the Window: {alerts.total}"]
    for a in alerts.by_metric:
        out.append(f"- {a.alertname} ({a.severity}): fired {a.count} time(s), "
                   f"{a.resolved_within_10m} resolved within 10 minutes")
    out += ["", "💡 Recommendations:"]
    for i, rec in enumerate(report.recommendations, 1):
        out += [f"{i}. {rec.message}", f"   Severity: {rec.severity}; evidence: {evidence_line(rec.evidence)}"]
    if not report.recommendations:
        out.append("(none)")
    out += ["", "⚠️ Anomalies Detected:"]
    for i, an in enumerate(report.anomalies, 1):
        out += [f"{i}. {an.kind}: {an.message}",
                f"   Impact: {an.impact}, Recommendation: {an.recommendation}"]
        baseline = ms(an.baseline) if an.kind == "query_performance" else scalar(an.baseline)
        against = f" ({an.flagged_by})" if an.flagged_by else ""
        detail = f"   At {iso(an.at)}; baseline median {baseline}{against}, robust z {an.score:g}"
        if an.query_text:
            detail += f"; query {an.subject}: {short(an.query_text, 70)}"
        out.append(detail)
    if not report.anomalies:
        out.append("(none)")
    notes = report.data_quality.notes
    if notes:
        out += ["", "ℹ️ Notes:", *(f"- {n}" for n in notes)]
    return "\n".join(out) + "\n"


def _md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_statements(rows: list[Statement]) -> list[str]:
    out = ["| # | mean | total | calls | share | statement |", "|---:|---:|---:|---:|---:|---|"]
    for i, st in enumerate(rows, 1):
        out.append(f"| {i} | {ms(st.mean_time_ms)} | {ms(st.total_time_ms)} | {st.calls:,} | "
                   f"{pct(st.share_of_time_percent, 1)} | `{_md_cell(short(st.query_text))}` (id {st.query_id}) |")
    return out if rows else ["(no statements in the window)"]


def _md_time_split(rows: list[Statement]) -> list[str]:
    """Where the time of each statement goes (CPU and each wait class), if known."""
    lines = [f"- id {st.query_id}: {split}" for st in rows
             if (split := time_split(st.time_split_percent, st.cpu_basis, st.cpu_seconds_per_day))]
    return ["Where their time goes:", "", *lines, ""] if lines else []


def render_markdown(report: Report) -> str:
    s = report.summary
    q = report.queries
    out = [
        f"# 📊 {title(report.kind, report.report_id)}", "",
        f"Target **{report.target}**, {_period(report)} (generated {iso(report.generated_at)}).", "",
        "| summary | value |", "|---|---:|",
        f"| Total queries | {s.total_queries:,} |",
        f"| Average query time | {ms(s.average_query_time_ms)} |",
        f"| Slowest query (mean) | {ms(s.slowest_query.mean_time_ms) if s.slowest_query else 'n/a'} |",
        f"| Fastest query (mean) | {ms(s.fastest_query.mean_time_ms) if s.fastest_query else 'n/a'} |",
        f"| Error count (rollbacks + deadlocks) | {s.error_count:,} |",
        f"| System uptime | {pct(s.uptime_percent, 1)} |",
        f"| Cache hit ratio | {pct(s.cache_hit_ratio_percent)} |",
        f"| Queries per second | {s.queries_per_second if s.queries_per_second is not None else 'n/a'} |",
        "",
        "## 🐌 Slowest queries (mean time)", "", *_md_statements(q.slowest_by_mean), "",
        "## ⏱️ Queries by total time", "", *_md_statements(q.slowest_by_total), "",
        *_md_time_split(q.slowest_by_total),
        "## 🔁 Most frequent queries", "", *_md_statements(q.most_frequent), "",
        "## 🧩 Statement types and tables", "",
        "| type | statements | calls | total | share |", "|---|---:|---:|---:|---:|",
        *(f"| {t.statement_type} | {t.statements} | {t.calls:,} | {ms(t.total_time_ms)} | "
          f"{pct(t.share_of_time_percent, 1)} |" for t in q.by_statement_type),
        "",
        "| table | types | statements | calls | total | share |", "|---|---|---:|---:|---:|---:|",
        *(f"| {b.table or '(no table)'} | {', '.join(b.statement_types)} | {b.statements} | {b.calls:,} | "
          f"{ms(b.total_time_ms)} | {pct(b.share_of_time_percent, 1)} |" for b in q.by_table),
        "",
        *(["## 🛠️ Index advice (query insight)", "", *(f"{i}. `{_md_cell(advice_line(a))}`"
                                                      for i, a in enumerate(q.index_advice, 1)), ""]
          if q.index_advice else []),
        "## 🖥️ Resources", "", *(f"- {line}" for line in resource_lines(report)), "",
        *(["## 🔮 Forecasts (as of the window's end)", "",
           *(f"- {_md_cell(line)}" for line in forecast_lines(report)), ""] if report.forecasts else []),
        f"## 🔔 Alerts ({report.alerts.total})", "",
    ]
    out += [f"- {a.alertname} ({a.severity}): fired {a.count} time(s), {a.resolved_within_10m} resolved "
            "within 10 minutes" for a in report.alerts.by_metric] or ["(none)"]
    out += ["", "## 💡 Recommendations", ""]
    for i, rec in enumerate(report.recommendations, 1):
        out += [f"{i}. **{rec.severity}** — {rec.message}  ",
                f"   Evidence: `{_md_cell(evidence_line(rec.evidence))}`"]
    if not report.recommendations:
        out.append("(none)")
    out += ["", "## ⚠️ Anomalies", ""]
    for i, an in enumerate(report.anomalies, 1):
        line = f"{i}. **{an.kind}** ({an.impact} impact): {an.message} at {iso(an.at)}"
        if an.flagged_by:
            line += f" (baseline: {an.flagged_by})"
        if an.query_text:
            line += f" — `{_md_cell(short(an.query_text, 70))}`"
        out += [line + "  ", f"   {an.recommendation}"]
    if not report.anomalies:
        out.append("(none)")
    notes = report.data_quality.notes
    if notes:
        out += ["", "## ℹ️ Notes", "", *(f"- {n}" for n in notes)]
    return "\n".join(out) + "\n"


def render_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
