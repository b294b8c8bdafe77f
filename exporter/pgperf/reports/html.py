"""The HTML report: one self-contained page with charts, tables and links.

Charts are drawn by plotly. Why plotly rather than matplotlib: a DBA reading a report wants
to hover a point for its exact value and time and to zoom into an hour of a month-long
window, which static SVG cannot do; plotly's Python package is pure Python (no NumPy or
compiled backend to install on the exporter's host) and ships its JavaScript, which is
inlined once per page, so the page needs no network access when it is viewed. The cost is
about 4.8 MB of script per page; reports are rendered on request, never stored as HTML.
"""

from __future__ import annotations

import html
import json
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from .render import evidence_line, ms, pct, short, size, title

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif,"Apple Color Emoji","Segoe UI Emoji","Noto Color Emoji";margin:0;color:#1f2933;background:#f5f7fa}
header{background:#1f2933;color:#fff;padding:16px 32px}header a{color:#9fd3ff}
main{padding:16px 32px;max-width:1280px}section{background:#fff;border-radius:6px;padding:12px 20px;margin:16px 0;
box-shadow:0 1px 2px rgba(0,0,0,.08)}h1{font-size:22px;margin:0}h2{font-size:18px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #e4e7eb;padding:4px 8px;
text-align:left;vertical-align:top}td.n,th.n{text-align:right;white-space:nowrap}code{font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;border-radius:6px;padding:10px 16px;min-width:150px;
box-shadow:0 1px 2px rgba(0,0,0,.08)}.card b{display:block;font-size:20px}.sev-high{color:#b42318;font-weight:600}
.sev-medium{color:#b54708;font-weight:600}.sev-low{color:#475467}nav a{margin-right:12px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:12px}
details pre{white-space:pre-wrap;font-size:12px;background:#f5f7fa;padding:8px}
"""

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _figure(fig: go.Figure, div_id: str) -> str:
    fig.update_layout(margin={"l": 50, "r": 20, "t": 40, "b": 40}, height=320, template="plotly_white",
                      legend={"orientation": "h", "y": -0.2})
    return str(pio.to_html(fig, full_html=False, include_plotlyjs=False, include_mathjax=False, div_id=div_id,
                           config=_PLOT_CONFIG, validate=False))


def _charts(data: dict[str, Any]) -> list[str]:
    points = data["resources"]["chart"]["points"]
    t = [p["t"] for p in points]
    charts = []

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=[p["queries_per_second"] for p in points], name="queries/s", mode="lines"))
    fig.add_trace(go.Scatter(x=t, y=[p["mean_time_ms"] for p in points], name="mean time (ms)", mode="lines",
                             yaxis="y2"))
    fig.update_layout(title="Throughput and mean query time", yaxis={"title": "queries/s", "rangemode": "tozero"},
                      yaxis2={"title": "ms", "overlaying": "y", "side": "right", "rangemode": "tozero"})
    # Statistics resets and restarts explain a dip or jump in the cumulative-counter based figures.
    quality = data["data_quality"]
    for at in quality["statistics_resets"] + quality["server_restarts"]:
        fig.add_vline(x=at, line_dash="dot", line_color="#b54708")
    charts.append(_figure(fig, "chart-throughput"))

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=[p["cpu_percent"] for p in points], name="CPU %", mode="lines"))
    fig.add_trace(go.Scatter(x=t, y=[p["memory_percent"] for p in points], name="memory %", mode="lines"))
    fig.update_layout(title="CPU and memory", yaxis={"title": "%", "rangemode": "tozero"})
    charts.append(_figure(fig, "chart-cpu-memory"))

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=[p["connections"] for p in points], name="connections (avg)", mode="lines"))
    fig.add_trace(go.Scatter(x=t, y=[p["connections_max"] for p in points], name="connections (max)", mode="lines"))
    fig.add_trace(go.Scatter(x=t, y=[p["connection_utilization_percent"] for p in points], name="utilization %",
                             mode="lines", yaxis="y2"))
    fig.update_layout(title="Connections", yaxis={"title": "connections", "rangemode": "tozero"},
                      yaxis2={"title": "% of max_connections", "overlaying": "y", "side": "right", "range": [0, 100]})
    charts.append(_figure(fig, "chart-connections"))

    by_hour = data["resources"]["connections"]["by_hour"]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=[f"{h['hour']:02d}:00" for h in by_hour], y=[h["utilization_avg_percent"] for h in by_hour],
                         name="average"))
    fig.add_trace(go.Bar(x=[f"{h['hour']:02d}:00" for h in by_hour], y=[h["utilization_max_percent"] for h in by_hour],
                         name="peak"))
    fig.update_layout(title="Connection utilization by hour of day (UTC)", yaxis={"title": "%"}, barmode="group")
    charts.append(_figure(fig, "chart-by-hour"))

    size_key = "database_size_bytes" if data["resources"]["disk"]["growth_source"] == "database_size_bytes" \
        else "disk_used_bytes"
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=[p[size_key] for p in points], name=size_key.replace("_", " "), mode="lines"))
    fig.update_layout(title="Disk growth", yaxis={"title": "bytes", "tickformat": ".3~s"})
    charts.append(_figure(fig, "chart-disk"))

    top = list(reversed(data["queries"]["slowest_by_total"][:10]))
    fig = go.Figure()
    fig.add_trace(go.Bar(x=[s["total_time_ms"] for s in top], y=[f"{s['query_id']}" for s in top], orientation="h",
                         text=[short(s["query_text"], 60) for s in top], hovertemplate="%{text}<br>%{x:,.1f} ms",
                         name="total time"))
    fig.update_layout(title="Statements by total time (ms)", yaxis={"type": "category"})
    charts.append(_figure(fig, "chart-top-statements"))

    types = data["queries"]["by_statement_type"]
    fig = go.Figure()
    fig.add_trace(go.Pie(labels=[x["statement_type"] for x in types], values=[x["total_time_ms"] for x in types],
                         hole=0.4, sort=False))
    fig.update_layout(title="Execution time by statement type")
    charts.append(_figure(fig, "chart-types"))
    return charts


def _statement_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No statements in the window.</p>"
    body = "".join(
        f"<tr><td class=n>{i}</td><td class=n>{_e(ms(s['mean_time_ms']))}</td><td class=n>{_e(ms(s['total_time_ms']))}</td>"
        f"<td class=n>{s['calls']:,}</td><td class=n>{_e(pct(s['share_of_time_percent'], 1))}</td>"
        f"<td class=n>{_e(pct(s['cache_hit_ratio_percent'], 1))}</td><td>{_e(s['statement_type'])}</td>"
        f"<td>{_e(s['table'] or '')}</td><td><code title=\"{_e(s['query_text'])}\">{_e(short(s['query_text'], 160))}"
        f"</code><br><small>id {_e(s['query_id'])} · {_e(s['datname'])} · {_e(s['username'])}</small></td></tr>"
        for i, s in enumerate(rows, 1))
    return ("<table><tr><th class=n>#</th><th class=n>mean</th><th class=n>total</th><th class=n>calls</th>"
            "<th class=n>share</th><th class=n>cache hit</th><th>type</th><th>table</th><th>statement</th></tr>"
            f"{body}</table>")


def render_html(data: dict[str, Any], *, list_url: str = "/reports/", api_url: str | None = None) -> str:
    s = data["summary"]
    q = data["queries"]
    api_url = api_url or f"/api/v1/reports/{data['report_id']}"
    cards = [
        ("Total queries", f"{s['total_queries']:,}"), ("Average query time", ms(s["average_query_time_ms"])),
        ("Slowest query (mean)", ms(s["slowest_query"]["mean_time_ms"]) if s["slowest_query"] else "n/a"),
        ("Error count", f"{s['error_count']:,}"), ("System uptime", pct(s["uptime_percent"], 1)),
        ("Cache hit ratio", pct(s["cache_hit_ratio_percent"])),
        ("Recommendations", str(len(data["recommendations"]))), ("Anomalies", str(len(data["anomalies"]))),
    ]
    recs = "".join(
        f"<tr><td class='sev-{_e(r['severity'])}'>{_e(r['severity'])}</td><td>{_e(r['message'])}"
        f"<details><summary>evidence: {_e(evidence_line(r['evidence']))}</summary>"
        f"<pre>{_e(json.dumps(r['evidence'], indent=1, ensure_ascii=False))}</pre></details></td></tr>"
        for r in data["recommendations"]) or "<tr><td colspan=2>None.</td></tr>"
    anomalies = "".join(
        f"<tr><td class='sev-{_e(a['impact'])}'>{_e(a['impact'])}</td><td>{_e(a['kind'])}</td><td>{_e(a['message'])}"
        f"<br><small>at {_e(a['at'])} · baseline median {_e(a['baseline'])} · robust z {_e(a['score'])}</small>"
        + (f"<br><code>{_e(short(a['query_text'], 160))}</code>" if a["query_text"] else "")
        + f"</td><td>{_e(a['recommendation'])}</td></tr>"
        for a in data["anomalies"]) or "<tr><td colspan=4>None.</td></tr>"
    types = "".join(
        f"<tr><td>{_e(t['statement_type'])}</td><td class=n>{t['statements']}</td><td class=n>{t['calls']:,}</td>"
        f"<td class=n>{_e(ms(t['total_time_ms']))}</td><td class=n>{_e(pct(t['share_of_time_percent'], 1))}</td></tr>"
        for t in q["by_statement_type"])
    tables = "".join(
        f"<tr><td>{_e(t['table'] or '(no table)')}</td><td>{_e(', '.join(t['statement_types']))}</td>"
        f"<td class=n>{t['statements']}</td><td class=n>{t['calls']:,}</td><td class=n>{_e(ms(t['total_time_ms']))}</td>"
        f"<td class=n>{_e(pct(t['share_of_time_percent'], 1))}</td></tr>" for t in q["by_table"])
    alerts = "".join(
        f"<tr><td>{_e(a['alertname'])}</td><td>{_e(a['severity'])}</td><td class=n>{a['count']}</td>"
        f"<td class=n>{a['resolved_within_10m']}</td><td class=n>{a['acknowledged']}</td></tr>"
        for a in data["alerts"]["by_metric"]) or "<tr><td colspan=5>None.</td></tr>"
    r = data["resources"]
    disk = r["disk"]
    resources = (
        f"<tr><td>CPU</td><td class=n>{_e(pct(r['cpu']['avg_percent']))}</td><td class=n>{_e(pct(r['cpu']['p95_percent']))}</td>"
        f"<td class=n>{_e(pct(r['cpu']['max_percent']))}</td></tr>"
        f"<tr><td>Memory</td><td class=n>{_e(pct(r['memory']['avg_percent']))}</td>"
        f"<td class=n>{_e(pct(r['memory']['p95_percent']))}</td><td class=n>{_e(pct(r['memory']['max_percent']))}</td></tr>"
        f"<tr><td>Connection utilization</td><td class=n>{_e(pct(r['connections']['utilization_avg_percent']))}</td>"
        f"<td class=n>{_e(pct(r['connections']['utilization_p95_percent']))}</td>"
        f"<td class=n>{_e(pct(r['connections']['utilization_max_percent']))}</td></tr>"
    )
    disk_line = (f"Disk {_e(pct(disk['used_percent'], 1))} used ({_e(size(disk['used_bytes']))} of "
                 f"{_e(size(disk['total_bytes']))}); growth {_e(size(disk['growth_bytes_per_day']))}/day; "
                 f"projected full in {_e(disk['days_until_full'] if disk['days_until_full'] is not None else 'n/a')} days.")
    notes = "".join(f"<li>{_e(n)}</li>" for n in data["data_quality"]["notes"])
    charts = "".join(f"<div>{c}</div>" for c in _charts(data))
    heading = title(data)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{_e(heading)}</title><style>{_CSS}</style>
<script>{get_plotlyjs()}</script></head>
<body><header><h1>📊 {_e(heading)}</h1>
<p>Target <b>{_e(data['target'])}</b> · {_e(data['period']['start'])} to {_e(data['period']['end'])} ·
generated {_e(data['generated_at'])} · <a href="{_e(list_url)}">all reports</a> · <a href="{_e(api_url)}">JSON</a></p>
<nav><a href="#summary">Summary</a><a href="#charts">Charts</a><a href="#queries">Queries</a>
<a href="#resources">Resources</a><a href="#recommendations">Recommendations</a><a href="#anomalies">Anomalies</a>
<a href="#alerts">Alerts</a><a href="#notes">Notes</a></nav></header>
<main>
<section id="summary"><h2>Summary</h2><div class="cards">
{''.join(f'<div class="card">{_e(label)}<b>{_e(value)}</b></div>' for label, value in cards)}</div></section>
<section id="charts"><h2>Charts</h2><div class="charts">{charts}</div></section>
<section id="recommendations"><h2>💡 Recommendations</h2><table><tr><th>severity</th><th>recommendation</th></tr>
{recs}</table></section>
<section id="anomalies"><h2>⚠️ Anomalies</h2><table><tr><th>impact</th><th>kind</th><th>anomaly</th>
<th>recommendation</th></tr>{anomalies}</table></section>
<section id="queries"><h2>🐌 Slowest queries (mean time)</h2>{_statement_table(q['slowest_by_mean'])}
<h2>⏱️ Queries by total time</h2>{_statement_table(q['slowest_by_total'])}
<h2>🔁 Most frequent queries</h2>{_statement_table(q['most_frequent'])}
<h2>🧩 Statement types</h2><table><tr><th>type</th><th class=n>statements</th><th class=n>calls</th><th class=n>total</th>
<th class=n>share</th></tr>{types}</table>
<h2>📋 Tables</h2><table><tr><th>table</th><th>types</th><th class=n>statements</th><th class=n>calls</th>
<th class=n>total</th><th class=n>share</th></tr>{tables}</table></section>
<section id="resources"><h2>🖥️ Resources</h2><table><tr><th></th><th class=n>average</th><th class=n>p95</th>
<th class=n>max</th></tr>{resources}</table><p>{disk_line}</p></section>
<section id="alerts"><h2>🔔 Alerts ({data['alerts']['total']})</h2><table><tr><th>alert</th><th>severity</th>
<th class=n>fired</th><th class=n>resolved within 10 min</th><th class=n>acknowledged</th></tr>{alerts}</table></section>
<section id="notes"><h2>ℹ️ Notes</h2><ul>{notes}</ul></section>
</main></body></html>
"""
