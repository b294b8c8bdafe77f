"""The HTML report: a page with charts, tables and links, drawn by the ``report.html``
template (``pgperf/http/templates``, autoescaped: a statement text or a target name holding
markup shows as text).

Charts are drawn in the browser by Chart.js, the one chart library of pgperf's pages
(vendored in ``pgperf/http/static``, nothing fetched from the internet): a DBA reading a
report hovers a point for its exact value and time. Each chart is described by JSON in the
page (``<script type="application/json">``, data, not code) and drawn by the package's
``charts.js``; no inline script, so the page runs under the console's
Content-Security-Policy.

Two forms of the same page:

* served by pgperf (``/reports/<id>``): the console's header, the stylesheet and scripts
  linked as static files, which the browser caches — a page weighs what its data weighs;
* a file (``pgperf report --format html``, ``?format=html`` of the API): the stylesheet and
  scripts inlined (about 230 kB), so that it opens anywhere without network access.
"""

from __future__ import annotations

import json
from typing import Any

from markupsafe import Markup

from ..http import templating
from ..http.static import STATIC
from ..http.templating import Chrome
from .formatting import evidence_line, ms, pct, short, size, time_split, title
from .model import Report, iso
from .text import forecast_pairs

__all__ = ["SCRIPTS", "charts", "forecast_charts", "render_html"]

#: The scripts a report page runs, in order: the chart library, then pgperf's charts.
SCRIPTS = ("chart.umd.min.js", "charts.js")
#: Statements of the top-statements chart.
TOP_CHART = 10


def _ms_epoch(at: Any) -> float:
    return float(at.timestamp() * 1000)


def charts(report: Report) -> list[dict[str, Any]]:
    """The report's charts, as the descriptions ``charts.js`` draws."""
    points = report.resources.chart.points
    t = [_ms_epoch(p.t) for p in points]
    quality = report.data_quality
    markers = [_ms_epoch(at) for at in quality.statistics_resets + quality.server_restarts]
    no_samples = "no samples in the window"
    # The period, stretched to the buckets of the points (a bucket starts on its boundary,
    # which may lie before the period's start).
    window = {"xmin": min([_ms_epoch(report.period.start), *t]), "xmax": max([_ms_epoch(report.period.end), *t])}

    def series(label: str, values: list[Any], axis: str = "y") -> dict[str, Any]:
        return {"label": label, "data": [[x, v] for x, v in zip(t, values, strict=True)], "axis": axis}

    out: list[dict[str, Any]] = [
        {"id": "chart-throughput", "kind": "line", "x": "time", **window, "title": "Throughput and mean query time",
         "series": [series("queries/s", [p.queries_per_second for p in points]),
                    series("mean time (ms)", [p.mean_time_ms for p in points], "y2")],
         "axes": {"y": {"title": "queries/s", "min": 0}, "y2": {"title": "mean time", "min": 0, "format": "ms"}},
         "markers": markers, "empty": no_samples},
        {"id": "chart-cpu-memory", "kind": "line", "x": "time", **window, "title": "CPU and memory of the database host",
         "series": [series("CPU %", [p.cpu_percent for p in points]),
                    series("memory %", [p.memory_percent for p in points])],
         "axes": {"y": {"title": "%", "min": 0, "max": 100, "format": "percent"}},
         "empty": "not measured (pgperf does not run on the database host)" if points else no_samples},
        {"id": "chart-connections", "kind": "line", "x": "time", **window, "title": "Connections",
         "series": [series("connections (avg)", [p.connections for p in points]),
                    series("connections (max)", [p.connections_max for p in points]),
                    series("utilization %", [p.connection_utilization_percent for p in points], "y2")],
         "axes": {"y": {"title": "connections", "min": 0},
                  "y2": {"title": "% of max_connections", "min": 0, "max": 100, "format": "percent"}},
         "empty": no_samples},
    ]
    by_hour = report.resources.connections.by_hour
    out.append({
        "id": "chart-by-hour", "kind": "bar", "x": "category", "title": "Connection utilization by hour of day (UTC)",
        "labels": [f"{h.hour:02d}:00" for h in by_hour],
        "series": [{"label": "average", "data": [h.utilization_avg_percent for h in by_hour]},
                   {"label": "peak", "data": [h.utilization_max_percent for h in by_hour]}],
        "axes": {"y": {"title": "% of max_connections", "min": 0, "format": "percent"}}, "empty": no_samples,
    })
    by_size = report.resources.disk.growth_source != "disk_usage_bytes"
    label = "database size" if by_size else "disk used"
    out.append({
        "id": "chart-disk", "kind": "line", "x": "time", **window, "title": f"Disk: {label}",
        "series": [series(label, [p.database_size_bytes if by_size else p.disk_used_bytes for p in points])],
        "axes": {"y": {"title": "bytes", "format": "bytes"}}, "empty": "not measured" if points else no_samples,
    })
    top = report.queries.slowest_by_total[:TOP_CHART]
    out.append({
        "id": "chart-top-statements", "kind": "hbar", "x": "category", "title": "Statements by total time",
        "labels": [s.query_id for s in top],
        "series": [{"label": "total time", "data": [s.total_time_ms for s in top],
                    "tooltips": [short(s.query_text, 80) for s in top]}],
        "axes": {"y": {"title": "total time", "min": 0, "format": "ms"}}, "empty": "no statements in the window",
    })
    types = report.queries.by_statement_type
    out.append({
        "id": "chart-types", "kind": "doughnut", "title": "Execution time by statement type",
        "labels": [x.statement_type for x in types],
        "series": [{"label": "total time", "data": [x.total_time_ms for x in types]}],
        "axes": {"y": {"format": "ms"}}, "empty": "no statements in the window",
    })
    return out


