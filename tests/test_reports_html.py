"""The HTML report in headless Chromium: its charts render, no script fails, and it needs
no network."""

from __future__ import annotations

from pathlib import Path

import chromium
import report_fixture as fx
from pgperf.reports import render
from test_reports import golden_report
from tools.cluster import Cluster

CHARTS = ("chart-throughput", "chart-cpu-memory", "chart-connections", "chart-by-hour", "chart-disk",
          "chart-top-statements", "chart-types")


def fx_plotly_marker() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()[:200]


def test_the_harness_sees_script_errors(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>missingFunction();</script><p>x</p></body></html>")
    assert any("missingFunction" in e for e in chromium.load(page, budget_ms=2000).script_errors)


def test_html_report_renders_its_charts(pg_cluster: Cluster, tmp_path: Path) -> None:
    with pg_cluster.connect() as conn:
        fx.load(conn, "report_html")
        data = golden_report(conn, "report_html")
    html = render(data, "html")
    # Self-contained: plotly's script is inlined once and nothing else is fetched.
    assert html.count(fx_plotly_marker()) == 1
    head, _, rest = html.partition("</script>")
    assert "<script src=" not in head and "<script src=" not in rest and "<link " not in rest
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    page = chromium.load(path)
    assert page.script_errors == []
    for chart in CHARTS:
        assert f'id="{chart}"' in page.dom
    # plotly draws each chart into <svg class="main-svg"> elements once its script has run.
    assert page.dom.count('class="main-svg"') >= len(CHARTS)
    assert "Query execution time spike detected: 2150.00ms (47.5x average)" in page.dom
    assert 'href="/reports/"' in page.dom
