"""The HTML report: one self-contained page with charts, tables and links, drawn by the
``report.html`` template (``pgperf/http/templates``, autoescaped: a statement text or a
target name holding markup shows as text).

Charts are drawn by plotly. Why plotly rather than matplotlib: a DBA reading a report wants
to hover a point for its exact value and time and to zoom into an hour of a month-long
window, which static SVG cannot do; plotly's Python package is pure Python (no NumPy or
compiled backend to install on the exporter's host) and ships its JavaScript, which is
inlined once per page, so the page needs no network access when it is viewed. The cost is
about 4.8 MB of script per page; reports are rendered on request, never stored as HTML.
"""

from __future__ import annotations

import json

import plotly.graph_objects as go
import plotly.io as pio
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from ..http import templating
from .formatting import evidence_line, ms, pct, short, size, time_split, title
from .model import Report, iso

__all__ = ["render_html"]

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def _figure(fig: go.Figure, div_id: str) -> str:
    fig.update_layout(margin={"l": 50, "r": 20, "t": 40, "b": 40}, height=320, template="plotly_white",
                      legend={"orientation": "h", "y": -0.2})
    return str(pio.to_html(fig, full_html=False, include_plotlyjs=False, include_mathjax=False, div_id=div_id,
                           config=_PLOT_CONFIG, validate=False))


def _charts(report: Report) -> list[str]:
    points = report.resources.chart.points
    t = [iso(p.t) for p in points]
    charts = []

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=[p.queries_per_second for p in points], name="queries/s", mode="lines"))
    fig.add_trace(go.Scatter(x=t, y=[p.mean_time_ms for p in points], name="mean time (ms)", mode="lines",
                             yaxis="y2"))
    fig.update_layout(title="Throughput and mean query time", yaxis={"title": "queries/s", "rangemode": "tozero"},
                      yaxis2={"title": "ms", "overlaying": "y", "side": "right", "rangemode": "tozero"})
    # Statistics resets and restarts explain a dip or jump in the cumulative-counter based figures.
    quality = report.data_quality
    for at in quality.statistics_resets + quality.server_restarts:
        fig.add_vline(x=iso(at), line_dash="dot", line_color="#b54708")
    charts.append(_figure(fig, "chart-throughput"))

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=[p.cpu_percent for p in points], name="CPU %", mode="lines"))
    fig.add_trace(go.Scatter(x=t, y=[p.memory_percent for p in points], name="memory %", mode="lines"))
    fig.update_layout(title="CPU and memory", yaxis={"title": "%", "rangemode": "tozero"})
    charts.append(_figure(fig, "chart-cpu-memory"))

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=[p.connections for p in points], name="connections (avg)", mode="lines"))
    fig.add_trace(go.Scatter(x=t, y=[p.connections_max for p in points], name="connections (max)", mode="lines"))
    fig.add_trace(go.Scatter(x=t, y=[p.connection_utilization_percent for p in points], name="utilization %",
                             mode="lines", yaxis="y2"))
    fig.update_layout(title="Connections", yaxis={"title": "connections", "rangemode": "tozero"},
                      yaxis2={"title": "% of max_connections", "overlaying": "y", "side": "right", "range": [0, 100]})
    charts.append(_figure(fig, "chart-connections"))

    by_hour = report.resources.connections.by_hour
    fig = go.Figure()
    fig.add_trace(go.Bar(x=[f"{h.hour:02d}:00" for h in by_hour], y=[h.utilization_avg_percent for h in by_hour],
                         name="average"))
    fig.add_trace(go.Bar(x=[f"{h.hour:02d}:00" for h in by_hour], y=[h.utilization_max_percent for h in by_hour],
                         name="peak"))
    fig.update_layout(title="Connection utilization by hour of day (UTC)", yaxis={"title": "%"}, barmode="group")
    charts.append(_figure(fig, "chart-by-hour"))

    by_size = report.resources.disk.growth_source == "database_size_bytes"
    size_key = "database_size_bytes" if by_size else "disk_used_bytes"
    sizes = [p.database_size_bytes if by_size else p.disk_used_bytes for p in points]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=sizes, name=size_key.replace("_", " "), mode="lines"))
    fig.update_layout(title="Disk growth", yaxis={"title": "bytes", "tickformat": ".3~s"})
    charts.append(_figure(fig, "chart-disk"))

    top = list(reversed(report.queries.slowest_by_total[:10]))
    fig = go.Figure()
    fig.add_trace(go.Bar(x=[s.total_time_ms for s in top], y=[s.query_id for s in top], orientation="h",
                         text=[short(s.query_text, 60) for s in top], hovertemplate="%{text}<br>%{x:,.1f} ms",
                         name="total time"))
    fig.update_layout(title="Statements by total time (ms)", yaxis={"type": "category"})
    charts.append(_figure(fig, "chart-top-statements"))

    types = report.queries.by_statement_type
    fig = go.Figure()
    fig.add_trace(go.Pie(labels=[x.statement_type for x in types], values=[x.total_time_ms for x in types],
                         hole=0.4, sort=False))
    fig.update_layout(title="Execution time by statement type")
    charts.append(_figure(fig, "chart-types"))
    return charts


def render_html(report: Report, *, list_url: str = "/reports/", api_url: str | None = None) -> str:
    s = report.summary
    heading = title(report.kind, report.report_id)
    cards = [
        ("Total queries", f"{s.total_queries:,}"), ("Average query time", ms(s.average_query_time_ms)),
        ("Slowest query (mean)", ms(s.slowest_query.mean_time_ms) if s.slowest_query else "n/a"),
        ("Error count", f"{s.error_count:,}"), ("System uptime", pct(s.uptime_percent, 1)),
        ("Cache hit ratio", pct(s.cache_hit_ratio_percent)),
        ("Recommendations", str(len(report.recommendations))), ("Anomalies", str(len(report.anomalies))),
    ]
    return templating.render(
        "report.html", report=report, heading=heading, cards=cards, list_url=list_url,
        api_url=api_url or f"/api/v1/reports/{report.report_id}",
        # Markup: HTML pgperf made itself (plotly's script and each chart's div and call).
        plotly_js=Markup(get_plotlyjs()), charts=[Markup(c) for c in _charts(report)],
        ms=ms, pct=pct, size=size, short=short, iso=iso, evidence_line=evidence_line, time_split=time_split,
        evidence_json=lambda evidence: json.dumps(evidence, indent=1, ensure_ascii=False),
    )