# metric -> (chart title, the series' label, the limit's label)
_FORECAST_SERIES = {"disk_usage_bytes": ("Disk usage", "disk used", "disk size"),
                    "database_size_bytes": ("Database size", "database size", "disk full"),
                    "connections": ("Connections", "connections", "max_connections"),
                    "transaction_id_age": ("Transaction ID age", "age of the oldest transaction ID",
                                           "wraparound (2^31 less 3 million)"),
                    "statement_mean_time_ms": ("Mean time", "mean time", "limit")}
_UNIT_FORMAT = {"bytes": "bytes", "ms": "ms", "connections": None, "xids": None}
_OBSERVED, _TREND, _PROJECTED, _LIMIT = "#1d64c8", "#495057", "#e8590c", "#c92a2a"


def forecast_charts(report: Report) -> list[dict[str, Any]]:
    """A chart per forecast with a series (the resources'): what was observed, the trend it
    rests on, the projected median path in its 95 % band, and the limit with the date it is
    reached (a marker) when it is."""
    out: list[dict[str, Any]] = []
    for n, (entry, detail) in enumerate(forecast_pairs(report)):
        if detail is None or not detail.observed:
            continue
        title_, label, limit_label = _FORECAST_SERIES[entry.metric]
        observed = [[_ms_epoch(p.t), p.value] for p in detail.observed]
        series: list[dict[str, Any]] = [{"label": label, "data": observed, "color": _OBSERVED}]
        last = _ms_epoch(detail.last_at) if detail.last_at else observed[-1][0]
        if detail.level is not None and entry.growth_per_day is not None:
            start = max(observed[0][0], _ms_epoch(detail.since) if detail.since else observed[0][0])
            slope = entry.growth_per_day / 86_400_000
            series.append({"label": "trend", "data": [[start, detail.level + slope * (start - last)], [last, detail.level]],
                           "color": _TREND, "dash": True, "points": False})
        band = detail.projection
        if band:
            t = [_ms_epoch(p.t) for p in band]
            series += [
                {"label": "95 % interval (low)", "data": [[x, p.low] for x, p in zip(t, band, strict=True)],
                 "color": _PROJECTED, "width": 0, "points": False, "legend": False},
                {"label": "95 % interval", "data": [[x, p.high] for x, p in zip(t, band, strict=True)],
                 "color": _PROJECTED, "width": 0, "points": False, "fill": "-1"},
                {"label": "projection (median)", "data": [[x, p.mid] for x, p in zip(t, band, strict=True)],
                 "color": _PROJECTED, "dash": True, "points": False},
            ]
        xmin = observed[0][0]
        xmax = max([last, *(_ms_epoch(p.t) for p in band)])
        shown = [v for s_ in series for _, v in s_["data"]]
        limit = entry.limit
        if limit is not None and (entry.reaches_limit_at is not None or limit <= 2 * max(shown)):
            series.append({"label": limit_label, "data": [[xmin, limit], [xmax, limit]], "color": _LIMIT, "dash": True,
                           "points": False})
        out.append({
            "id": f"chart-forecast-{n}", "kind": "line", "x": "time", "xmin": xmin, "xmax": xmax,
            "title": f"{title_}: {detail.sentence}", "series": series, "tooltip": "nearest",
            "axes": {"y": {"title": detail.unit, "format": _UNIT_FORMAT[detail.unit]}},
            "markers": [_ms_epoch(entry.reaches_limit_at)] if entry.reaches_limit_at is not None else [],
            "empty": "no samples",
        })
    return out


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _growth(report: Report) -> str:
    disk = report.resources.disk
    if disk.growth_bytes_per_day is None:
        return "growth not forecast (see the forecasts for why)"
    source = "database size" if disk.growth_source == "database_size_bytes" else "filesystem"
    days = (f"; projected full in {disk.days_until_full:,.1f} days" if disk.days_until_full is not None
            else "; no projected date (not growing, not within the horizon, or the disk's size is unknown)")
    return f"growth {size(disk.growth_bytes_per_day)}/day ({source}){days}"


