"""Text, Markdown and JSON renderings of a report's JSON form.

The text layout is the requirement's sample report (📊 header, 🐌 slowest queries,
💡 recommendations, ⚠️ anomalies) followed by the other sections. Every renderer reads only
the JSON form, so a stored report renders the same whenever it is rendered.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["FORMATS", "render", "render_json", "render_markdown", "render_text"]

TITLES = {"daily": "Daily", "weekly": "Weekly", "on_demand": "On-demand", "periodic": "Periodic"}
TOP_TEXT = 5
QUERY_CHARS = 100


def ms(value: float | None) -> str:
    """Milliseconds as the sample report writes them: 2,150.00ms; small values keep 3 decimals."""
    if value is None:
        return "n/a"
    return f"{value:,.2f}ms" if value >= 1 else f"{value:,.3f}ms"


def pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}%"


def size(n: float | None) -> str:
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} TB"  # pragma: no cover


def short(text: str | None, limit: int = QUERY_CHARS) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 4].rstrip() + " ..."


def title(data: dict[str, Any]) -> str:
    return f"{TITLES.get(data['kind'], data['kind'].title())} Performance Report - {data['report_id']}"


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def evidence_line(evidence: dict[str, Any]) -> str:
    """The evidence as one line: scalars as key=value, lists by what they name."""
    parts = []
    for key, value in evidence.items():
        if value is None:
            continue
        if isinstance(value, list):
            names = []
            for item in value:
                if isinstance(item, dict):
                    name = next((item[k] for k in ("index", "table", "query_id") if k in item), None)
                    if name is not None:
                        names.append(str(name))
                else:
                    names.append(str(item))
            if names:
                parts.append(f"{key}=[{', '.join(names[:5])}{', ...' if len(names) > 5 else ''}]")
        elif not isinstance(value, dict):
            parts.append(f"{key}={_scalar(value)}")
    return ", ".join(parts)


def _usage_line(label: str, usage: dict[str, Any], missing: str) -> str:
    """``CPU: average …, p95 …, max …, trend …`` of a usage series, or *missing*."""
    if not usage["samples"]:
        return f"{label}: {missing}"
    slope = usage["trend_percent_per_day"]
    trend = f", trend {slope:+.2f} points/day" if slope is not None else ""
    return (f"{label}: average {pct(usage['avg_percent'])}, p95 {pct(usage['p95_percent'])}, "
            f"max {pct(usage['max_percent'])}{trend}")


def _resource_lines(data: dict[str, Any]) -> list[str]:
    r = data["resources"]
    cpu, mem, disk, conn = r["cpu"], r["memory"], r["disk"], r["connections"]
    lines = [_usage_line("CPU", cpu, "not measured (pgperf does not run on the database host)"),
             _usage_line("Memory", mem, "not measured")]
    disk_parts = []
    if disk["used_percent"] is not None:
        disk_parts.append(f"{pct(disk['used_percent'], 1)} used ({size(disk['used_bytes'])} of {size(disk['total_bytes'])})")
    if disk["database_size_bytes"] is not None:
        disk_parts.append(f"database {size(disk['database_size_bytes'])}")
    if disk["growth_bytes_per_day"] is not None:
        source = "database size" if disk["growth_source"] == "database_size_bytes" else "filesystem"
        disk_parts.append(f"growing {size(disk['growth_bytes_per_day'])}/day ({source})")
    if disk["days_until_full"] is not None:
        disk_parts.append(f"full in {disk['days_until_full']:,.1f} days")
    lines.append("Disk: " + (", ".join(disk_parts) if disk_parts else "not measured"))
    if conn["samples"]:
        lines.append(f"Connections: average {conn['avg']:,.1f}, max {conn['max']} of {conn['max_connections']} "
                     f"(utilization average {pct(conn['utilization_avg_percent'])}, "
                     f"max {pct(conn['utilization_max_percent'])})")
        hours = " ".join(f"{h['hour']:02d}h:{h['utilization_max_percent'] or 0:.0f}%" for h in conn["by_hour"])
        lines.append(f"Peak connection utilization by hour (UTC): {hours}")
    return lines


def render_text(data: dict[str, Any]) -> str:
    s = data["summary"]
    q = data["queries"]
    out = [
        f"📊 {title(data)}",
        f"Target: {data['target']}",
        f"Period: {data['period']['start']} to {data['period']['end']}",
        f"Total Queries: {s['total_queries']:,}",
        f"Average Query Time: {ms(s['average_query_time_ms'])}",
        f"Slowest Query: {ms(s['slowest_query']['mean_time_ms']) if s['slowest_query'] else 'n/a'}",
        f"Fastest Query: {ms(s['fastest_query']['mean_time_ms']) if s['fastest_query'] else 'n/a'}",
        f"Error Count: {s['error_count']:,} (rollbacks + deadlocks)",
        f"System Uptime: {pct(s['uptime_percent'], 1)}",
        f"Cache Hit Ratio: {pct(s['cache_hit_ratio_percent'])}",
        "",
        f"🐌 Top {TOP_TEXT} Slowest Queries:",
    ]
    for i, st in enumerate(q["slowest_by_mean"][:TOP_TEXT], 1):
        out += [f"{i}. {ms(st['mean_time_ms'])} - {st['calls']:,} calls", f"   Query: {short(st['query_text'])}"]
    if not q["slowest_by_mean"]:
        out.append("(no statements in the window)")
    out += ["", f"⏱️ Top {TOP_TEXT} Queries by Total Time:"]
    for i, st in enumerate(q["slowest_by_total"][:TOP_TEXT], 1):
        out += [f"{i}. {ms(st['total_time_ms'])} total ({pct(st['share_of_time_percent'], 1)}) - {st['calls']:,} calls, "
                f"{ms(st['mean_time_ms'])} average", f"   Query: {short(st['query_text'])}"]
    out += ["", f"🔁 Top {TOP_TEXT} Most Frequent Queries:"]
    for i, st in enumerate(q["most_frequent"][:TOP_TEXT], 1):
        out += [f"{i}. {st['calls']:,} calls - {ms(st['mean_time_ms'])} average", f"   Query: {short(st['query_text'])}"]
    out += ["", "🧩 By Statement Type:"]
    for t in q["by_statement_type"]:
        out.append(f"- {t['statement_type']}: {t['calls']:,} calls, {ms(t['total_time_ms'])} total "
                   f"({pct(t['share_of_time_percent'], 1)}), {t['statements']} statement(s)")
    out += ["", "📋 By Table:"]
    for t in q["by_table"]:
        out.append(f"- {t['table'] or '(no table)'} [{', '.join(t['statement_types'])}]: {t['calls']:,} calls, "
                   f"{ms(t['total_time_ms'])} total ({pct(t['share_of_time_percent'], 1)})")
    out += ["", "🖥️ Resources:", *_resource_lines(data)]
    alerts = data["alerts"]
    out += ["", f"🔔 Alerts in the Window: {alerts['total']}"]
    for a in alerts["by_metric"]:
        out.append(f"- {a['alertname']} ({a['severity']}): fired {a['count']} time(s), "
                   f"{a['resolved_within_10m']} resolved within 10 minutes")
    out += ["", "💡 Recommendations:"]
    for i, rec in enumerate(data["recommendations"], 1):
        out += [f"{i}. {rec['message']}", f"   Severity: {rec['severity']}; evidence: {evidence_line(rec['evidence'])}"]
    if not data["recommendations"]:
        out.append("(none)")
    out += ["", "⚠️ Anomalies Detected:"]
    for i, a in enumerate(data["anomalies"], 1):
        out += [f"{i}. {a['kind']}: {a['message']}",
                f"   Impact: {a['impact']}, Recommendation: {a['recommendation']}"]
        baseline = ms(a["baseline"]) if a["kind"] == "query_performance" else _scalar(a["baseline"])
        detail = f"   At {a['at']}; baseline median {baseline}, robust z {a['score']:g}"
        if a["query_text"]:
            detail += f"; query {a['subject']}: {short(a['query_text'], 70)}"
        out.append(detail)
    if not data["anomalies"]:
        out.append("(none)")
    notes = data["data_quality"]["notes"]
    if notes:
        out += ["", "ℹ️ Notes:", *(f"- {n}" for n in notes)]
    return "\n".join(out) + "\n"


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_statements(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| # | mean | total | calls | share | statement |", "|---:|---:|---:|---:|---:|---|"]
    for i, st in enumerate(rows, 1):
        out.append(f"| {i} | {ms(st['mean_time_ms'])} | {ms(st['total_time_ms'])} | {st['calls']:,} | "
                   f"{pct(st['share_of_time_percent'], 1)} | `{_md_cell(short(st['query_text']))}` (id {st['query_id']}) |")
    return out if rows else ["(no statements in the window)"]


def render_markdown(data: dict[str, Any]) -> str:
    s = data["summary"]
    q = data["queries"]
    out = [
        f"# 📊 {title(data)}", "",
        f"Target **{data['target']}**, {data['period']['start']} to {data['period']['end']} "
        f"(generated {data['generated_at']}).", "",
        "| summary | value |", "|---|---:|",
        f"| Total queries | {s['total_queries']:,} |",
        f"| Average query time | {ms(s['average_query_time_ms'])} |",
        f"| Slowest query (mean) | {ms(s['slowest_query']['mean_time_ms']) if s['slowest_query'] else 'n/a'} |",
        f"| Fastest query (mean) | {ms(s['fastest_query']['mean_time_ms']) if s['fastest_query'] else 'n/a'} |",
        f"| Error count (rollbacks + deadlocks) | {s['error_count']:,} |",
        f"| System uptime | {pct(s['uptime_percent'], 1)} |",
        f"| Cache hit ratio | {pct(s['cache_hit_ratio_percent'])} |",
        f"| Queries per second | {s['queries_per_second'] if s['queries_per_second'] is not None else 'n/a'} |",
        "",
        "## 🐌 Slowest queries (mean time)", "", *_md_statements(q["slowest_by_mean"]), "",
        "## ⏱️ Queries by total time", "", *_md_statements(q["slowest_by_total"]), "",
        "## 🔁 Most frequent queries", "", *_md_statements(q["most_frequent"]), "",
        "## 🧩 Statement types and tables", "",
        "| type | statements | calls | total | share |", "|---|---:|---:|---:|---:|",
        *(f"| {t['statement_type']} | {t['statements']} | {t['calls']:,} | {ms(t['total_time_ms'])} | "
          f"{pct(t['share_of_time_percent'], 1)} |" for t in q["by_statement_type"]),
        "",
        "| table | types | statements | calls | total | share |", "|---|---|---:|---:|---:|---:|",
        *(f"| {t['table'] or '(no table)'} | {', '.join(t['statement_types'])} | {t['statements']} | {t['calls']:,} | "
          f"{ms(t['total_time_ms'])} | {pct(t['share_of_time_percent'], 1)} |" for t in q["by_table"]),
        "",
        "## 🖥️ Resources", "", *(f"- {line}" for line in _resource_lines(data)), "",
        f"## 🔔 Alerts ({data['alerts']['total']})", "",
    ]
    out += [f"- {a['alertname']} ({a['severity']}): fired {a['count']} time(s), {a['resolved_within_10m']} resolved "
            "within 10 minutes" for a in data["alerts"]["by_metric"]] or ["(none)"]
    out += ["", "## 💡 Recommendations", ""]
    for i, rec in enumerate(data["recommendations"], 1):
        out += [f"{i}. **{rec['severity']}** — {rec['message']}  ",
                f"   Evidence: `{_md_cell(evidence_line(rec['evidence']))}`"]
    if not data["recommendations"]:
        out.append("(none)")
    out += ["", "## ⚠️ Anomalies", ""]
    for i, a in enumerate(data["anomalies"], 1):
        line = f"{i}. **{a['kind']}** ({a['impact']} impact): {a['message']} at {a['at']}"
        if a["query_text"]:
            line += f" — `{_md_cell(short(a['query_text'], 70))}`"
        out += [line + "  ", f"   {a['recommendation']}"]
    if not data["anomalies"]:
        out.append("(none)")
    notes = data["data_quality"]["notes"]
    if notes:
        out += ["", "## ℹ️ Notes", "", *(f"- {n}" for n in notes)]
    return "\n".join(out) + "\n"


def render_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _html(data: dict[str, Any]) -> str:
    from .html import render_html

    return render_html(data)


FORMATS: dict[str, Callable[[dict[str, Any]], str]] = {
    "text": render_text, "md": render_markdown, "json": render_json, "html": _html,
}


def render(data: dict[str, Any], fmt: str) -> str:
    renderer = FORMATS.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return renderer(data)
