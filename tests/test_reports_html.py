"""The HTML report in a real browser (headless Chromium through Selenium): its charts are
drawn by the vendored Chart.js with their axes right, nothing is clipped or overlaps, no
script fails, the written file needs no network, and the served page carries no library.
A screenshot of each form is kept in the test artifacts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import report_fixture as fx
from browser import Browser
from pgperf.http.static import STATIC
from pgperf.reports import render
from pgperf.reports.html import charts, forecast_charts, render_html
from pgperf.reports.model import Report
from test_reports import golden_report
from tools.cluster import Cluster

CHARTS = ("chart-throughput", "chart-cpu-memory", "chart-connections", "chart-by-hour", "chart-disk",
          "chart-top-statements", "chart-types",
          # The forecasts of the disk and the connections (the others have no series: none was made).
          "chart-forecast-0", "chart-forecast-2")


@pytest.fixture(scope="module")
def report(pg_cluster: Cluster) -> Report:
    with pg_cluster.connect() as conn:
        fx.load(conn, "report_html")
        return Report.from_json(golden_report(conn, "report_html"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser(width=1280, height=1000)
    try:
        yield b
    finally:
        b.quit()


def _chart(b: Browser, chart_id: str, script: str) -> Any:
    """Evaluate *script* with ``c``, the Chart.js chart of canvas *chart_id*."""
    return b.js(f"var c = Chart.getChart(document.getElementById({json.dumps(chart_id)})); {script}")


def _open(b: Browser, path: Path) -> None:
    b.get(path.resolve().as_uri())
    b.wait(lambda: b.js("return window.pgperfCharts && Object.keys(window.pgperfCharts.charts).length")
           == len(CHARTS), message="every chart drawn")


def test_the_written_report_is_self_contained(report: Report, tmp_path: Path) -> None:
    html = render(report, "html")
    library = STATIC.read_text("chart.umd.min.js")
    assert html.count(library) == 1  # inlined once, with pgperf's charts.js
    assert "<script src=" not in html and "<link rel=\"stylesheet\"" not in html
    assert len(html.encode()) < 400_000  # the library once, not plotly's 4.8 MB
    for name in ("chart.umd.min.js", "charts.js", "console.css"):
        assert "</" + "script" not in STATIC.read_text(name) and "</" + "style" not in STATIC.read_text(name)


def test_the_served_report_links_its_scripts(report: Report) -> None:
    html = render_html(report, standalone=False)
    assert html.count("<script src=") == len(("chart.umd.min.js", "charts.js"))
    assert "/static/chart.umd.min.js?v=" in html and "Chart.js v4" not in html
    assert len(html.encode()) < 150_000  # the page weighs its data: the library is cached apart
    assert "<script>" not in html  # nothing inline: the console's CSP allows none


def test_the_charts_are_drawn_with_their_axes(report: Report, browser: Browser, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render(report, "html"), encoding="utf-8")
    b = browser
    _open(b, page)
    assert b.console_errors() == []  # no script error, and nothing it tried to fetch failed
    # Throughput: the mean time is drawn against its own axis, on the right, with ticks.
    y2 = _chart(b, "chart-throughput", "var s = c.scales.y2; return {id: c.data.datasets[1].yAxisID, "
                "display: s.options.display, position: s.position, ticks: s.ticks.length, width: s.width, "
                "title: s.options.title.text, right: s.right, chartWidth: c.width}")
    assert y2["id"] == "y2" and y2["display"] is True and y2["position"] == "right", y2
    assert y2["ticks"] >= 3 and y2["width"] > 20 and y2["title"] == "mean time", y2
    assert y2["right"] <= y2["chartWidth"], y2  # the axis is inside the canvas
    for chart_id in CHARTS:
        box = b.js("var c = document.getElementById(arguments[0]); var f = c.parentNode.getBoundingClientRect();"
                   " var r = c.getBoundingClientRect(); return [r.left - f.left, f.right - r.right, r.width];", chart_id)
        assert box[0] >= -0.5 and box[1] >= -0.5 and box[2] > 200, (chart_id, box)  # not clipped on the right
        area = _chart(b, chart_id, "return [c.chartArea.right, c.width, c.chartArea.bottom, c.height]")
        assert area[0] <= area[1] and area[2] <= area[3], (chart_id, area)
    assert b.js("return document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    # The doughnut's legend and its title do not overlap.
    boxes = _chart(b, "chart-types", "var t = c.titleBlock; return [[t.left, t.top, t.right, t.bottom]].concat("
                   "[c.legend].concat(c.legend.legendHitBoxes).map(function (l) {"
                   " return [l.left, l.top, l.left + l.width, l.top + l.height]; }))")
    (tl, tt, tr, tb), *legend = boxes
    assert len(legend) == 1 + len(report.queries.by_statement_type), boxes
    for ll, lt, lr, lb in legend:  # the legend and each of its labels
        assert tr <= ll or lr <= tl or tb <= lt or lb <= tt, boxes
    # Time ticks fall on round hours of the day (00:00, 06:00, ...), never at 09:06.
    hours = _chart(b, "chart-throughput", "return c.scales.x.ticks.map(function (t) { return [t.value, t.label]; })")
    assert len(hours) >= 4 and all(value % 3_600_000 == 0 and label.endswith(":00") for value, label in hours), hours
    # The disk's ticks never repeat a label.
    ticks = _chart(b, "chart-disk", "return c.scales.y.ticks.map(function (t) { return t.label; })")
    assert len(ticks) >= 3 and len(set(ticks)) == len(ticks), ticks
    assert all(t.endswith(" GB") for t in ticks), ticks
    b.screenshot("report-file")


def test_narrow_ranges_of_large_values_get_enough_decimals(browser: Browser, tmp_path: Path) -> None:
    """The disk chart of a database that barely grows: 25.8 GB give or take a few MB. Every
    tick reads differently (plotly wrote "25.8G 25.8G 25.8G")."""
    spec = {"id": "chart-flat", "kind": "line", "x": "time", "title": "Disk",
            "series": [{"label": "size", "data": [[i * 60000, 27_700_000_000 + i * 700_000] for i in range(30)]}],
            "axes": {"y": {"format": "bytes"}}}
    page = tmp_path / "flat.html"
    page.write_text(
        "<!doctype html><html><body><figure class='chart' style='height:300px;width:600px;position:relative'>"
        "<canvas id='chart-flat'></canvas></figure><script type='application/json' data-chart>"
        + json.dumps(spec) + "</script><script>" + STATIC.read_text("chart.umd.min.js") + "</script><script>"
        + STATIC.read_text("charts.js") + "</script></body></html>")
    browser.get(page.resolve().as_uri())
    ticks = browser.wait(lambda: _chart(browser, "chart-flat", "return c && c.scales.y.ticks.map(function (t) {"
                                                              " return t.label; })"), message="the chart")
    assert len(ticks) >= 3 and len(set(ticks)) == len(ticks), ticks
    assert all(t.startswith("25.") and t.endswith(" GB") for t in ticks), ticks
    assert browser.console_errors() == []


def test_the_report_reads_well(report: Report) -> None:
    html = render_html(report, standalone=False)
    assert "n/a/day" not in html
    assert "Query execution time spike detected: 2150.00ms (47.5x average)" in html
    disk = next(c for c in charts(report) if c["id"] == "chart-disk")
    assert disk["axes"]["y"]["format"] == "bytes" and disk["title"] == "Disk: disk used"
    assert next(c for c in charts(report) if c["id"] == "chart-throughput")["series"][1]["axis"] == "y2"
    nothing = report.model_copy(update={"resources": report.resources.model_copy(update={
        "disk": report.resources.disk.model_copy(update={"growth_bytes_per_day": None, "days_until_full": None})})})
    page = render_html(nothing, standalone=False)
    assert "growth not forecast (see the forecasts for why)" in page and "n/a/day" not in page


def test_the_disk_forecast_is_drawn_with_its_band_limit_and_date(report: Report, browser: Browser,
                                                                   tmp_path: Path) -> None:
    """The fixture's disk fills 1 GB a day from 90 GB of 110: its chart shows the observed
    series, the trend, the projected median path between its interval's bounds (filled), the
    disk's size as a line and a marker on the date it is reached; its title is the sentence."""
    spec = next(c for c in forecast_charts(report) if c["id"] == "chart-forecast-0")
    assert spec["title"] == "Disk usage: disk full in 18 days"
    labels = [s["label"] for s in spec["series"]]
    assert labels == ["disk used", "trend", "95 % interval (low)", "95 % interval", "projection (median)", "disk size"]
    limit = spec["series"][-1]["data"]
    assert limit[0][1] == limit[1][1] == 110 * 2**30
    assert spec["markers"] == [datetime(2024, 1, 20, 0, 30, tzinfo=UTC).timestamp() * 1000]
    page = tmp_path / "report.html"
    page.write_text(render(report, "html"), encoding="utf-8")
    _open(browser, page)
    assert browser.console_errors() == []
    drawn = _chart(browser, "chart-forecast-0", "return {fill: c.data.datasets[3].fill, dash: c.data.datasets[4]"
                   ".borderDash, legend: c.legend.legendItems.map(function (i) { return i.text; }),"
                   " ticks: c.scales.y.ticks.map(function (t) { return t.label; }),"
                   " x: c.scales.x.ticks.map(function (t) { return t.label; })}")
    assert drawn["fill"] == "-1" and drawn["dash"] == [6, 4]
    assert drawn["legend"] == ["disk used", "trend", "95 % interval", "projection (median)", "disk size"]
    assert all(t.endswith(" GB") for t in drawn["ticks"]) and "110 GB" in drawn["ticks"], drawn
    assert drawn["x"] and all(len(t) == 5 and t[2] == "-" for t in drawn["x"] if t), drawn  # whole days: 01-18


def test_every_point_lies_within_its_chart(report: Report) -> None:
    """A bucket starts on its boundary, which can lie before a short report's period (the
    demo's report of the last 30 s): the time axis stretches to it, the point is drawn."""
    first = report.resources.chart.points[0].t
    late = report.model_copy(update={"period": report.period.model_copy(update={"start": first + timedelta(minutes=2)})})
    for spec in charts(late):
        if spec.get("x") != "time":
            continue
        xs = [x for s in spec["series"] for x, _ in s["data"]]
        assert spec["xmin"] <= min(xs) and max(xs) <= spec["xmax"], spec["id"]
        assert spec["xmin"] == first.timestamp() * 1000, spec["id"]