def render_html(report: Report, *, list_url: str = "/reports/", api_url: str | None = None,
                chrome: Chrome | None = None, standalone: bool = True) -> str:
    """The report's page: *standalone* inlines its stylesheet and scripts (a file to keep),
    else they are linked (served by pgperf, with *chrome*: the console around it)."""
    s = report.summary
    heading = title(report.kind, report.report_id)
    cards = [
        ("Total queries", f"{s.total_queries:,}"), ("Average query time", ms(s.average_query_time_ms)),
        ("Slowest query (mean)", ms(s.slowest_query.mean_time_ms) if s.slowest_query else "n/a"),
        ("Error count", f"{s.error_count:,}"), ("System uptime", pct(s.uptime_percent, 1)),
        ("Cache hit ratio", pct(s.cache_hit_ratio_percent)),
        ("Recommendations", str(len(report.recommendations))), ("Anomalies", str(len(report.anomalies))),
    ]
    inline: dict[str, Markup] = {}
    if standalone:
        # Markup: pgperf's own files. "</" cannot occur inside them as a tag end: checked by a test.
        inline = {"css": Markup(STATIC.read_text("console.css")),
                  "scripts": Markup("\n".join(STATIC.read_text(name) for name in SCRIPTS))}
    return templating.render(
        "report.html", report=report, heading=heading, cards=cards, list_url=list_url,
        api_url=api_url or f"/api/v1/reports/{report.report_id}", charts=charts(report), ui=chrome,
        forecasts=[(f, _capital(d.sentence if d else f.reason or "")) for f, d in forecast_pairs(report)],
        forecast_charts=forecast_charts(report),
        standalone=standalone, inline=inline, scripts=SCRIPTS, growth=_growth(report),
        no_samples=s.samples == 0,
        ms=ms, pct=pct, size=size, short=short, iso=iso, evidence_line=evidence_line, time_split=time_split,
        evidence_json=lambda evidence: json.dumps(evidence, indent=1, ensure_ascii=False),
    )
