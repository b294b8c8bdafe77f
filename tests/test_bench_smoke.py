"""The benchmark harness runs end to end with tiny sizes (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_harness_quick(tmp_path: Path) -> None:
    out, results = tmp_path / "README.md", tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "harness.py"), "--quick", "--output", str(out),
                           "--results", str(results)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(results.read_text())
    assert data["quick"] is True
    assert data["store"]["size"]["rows"] > 0
    assert data["store"]["retention"]["dropped"] > 0 and data["store"]["retention"]["left"] > 0
    assert data["reports"]["report_total_queries"] > 0 and data["reports"]["report_rollup_hours"] > 0
    compare = data["compare"]
    for name in ("pgperf", "postgres_exporter"):
        latency = compare["latency"][name]
        assert latency["series"]["by_prefix"]["pg_stat_statements"] > 0, name  # the custom query file works
        assert latency["series"]["tables"] > 0, name
        assert latency["sequential_gzip"]["n"] > 0 and latency["concurrent_gzip"]["n"] > 0
        window = compare["window"][name]
        assert window["cycles"] > 0 and window["db_ms_per_cycle"] > 0, window  # its own role, seen apart
        assert window["rss_bytes"] > 0 and window["scrape"]["n"] > 0
    assert compare["window"]["pgperf_all_tables"]["db_ms_per_cycle"] > 0  # pgperf serving every table
    insight = data["insight"]
    assert insight["sample"]["db_time_ms"] > 0 and insight["waits_pg_stat_activity"]["runs"] > 0
    assert insight["plans_top"]["planned"] > 0
    memory = data["memory"]  # reports built on schedule and read as HTML while memory is sampled
    assert memory["reports_built"] >= 1 and memory["pages_served"] > memory["reports_built"]
    assert memory["rss_peak_mib"] >= memory["rss_start_mib"] > 0
    assert compare["window"]["postgres_exporter_default"]["db_ms_per_cycle"] > 0  # its default collectors
    fleet = data["fleet"]
    run = fleet["runs"][0]
    assert run["targets_seen"] == run["targets"] and run["lateness"]["samples"] > 0 and run["cpu_seconds"] > 0
    assert run["stop"]["stopped_samples"] > 0 and run["stop"]["stopped_samples_up"] == 0  # the stopped are down
    assert run["stop"]["others_samples"] > 0 and run["stop"]["others_samples_down"] == 0
    assert fleet["one_target"]["no_reports"]["rss_bytes"] > 0 and fleet["one_target"]["reports"]["rss_bytes"] > 0
    forecast = data["forecast"]  # the backtest of the forecasts and the seasonal baselines
    assert forecast["quick"] is True and forecast["forecasts"]["cases"] == 30
    assert {row["detector"] for row in forecast["anomalies"][0]["rows"]} >= {"global", "seasonal, ±15 minutes (default)"}
    assert data["reports"]["forecasts"] >= 4 and data["reports"]["forecast_seconds_median"] > 0
    text = out.read_text()
    assert "## Query insight" in text and "the sampling cost: one sample" in text
    assert "time to store one sample" in text and "quick mode" in text
    assert "report over 2 days" in text and "retention run" in text
    assert "side by side" in text and "## Budget" in text and "## Memory with reports" in text
    assert "## Many targets in one process" in text and "postgres_exporter with its default collectors" in text
    assert "## Forecasts and seasonal baselines (backtest)" in text and "of each report: its forecasts alone" in text
