"""pgperf's benchmarks: run them all and rewrite bench/README.md with the results.

    python bench/harness.py            # full sizes (make bench, about 10 minutes)
    python bench/harness.py --quick    # tiny sizes: a smoke test, figures meaningless

Each section is a function that measures on throwaway PostgreSQL clusters and returns
plain numbers; the results go to bench/results.json and into the README's tables.

The ``compare`` section (pgperf and postgres_exporter side by side, bench/exporters_bench.py)
needs a 10-minute window for CPU time and memory: it starts first, measures /metrics
latency, lets the other sections run while its window goes on, and ends last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the benches, and the repository's tools package

import exporters_bench  # noqa: E402
import fleet_bench  # noqa: E402
import forecast_backtest  # noqa: E402
import insight_bench  # noqa: E402
import memory_bench  # noqa: E402
import reports_bench  # noqa: E402
import store_bench  # noqa: E402

from tools.cluster import Cluster  # noqa: E402

Section = Callable[[argparse.Namespace, Path], dict[str, Any]]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
            "python": platform.python_version(), "os": platform.platform(terse=True),
            "date": datetime.now(UTC).strftime("%Y-%m-%d"), "load_at_start": round(os.getloadavg()[0], 2)}


def section_store(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    statements_write = 50 if args.quick else 5000
    statements_day = 20 if args.quick else 1000
    interval = 3600.0 if args.quick else 60.0
    with Cluster(name="pgperf-bench") as cluster:
        write = store_bench.store_one_sample(cluster, statements_write, 3 if args.quick else 20, str(work / "s1"))
        size = store_bench.store_size_per_day(cluster, statements_day, interval, str(work / "s2"))
        size_before = store_bench.store_size_per_day_before(cluster, statements_day, interval)
        if args.quick:
            retention = store_bench.retention_run(cluster, days=6, query_days=2, resource_days=4,
                                                  statements_per_sample=1)
        else:
            retention = store_bench.retention_run(cluster, days=120, query_days=30, resource_days=90,
                                                  statements_per_sample=5)
        pg = cluster.major
    return {"write": write, "size": size, "size_before": size_before, "retention": retention, "postgres": pg}


def section_reports(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    # A store server sized for its job (the throwaway default is 64 MB of shared_buffers);
    # the report sets its own work_mem.
    with Cluster(name="pgperf-bench", settings={"shared_buffers": "'512MB'", "max_wal_size": "'4GB'"}) as cluster:
        if args.quick:
            figures = reports_bench.report_over_days(cluster, days=2, statements=20, interval=600,
                                                     spool=str(work / "r1"), repeats=1)
        else:
            figures = reports_bench.report_over_days(cluster, days=30, statements=1000, interval=60,
                                                     spool=str(work / "r1"))
        return {**figures, "postgres": cluster.major}


def section_insight(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Query insight's cost at its default intervals against the sampling cost (bench/insight_bench.py)."""
    if args.quick:
        return insight_bench.run(statements=100, max_statements=10, repeats=1, sessions=4)
    return insight_bench.run()


def section_forecast(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The forecasts' and seasonal baselines' backtest on synthetic histories (bench/forecast_backtest.py)."""
    return forecast_backtest.run(quick=args.quick)


def section_memory(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    # pgperf serve building a report every minute while the console reads them as HTML.
    if args.quick:
        return memory_bench.measure(1.0, report_every="20s")
    return memory_bench.measure(6.0, report_every="1m")


def section_fleet(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    return fleet_bench.run_all(args.quick, work)


SECTIONS: dict[str, Section] = {"store": section_store, "reports": section_reports, "insight": section_insight,
                               "memory": section_memory, "fleet": section_fleet,
                               "forecast": section_forecast}
#: compare is not in SECTIONS: it starts before the others and ends after them (main()).
ALL_SECTIONS = ("compare", *SECTIONS)
#: Sections that load the whole machine (a hundred clusters): they run once the compare
#: section's window is over, so that they do not weigh on its figures.
AFTER_COMPARE = ("fleet",)


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _ms(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:,.2f} s"
    return f"{v:,.1f} ms" if v >= 10 else f"{v:,.2f} ms"


def _ratio(a: float, b: float) -> str:
    if not b:
        return "—"
    r = a / b
    return f"{r:.3f}×" if r < 0.1 else f"{r:.2f}×"


# Budget of issue 8: (key, target text, limit). The measured values come from budget_figures().
BUDGET = (
    ("metrics_p50_ratio", "/metrics p50 at most 0.2× postgres_exporter's", 0.2),
    ("db_ratio", "database time per collection cycle at most 1.0× postgres_exporter's, covering statements "
                 "and tables", 1.0),
    ("db_default_ratio", "database time per cycle of every collector at its defaults at most postgres_exporter's "
                         "with its default collectors", 1.0),
    ("cpu_percent", "under 1 % of one core at 15 s sampling", 1.0),
    ("rss_mib", "resident memory under 80 MB after 10 minutes", 80.0),
    ("store_ms", "one sample stored in under 100 ms", 100.0),
    ("report_s", "the 30-day report in under 10 s", 10.0),
    ("memory_reports_mib", "resident memory under 100 MiB with reports built on schedule and served as HTML", 100.0),
)


def budget_figures(results: dict[str, Any]) -> dict[str, tuple[float, str]]:
    """Measured value and its display per budget key (only those measured)."""
    out: dict[str, tuple[float, str]] = {}
    c = results.get("compare")
    if c:
        lat, win = c["latency"], c["window"]
        a, b = lat["pgperf"]["sequential_gzip"]["p50_ms"], lat["postgres_exporter"]["sequential_gzip"]["p50_ms"]
        out["metrics_p50_ratio"] = (a / b, f"{a / b:.3f}× ({_ms(a)} against {_ms(b)})")
        a, b = win["pgperf"]["db_ms_per_cycle"], win["postgres_exporter"]["db_ms_per_cycle"]
        shown = f"{_ratio(a, b)} ({_ms(a)} against {_ms(b)})"
        ratio = a / b if b else 0.0
        every = win.get("pgperf_all_tables")
        if every:  # judged on the worse of the two: pgperf's defaults, and every table served
            c = every["db_ms_per_cycle"]
            shown += f"; serving every table as postgres_exporter does: {_ratio(c, b)} ({_ms(c)})"
            ratio = max(ratio, c / b if b else 0.0)
        out["db_ratio"] = (ratio, shown)
        default = win.get("postgres_exporter_default")
        if default and default["db_ms_per_cycle"]:
            a, b = win["pgperf"]["db_ms_per_cycle"], default["db_ms_per_cycle"]
            out["db_default_ratio"] = (a / b, f"{_ratio(a, b)} ({_ms(a)} against {_ms(b)})")
        cpu = win["pgperf"]["cpu_seconds_per_hour"]
        out["cpu_percent"] = (cpu / 36, f"{cpu / 36:.2f} % ({cpu:.1f} CPU-s per hour)")
        rss = win["pgperf"]["rss_bytes"] / 2**20
        minutes = win.get("seconds", 0) / 60
        out["rss_mib"] = (rss, f"{rss:.1f} MiB ({win['pgperf']['rss_bytes'] / 1e6:.1f} MB) after "
                               f"{minutes:.1f} minutes at 15 s sampling (this run)")
    soak = results.get("soak")
    if soak:  # `make soak`: the same process after exactly 10 minutes (and 30), sampling every second
        at_10 = next((p for p in soak["points"] if p["t"] >= 600), None)
        if at_10 is not None:
            rss10 = at_10["rss"] / 2**20
            previous = out.get("rss_mib")
            worst = max(rss10, previous[0]) if previous else rss10
            text = f"{rss10:.1f} MiB ({at_10['rss'] / 1e6:.1f} MB) after 10 minutes at 1 s sampling (make soak)"
            out["rss_mib"] = (worst, text + (f"; {previous[1]}" if previous else ""))
    store = results.get("store")
    if store:
        out["store_ms"] = (store["write"]["p50_ms"], f"{store['write']['p50_ms']:.0f} ms (median)")
    rep = results.get("reports")
    if rep:
        out["report_s"] = (rep["report_seconds_median"], f"{rep['report_seconds_median']:.2f} s (median)")
    mem = results.get("memory")
    if mem:
        out["memory_reports_mib"] = (mem["rss_peak_mib"], f"{mem['rss_peak_mib']:.1f} MiB at its peak over "
                                     f"{mem['minutes']:g} minutes, {mem['reports_built']} reports built and read")
    return out


def render_compare(c: dict[str, Any], m: dict[str, Any]) -> list[str]:
    lat, win = c["latency"], c["window"]
    pg, pe = lat["pgperf"], lat["postgres_exporter"]
    wg, we = win["pgperf"], win["postgres_exporter"]
    wa = win.get("pgperf_all_tables")
    minutes = win["seconds"] / 60

    def row(label: str, a: float, b: float, fmt: Any = _ms) -> str:
        return f"| {label} | {fmt(a)} | {fmt(b)} | {_ratio(a, b)} |"

    seq_g, seq_p, conc = "sequential_gzip", "sequential_plain", "concurrent_gzip"
    out = [
        "## pgperf and postgres_exporter side by side",
        "",
        f"One PostgreSQL {c['postgres']} with {c['tables']:,} tables (two indexes each) in a database `bench` and "
        f"{c['statements_entries']:,} statements in pg_stat_statements (`pg_stat_statements.max = 5000`), pgbench "
        "running throughout. pgperf (sampling every "
        f"{c['interval']}, storing its samples as its own role in a database `pgperf`) and postgres_exporter "
        f"{c['postgres_exporter_version']} (Debian's, with a custom query file for pg_stat_statements and the tables, "
        "see below) each connect as their own role, so their database time can be read apart in pg_stat_statements. "
        f"Load average when the latency was measured: {pg['load']:.2f} (pgperf), {pe['load']:.2f} "
        f"(postgres_exporter); at the start {c.get('load_at_start', m.get('load_at_start', float('nan'))):.2f}, at the end "
        f"{c.get('load_at_end', float('nan')):.2f}.",
        "",
        "| figure | pgperf | postgres_exporter | ratio |",
        "|---|---|---|---|",
        row(f"/metrics p50, {pg[seq_g]['n']} / {pe[seq_g]['n']} sequential scrapes, gzip", pg[seq_g]["p50_ms"],
            pe[seq_g]["p50_ms"]),
        row("/metrics p99, sequential, gzip", pg[seq_g]["p99_ms"], pe[seq_g]["p99_ms"]),
        row(f"/metrics p50, {pg[seq_p]['n']} / {pe[seq_p]['n']} sequential scrapes, plain text", pg[seq_p]["p50_ms"],
            pe[seq_p]["p50_ms"]),
        row("/metrics p99, sequential, plain text", pg[seq_p]["p99_ms"], pe[seq_p]["p99_ms"]),
        row(f"/metrics p50, {pg[conc]['scrapers']} concurrent scrapers ({pg[conc]['n']} / {pe[conc]['n']} scrapes), gzip",
            pg[conc]["p50_ms"], pe[conc]["p50_ms"]),
        row(f"/metrics p99, {pg[conc]['scrapers']} concurrent scrapers, gzip", pg[conc]["p99_ms"], pe[conc]["p99_ms"]),
        row("scrapes per second with the concurrent scrapers", pg[conc]["scrapes_per_second"],
            pe[conc]["scrapes_per_second"], lambda v: f"{v:,.1f}"),
        row(f"/metrics p50 of the window's scrapes every 15 s ({wg['scrape'].get('n', 0)} each; pgperf's follow "
            "a new sample each time)", wg["scrape"].get("p50_ms", 0.0), we["scrape"].get("p50_ms", 0.0)),
        row(f"database execution time per collection cycle ({wg['cycles']:.0f} / {we['cycles']:.0f} cycles from minute "
            f"{win.get('db_from_seconds', 60) / 60:.1f})", wg["db_ms_per_cycle"], we["db_ms_per_cycle"]),
        *([
            row("the same, pgperf serving every table as postgres_exporter does (`collectors.tables.limit: 100000`, "
                "no store)", wa["db_ms_per_cycle"], we["db_ms_per_cycle"]),
        ] if wa else []),
        *([
            row("the same, postgres_exporter with its default collectors and flags only (no query file, one "
                "database)", wg["db_ms_per_cycle"], win["postgres_exporter_default"]["db_ms_per_cycle"]),
        ] if win.get("postgres_exporter_default") else []),
        f"| pgperf's sample store: database time per sample written (role `pgperf_store`, apart) | "
        f"{_ms(wg.get('store_db_ms_per_cycle', 0.0))} | — | — |",
        row(f"exporter CPU seconds per hour (15 s sampling and scrapes; minutes "
            f"{(win['seconds'] - win['measured_seconds']) / 60:.1f} to {minutes:.1f})",
            wg["cpu_seconds_per_hour"], we["cpu_seconds_per_hour"], lambda v: f"{v:,.1f} s"),
        row("the same, as a share of one core", wg["cpu_seconds_per_hour"] / 36, we["cpu_seconds_per_hour"] / 36,
            lambda v: f"{v:.2f} %"),
        row(f"resident memory after {minutes:.1f} minutes", wg["rss_bytes"], we["rss_bytes"],
            lambda v: f"{v / 2**20:,.1f} MiB"),
        *([
            row("CPU seconds per hour, pgperf serving every table (no store)", wa["cpu_seconds_per_hour"],
                we["cpu_seconds_per_hour"], lambda v: f"{v:,.1f} s"),
            row(f"resident memory after {minutes:.1f} minutes, pgperf serving every table", wa["rss_bytes"],
                we["rss_bytes"], lambda v: f"{v / 2**20:,.1f} MiB"),
        ] if wa else []),
        row("series per scrape (sample lines)", pg["series"]["total"], pe["series"]["total"], lambda v: f"{v:,}"),
        row("bytes per scrape, plain text", pg["series"]["bytes"], pe["series"]["bytes"], lambda v: f"{v / 1024:,.0f} KiB"),
        "",
        "Ratios are pgperf / postgres_exporter (below 1: pgperf is faster, lighter or smaller). Latency is measured "
        "from the request to the last byte of the body, on keep-alive connections, by a client on the same machine; "
        "the gzipped body is not decompressed in the timed loops. CPU seconds are user + system time of the exporter "
        "process (psutil) after a one-minute warm-up; memory is its resident set size (1 MiB = 2^20 bytes): "
        f"{wg.get('rss_start_bytes', 0) / 2**20:,.1f} MiB for pgperf and {we.get('rss_start_bytes', 0) / 2**20:,.1f} "
        "MiB for postgres_exporter at the end of the warm-up, most of it pgperf's interpreter and libraries.",
        "",
        "### What each one covers",
        "",
        "| series | pgperf | postgres_exporter |",
        "|---|---|---|",
    ]
    labels = {
        "pg_stat_statements": "pg_stat_statements_*",
        "pg_stat_user_tables": "pg_stat_user_tables_*",
        "pg_statio_user_tables": "pg_statio_user_tables_*",
        "pg_settings": "pg_settings_*",
        "pg_stat_database": "pg_stat_database_*",
        "pg_stat_activity": "pg_stat_activity_*",
        "pg_locks": "pg_locks_*",
        "pgperf_": "pgperf_* (pgperf's own, host, store, thresholds)",
        "process_": "process_*",
        "go_": "go_*",
    }
    for key, text in labels.items():
        out.append(f"| {text} | {pg['series']['by_prefix'].get(key, 0):,} | {pe['series']['by_prefix'].get(key, 0):,} |")
    out += [
        f"| all | {pg['series']['total']:,} | {pe['series']['total']:,} |",
        "",
        f"* **pgperf** (defaults of the production profile): the top {c['top_n']} statements by time in the interval "
        "(per-queryid calls, time, rows, block hits and reads, block read and write time, temporary blocks, "
        "longest execution), totals over all statements per database and user, slow statements; pg_stat_database, "
        "activity (by state, oldest query and transaction, waiting), settings, locks, bgwriter and checkpointer, "
        "WAL, replication and slots, archiver, wraparound, roles, postmaster, database sizes, the largest and busiest "
        "200 tables of every database (pg_stat_user_tables and pg_statio_user_tables with table and index sizes; "
        "`collectors.tables.limit`), the host (CPU, memory, disk, network), its own sampling and sample store. "
        "Every statement that ran in the interval is also stored (up to `store.max_query_rows`).",
        f"* **postgres_exporter** {c['postgres_exporter_version']} with `--auto-discover-databases` and the query file "
        "of bench/exporters_bench.py (`QUERIES_YAML`): its built-in pg_stat_database, pg_stat_bgwriter, "
        "pg_stat_activity by state, pg_locks, pg_settings, replication, archiver, database sizes, plus the top "
        f"{c['top_n']} statements by total time since the last reset (the same per-queryid figures as pgperf's) and "
        "every user table of every database (pg_stat_user_tables with table and index sizes, pg_statio_user_tables). "
        "No totals over all statements, no slow-statement counts, no host, no history.",
        "",
        f"So the two cover the same views; postgres_exporter serves every table ({pe['series'].get('tables', 0):,} "
        f"here), pgperf the 200 largest and busiest per database ({pg['series'].get('tables', 0):,} here), which is "
        "why it serves fewer series. postgres_exporter runs its queries on every scrape "
        "(and serialises concurrent scrapes on one connection); pgperf runs them once per sampling interval, "
        "whatever the number of scrapers.",
        "",
    ]
    return out


# What stands in the way of a target, shown when a run misses it.
BUDGET_NOTES = {
    "metrics_p50_ratio": "pgperf's scrape is served from memory: its p50 is the HTTP round trip, the copy of the "
                         "text and the compression of a few kilobytes; on a loaded machine the client's and the "
                         "server's threads wait for a core, which costs both exporters alike in absolute terms.",
    "db_default_ratio": "postgres_exporter's default collectors read pg_database_size() of every database on every "
                        "scrape; pgperf's every collector includes statements and tables.",
    "db_ratio": "pgperf's database time is the statements query over every pg_stat_statements entry, the tables "
                "query (ranking every table, sizes of the served ones) and pg_database_size() of every database; "
                "see the coverage above for what each exporter reads.",
    "cpu_percent": "pgperf's CPU time per sample is the Python work of turning thousands of rows into families "
                   "and rendering them; it grows with the number of statements and served tables.",
    "rss_mib": "Most of the resident memory is the interpreter and the libraries pgperf runs on (psycopg with "
               "libpq and OpenSSL, pydantic, werkzeug, prometheus-client): 47 MiB before any of pgperf's modules "
               "(psycopg's pure-Python implementation on the system libpq weighs the same as its binary wheel); "
               "its configuration models (pydantic) 8 MiB more, query insight (pglast) 4. The figure rose from "
               "75.2 MiB when query insight, the console and the forecasts joined serve (2026-12-04, measured "
               "before they merged) to 88.8 MiB; two malloc arenas and requests imported only to deliver took it "
               "to 86.1 MiB, and Jinja2 and the report builder imported with the first page and report (4.4 MiB "
               "of what serve imports) to 82 MiB. The rest of the way is the sampled data of 1,000 tables and "
               "2,000 statements (about 10 MiB over an idle database), not profiled further yet.",
    "store_ms": "The time is one COPY of every statement row in one transaction, on the store's server.",
    "report_s": "The report reads the hourly rollups of the period and the raw rows of the last hours.",
    "memory_reports_mib": "A report's model (pydantic) and its rendering live only while it is built or served; "
                          "the rest is the process's resident memory without reports.",
}


def render_budget(results: dict[str, Any]) -> list[str]:
    figures = budget_figures(results)
    missed: list[str] = []
    out = ["## Budget", "", "| target | measured | met |", "|---|---|---|"]
    for key, text, limit in BUDGET:
        if key not in figures:
            out.append(f"| {text} | not measured in this run | — |")
            continue
        value, shown = figures[key]
        met = value < limit if key in ("cpu_percent", "rss_mib", "store_ms", "report_s", "memory_reports_mib") \
            else value <= limit
        out.append(f"| {text} | {shown} | {'yes' if met else f'**no**, by {value / limit:.2f}× the limit'} |")
        if not met:
            missed.append(f"* **{text}**: {shown}, {value / limit:.2f}× the limit. {BUDGET_NOTES[key]}")
    out.append("")
    if missed:
        out += ["Targets not met in this run, and what stands in the way:", "", *missed, ""]
    else:
        out += ["Every target is met in this run.", ""]
    out += [
        "The resident memory target is read as 80 MiB (2^20 bytes, as `ps` and `top` count); the figure is also "
        "given in MB (10^6 bytes). One core's 1 % is 36 CPU seconds per hour.",
        "",
    ]
    return out


def render_optimizations(results: dict[str, Any]) -> list[str]:
    """What was changed in pgperf to meet the budget, with the figures before and after."""
    out = [
        "## What was optimized",
        "",
        "Profiled with py-spy on the running exporter and cProfile on the sampler, against this benchmark's "
        "database. Database time did not change: the queries are the same.",
        "",
        "* **Rendering /metrics.** pgperf writes the text exposition itself, byte for byte what prometheus-client's "
        "`generate_latest` writes for the same families (tests/test_exposition.py compares the two), instead of "
        "building a prometheus-client `Metric` per family and a label dict per sample: about 45 ms down to 13 ms "
        "for the ~7,500 series of this benchmark.",
        "* **Rendering once, before the scrape.** The text is rendered right after each sample in the sampler's "
        "thread, not at the first scrape after it, which with Prometheus scraping as often as pgperf samples was "
        "every scrape. The sample store's metrics, which change with every write, are a small part of their own and "
        "no longer invalidate the whole text.",
        "* **gzip once per sample.** The bulk of the text is compressed once when it is rendered, ending at a byte "
        "boundary; a scrape compresses only the store's and the process metrics (a few kilobytes) and appends the "
        "gzip trailer, whose CRC continues over the whole text, so the response stays one gzip member. Before, "
        "every scrape compressed the whole text (~760 KB, about 4 ms of CPU), which bounded the concurrent scrapes.",
        "* **Collectors.** The tables collector converts each table's labels once for its 31 families and converts "
        "only the timestamp columns; `MetricDef.family` converts label values with a list comprehension that lets "
        "strings through; the statements collector fetches its thousands of rows with one `fetchall()` and picks "
        "its top N with `heapq.nlargest` instead of sorting every statement. One sample of this database went from "
        "about 37 ms to 28 ms of CPU.",
        "* **Database time per sample.** On this database four fifths of pgperf's database time was the tables "
        "query (pg_stat_statements of the monitored server itself and EXPLAIN ANALYZE said so): it ranked every "
        "table by size and activity (the statistics of all 1,000), pg_table_size() and pg_indexes_size() looked at "
        "every file of each served table, and the statistics views computed their per-table aggregates for every "
        "table before the join kept 200. The tables are now chosen and measured every "
        "`collectors.tables.refresh_interval` (5 minutes, and at once when a table is created or dropped); the "
        "samples in between read the statistics of the chosen tables only and serve their last sizes. On an idle "
        "server the query went from 17.6 ms to 3.3 ms between choices (median of 30 runs).",
        "* **Memory.** `requests` (with urllib3, charset_normalizer, idna and certifi) is imported only when a "
        "report is delivered or Alertmanager is called, about 4 MiB less; `pgperf serve` gives glibc's free pages "
        "back to the system after each sample (`malloc_trim`), about 2 MiB less after 10 minutes. Reports draw "
        "their charts in the browser with Chart.js, a cached static file: pgperf imports no plotting library "
        "(plotly and its 4.8 MB script, inlined in every page, took the demo's pgperf to 247 MB).",
        "",
    ]
    before, after = results.get("compare_before"), results.get("compare")
    if before and after:
        bl, al = before["latency"]["pgperf"], after["latency"]["pgperf"]
        bw, aw = before["window"]["pgperf"], after["window"]["pgperf"]

        def row(label: str, a: float, b: float, fmt: Any = _ms) -> str:
            return f"| {label} | {fmt(a)} | {fmt(b)} | {_ratio(b, a)} |"

        conc = "concurrent_gzip"
        out += [
            "pgperf before (the exporter of the commit before this work, run by `bench/harness.py --only compare "
            "--compare-as compare_before` with `PYTHONPATH` at its `exporter/`) and after, in the same benchmark:",
            "",
            "| pgperf | before | after | after / before |",
            "|---|---|---|---|",
            row("/metrics p50, sequential, gzip", bl["sequential_gzip"]["p50_ms"], al["sequential_gzip"]["p50_ms"]),
            row("/metrics p99, sequential, gzip", bl["sequential_gzip"]["p99_ms"], al["sequential_gzip"]["p99_ms"]),
            row("/metrics p50 of the scrapes every 15 s (each after a new sample)", bw["scrape"].get("p50_ms", 0.0),
                aw["scrape"].get("p50_ms", 0.0)),
            row(f"/metrics p50, {al[conc]['scrapers']} concurrent scrapers", bl[conc]["p50_ms"], al[conc]["p50_ms"]),
            row(f"/metrics p99, {al[conc]['scrapers']} concurrent scrapers", bl[conc]["p99_ms"], al[conc]["p99_ms"]),
            row("scrapes per second with the concurrent scrapers", bl[conc]["scrapes_per_second"],
                al[conc]["scrapes_per_second"], lambda v: f"{v:,.0f}"),
            row("CPU seconds per hour at 15 s", bw["cpu_seconds_per_hour"], aw["cpu_seconds_per_hour"],
                lambda v: f"{v:,.1f} s"),
            row(f"resident memory at the end of the window ({before['window']['seconds'] / 60:.0f} / "
                f"{after['window']['seconds'] / 60:.0f} minutes)", bw["rss_bytes"], aw["rss_bytes"],
                lambda v: f"{v / 2**20:,.1f} MiB"),
            row("database time per collection cycle (the same queries: the difference is the runs' conditions)",
                bw["db_ms_per_cycle"], aw["db_ms_per_cycle"]),
            "",
            f"Load average at the start of the two runs: {before.get('load_at_start', float('nan')):.2f} and "
            f"{after.get('load_at_start', float('nan')):.2f}.",
            "",
        ]
    return out


_INSIGHT_WORK = (
    ("plans_top", "a plans refresh of the top {max_statements} statements (every 5 minutes)"),
    ("advice_top", "the index advice from their plans (HypoPG)"),
    ("waits_pg_stat_activity", "one look at pg_stat_activity (every second)"),
    ("waits_pg_wait_sampling", "one read of pg_wait_sampling's profile (every sampling interval)"),
    ("plans_all", "for scale: a plans refresh of all {statements:,} statements"),
    ("sample", "the sampling cost: one sample by pgperf's sampler"),
)
_INTERVAL_NAMES = {"budget_15s": "15 s (the budget's)", "development": "10 s (development)",
                   "production": "60 s (production)", "analytics": "120 s (analytics)"}


def render_insight(ins: dict[str, Any], compare: dict[str, Any] | None) -> list[str]:
    """Query insight's section: each piece of work, then its cost per second at the default
    intervals against the sampling cost per second at each sampling interval."""
    out = [
        "## Query insight",
        "",
        f"PostgreSQL 15 with {ins['pg_stat_statements_entries']:,} statements in pg_stat_statements over "
        f"{max(1, ins['statements'] // 10)} tables, {ins['active_sessions']} active sessions while the waits are "
        f"read, HypoPG {'created' if ins['hypopg'] else 'not installed'}, pg_wait_sampling preloaded "
        "(bench/insight_bench.py). Database time is what pg_stat_statements records for the role doing the work "
        "(as for the side-by-side comparison above); database CPU the CPU time of its backend; pgperf CPU that "
        "of the thread doing it. Medians per run.",
        "",
        "| work | wall | database time | database CPU | pgperf CPU |",
        "|---|---|---|---|---|",
    ]
    for key, label in _INSIGHT_WORK:
        r = ins[key]
        out.append(f"| {label.format(**ins)} | {_ms(r['wall_ms'])} | {_ms(r['db_time_ms'])} | {_ms(r['db_cpu_ms'])} | "
                   f"{_ms(r['pgperf_cpu_ms'])} |")
    out += [
        "",
        "Per second, insight at its default intervals (four looks at pg_stat_activity per sampling interval, at most "
        "one a second, or pg_wait_sampling read once per sampling interval; plans and advice every 80 sampling "
        "intervals, at least 5 minutes apart) against the sampling cost per second "
        "at each sampling interval, as a ratio (target: under 0.1):",
        "",
        "| sampling every | database time: sampling | insight (pg_stat_activity / pg_wait_sampling) | "
        "pgperf CPU: sampling | insight (pg_stat_activity / pg_wait_sampling) |",
        "|---|---|---|---|---|",
    ]
    met = total = 0
    for name, label in _INTERVAL_NAMES.items():
        cells = []
        for kind in ("db_time_ms", "pgperf_cpu_ms"):
            sampling = ins[f"sampling_{kind}_per_second"][name]
            mine = ins[f"insight_{kind}_per_second"][name]
            shown = []
            for source in ("pg_stat_activity", "pg_wait_sampling"):
                ratio = mine[source] / sampling if sampling else float("inf")
                met, total = met + (ratio < 0.1), total + 1
                shown.append(f"{mine[source]:.3f} ms ({ratio:.3f}×{' ✓' if ratio < 0.1 else ''})")
            cells += [f"{sampling:.3f} ms", " / ".join(shown)]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    if compare:
        win, seconds = compare["window"]["pgperf"], float(str(compare.get("interval", "15s")).rstrip("s"))
        db, cpu = win["db_ms_per_cycle"] / seconds, win["cpu_seconds_per_hour"] / 3.6
        mine_db = ins["insight_db_time_ms_per_second"]["budget_15s"]
        mine_cpu = ins["insight_pgperf_cpu_ms_per_second"]["budget_15s"]
        out += ["", f"Against the side-by-side comparison's sampling above (1,000 tables, pgbench running, every "
                    f"{seconds:g} s: {db:.3f} ms of database time and {cpu:.3f} ms of pgperf CPU per second), insight "
                    f"costs {mine_db['pg_stat_activity'] / db:.2f}× / {mine_db['pg_wait_sampling'] / db:.2f}× of the "
                    f"database time and {mine_cpu['pg_stat_activity'] / cpu:.2f}× / "
                    f"{mine_cpu['pg_wait_sampling'] / cpu:.2f}× of the CPU (pg_stat_activity / pg_wait_sampling)."]
    out += ["", f"Under a tenth (✓) in {met} of {total} cases. A look at pg_stat_activity and a plans refresh cost "
                "the same whatever the sampling interval, so both are scheduled in sampling intervals rather than "
                "seconds: with a fixed period (one look a second, a refresh every 5 minutes, the defaults before) "
                "insight cost 0.11× to 0.89× the sampling's database time and 0.22× to 2.6× its CPU at the profiles' "
                "intervals. `insight.waits.interval` and `insight.plans.interval` set a fixed period instead.", ""]
    return out


def fleet_checks(fleet: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The fleet targets: (target, measured, met)."""
    out = []
    first = fleet["runs"][0]
    at_5 = next((r for r in fleet["runs"] if r["targets"] == 20 and r["interval_s"] == 5), None)
    if at_5 is not None:
        out.append(("20 targets at 5 s under 10 % of one core", f"{at_5['cpu_share_percent']:.1f} %",
                    at_5["cpu_share_percent"] < 10))
    stop = first.get("stop")
    if stop:
        limit_ms = first["interval_s"] * 100  # a tenth of the interval
        late = stop["others_lateness"]["p99_ms"]
        on_time = (stop["others_overruns"] == 0 and stop["others_samples_down"] == 0 and late < limit_ms
                   and stop["stopped_samples"] > 0 and stop["stopped_samples_up"] == 0)
        out.append((f"stopping {len(stop['stopped'])} of {first['targets']} clusters leaves every other target's "
                    "sampling on time (no overrun, p99 lateness under a tenth of the interval)",
                    f"{stop['others_overruns']:.0f} overruns, p99 lateness {late:,.1f} ms of the others "
                    f"({stop['others_samples']} samples); the stopped ones' {stop['stopped_samples']} samples all "
                    f"down: {'yes' if stop['stopped_samples_up'] == 0 else 'no'}", on_time))
    one = fleet.get("one_target")
    if one:
        rss = one["no_reports"]["rss_bytes"] / 2**20
        out.append(("one target's resident memory at most 50 MiB (no scheduled reports)",
                    f"{rss:.1f} MiB; {one['reports']['rss_bytes'] / 2**20:.1f} MiB with daily and weekly reports",
                    rss <= 50))
    return out


def render_fleet(fleet: dict[str, Any]) -> list[str]:
    out = [
        "## Many targets in one process",
        "",
        f"{fleet['clusters']} PostgreSQL {fleet['postgres']} clusters on this machine (`shared_buffers` "
        f"{fleet['cluster_settings']['shared_buffers']}, `max_connections` {fleet['cluster_settings']['max_connections']}; "
        "copies of one initdb), pgbench on each monitored one (1 client, 2 transactions per second), and one "
        "`pgperf serve` (production profile, no store) with every cluster as a target, `/metrics` scraped every "
        "15 s. CPU is the pgperf process's user + system time over the window, as a share of one core; memory "
        "its resident set at the end; lateness how long after its scheduled time each sample started "
        "(`pgperf_sampling_lateness_seconds` of every sample the scrapes saw).",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for text, measured, met in fleet_checks(fleet):
        out.append(f"| {text} | {measured} | {'yes' if met else '**no**'} |")
    out += [
        "",
        "| targets | sampling interval | window | CPU, share of one core | resident memory | threads | lateness p50 / p99 / max "
        "| overruns | samples seen |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in fleet["runs"]:
        late = r["lateness"]
        out.append(f"| {r['targets']} | {r['interval_s']:g} s | {r['window_s']:.0f} s | {r['cpu_share_percent']:.1f} % | "
                   f"{r['rss_bytes'] / 2**20:.1f} MiB | {r['threads']} | {late['p50_ms']:,.1f} / {late['p99_ms']:,.1f} / "
                   f"{late['max_ms']:,.1f} ms | {r['overruns']:.0f} | {late['samples']:,} |")
    one = fleet.get("one_target")
    out += [
        "",
        "What was removed that grew with the number of targets: every sample of any target rendered and "
        "compressed the exposition of all targets (the work per interval grew with the square of the number of "
        "targets; a 20-target process at 5 s spent 45 % of a core, most of it there). Each target's families are "
        "now rendered at most once per sample of that target, by the first scrape after it, and the scrape joins "
        "them; samples are spread over the interval (the golden-ratio sequence) instead of all starting together; "
        "each target's connection pool keeps one background worker thread instead of three.",
        "",
    ]
    if one:
        out += [
            f"One target with its store, sampling every 5 s, after {one['seconds']:.0f} s: "
            f"{one['no_reports']['rss_bytes'] / 2**20:.1f} MiB without scheduled reports, "
            f"{one['reports']['rss_bytes'] / 2**20:.1f} MiB with the daily and weekly reports. About 46 MiB of it "
            "is the interpreter and the libraries every sample needs (measured by importing them in order: Python "
            "12.5 MiB, psycopg with its own libpq and OpenSSL, which imports asyncio and ssl, 22 MiB, pydantic 5, "
            "prometheus-client 3, werkzeug 3), so 50 MiB is not within reach of lazy imports alone.",
            "",
        ]
    return out


def _reports_before(results: dict[str, Any]) -> list[str]:
    """The same report measured with the code before forecasts and seasonal baselines, when the
    results hold it (``reports_before``: reports_bench.report_over_days run from that commit)."""
    before, after = results.get("reports_before"), results.get("reports")
    if not before or not after:
        return []
    month = after["report_seconds_median"] / before["report_seconds_median"]
    day = after["daily_report_seconds_median"] / before["daily_report_seconds_median"]
    return [f"| the same reports before forecasts and seasonal baselines (commit {before.get('commit', '?')}, "
            f"same machine): 30 days / the last day | {before['report_seconds_median']:.2f} s / "
            f"{before['daily_report_seconds_median']:.2f} s ({month:.2f}× / {day:.2f}× now) | — |"]


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [
        "# pgperf benchmarks",
        "",
        "<!-- Generated by `make bench` (bench/harness.py); do not edit by hand. -->",
        "",
        "Speed and size targets are measured here, never asserted in timed tests. `make bench` "
        "rebuilds everything on throwaway PostgreSQL clusters and rewrites this file; "
        "`python bench/harness.py --quick` runs the same code with tiny sizes (CI does, as a smoke test).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, {m['os']}, "
        f"Python {m['python']}; run on {m['date']}{' (quick mode: figures not meaningful)' if results['quick'] else ''}"
        + (f", in {results['seconds'] / 60:.1f} minutes." if results.get("seconds") else "."),
        "",
    ]
    if results.get("compare"):
        out += render_budget(results)
        out += render_compare(results["compare"], m)
        out += render_optimizations(results)
    store = results.get("store")
    if store:
        w, s = store["write"], store["size"]
        out += [
            "## Sample store",
            "",
            f"PostgreSQL {store['postgres']}, synthetic statements with realistic text lengths, written by "
            "pgperf's writer (one transaction per sample, COPY).",
            "",
            "| figure | value | target |",
            "|---|---|---|",
            f"| time to store one sample with {w['statements']:,} active statements (median) | "
            f"{w['p50_ms']:.0f} ms (max {w['max_ms']:.0f} ms) | < 100 ms |",
            f"| store size per day, {s['statements']:,} active statements sampled every {s['interval_s']:.0f} s | "
            f"{_mib(s['bytes_per_day'])} ({s['rows']:,} statement samples) | — |",
            f"| bytes per stored statement sample (table, indexes, statements and texts) | "
            f"{s['bytes_per_row']:.0f} bytes | at most 250 |",
        ]
        b = store.get("size_before")
        if b:
            out += [
                f"| the same day before migration 005 (text and names in every row) | {_mib(b['bytes_per_day'])}, "
                f"{b['bytes_per_row']:.0f} bytes per statement sample | — |",
                f"| size after / before | {s['bytes_per_day'] / b['bytes_per_day']:.2f}× per day, "
                f"{s['bytes_per_row'] / b['bytes_per_row']:.2f}× per statement sample | — |",
            ]
        r = store.get("retention")
        if r:
            out.append(
                f"| retention run over {r['days']} days of one-minute samples ({r['partitions']} daily partitions, "
                f"{r['rows']:,} rows), keeping {r['query_days']} days of statements and {r['resource_days']} of "
                f"resources | {r['seconds'] * 1000:,.0f} ms ({r['dropped']} partitions dropped) | — |")
        out += [
            "",
            "The size scales with the number of statements that actually ran in each interval (only those get a "
            "row) and is capped per sample by `store.max_query_rows`; retention drops whole days. Since migration 005 "
            "a statement sample is an integer statement id, the time and the counters (`query_samples`); the "
            "statement's target, query id, database and user are stored once (`query_statements`), its text once "
            "per query id (`statement_texts`); `query_performance_metrics` is a view with the columns it had. "
            "The per-day size includes the day's resource rows; bytes per statement sample count the statement "
            "samples' partition with its indexes plus the statements and texts tables, over the day's samples.",
            "",
        ]
    rep = results.get("reports")
    if rep:
        missing = rep["represented_query_rows"] - rep["raw_query_rows"]
        per_row = store["size"]["bytes_per_row"] if store else 250.0
        out += [
            "## Reports",
            "",
            f"PostgreSQL {rep['postgres']}. A report over {rep['days']} days of samples every {rep['interval_s']} s with "
            f"{rep['statements']:,} active statements ({rep['represented_query_rows']:,} statement rows and "
            f"{rep['resource_rows']:,} resource rows), generated through `ReportService` with every part "
            "(statements, resources, charts, alerts, anomalies of every statement against its own baseline, live catalog "
            "facts). Ten statements spike in one sample, so that the anomaly detector does all of its work.",
            "",
            "| figure | value | target |",
            "|---|---|---|",
            f"| report over {rep['days']} days (median of {rep.get('runs', 3)} runs) | {rep['report_seconds_median']:.2f} s "
            f"(max {rep['report_seconds_max']:.2f} s) | < 10 s |",
            f"| report over the last day | {rep['daily_report_seconds_median']:.2f} s | — |",
            f"| hourly rollup by the store writer's maintenance, per hour of samples | "
            f"{rep['rollup_seconds_per_hour'] * 1000:.0f} ms ({rep['rollup_hours']} hours rolled) | — |",
            f"| rows stored: hourly rollups / raw statement rows (the last day) | {rep['hourly_rows']:,} / "
            f"{rep['raw_query_rows']:,} | — |",
            f"| benchmark store size | {_mib(rep['store_bytes'])} | — |",
            f"| anomalies found / recommendations | {rep['anomalies']} / {rep['recommendations']} | — |",
            *([f"| of each report: its forecasts alone ({rep['forecasts']} series from 30 days of history, "
               f"{rep['forecasts_dated']} dated; `ReportService.forecasts`, median) | "
               f"{rep['forecast_seconds_median']:.2f} s | — |"] if "forecast_seconds_median" in rep else []),
            *_reports_before(results),
            "",
            "How the data is made (bench/reports_bench.py, in SQL with generate_series): every resource sample of "
            "the whole period and every statement sample of the last day are inserted as raw rows; the last day is "
            "rolled up into hours by pgperf's own `roll_up()`. For the days before, the hourly rows are inserted "
            "directly: they are what `roll_up()` makes of those days and all a report reads of them. Their raw rows "
            f"(~{missing / 1e6:,.0f} million, ~{per_row:.0f} bytes each with indexes) are not generated: that alone "
            f"would take far longer than this benchmark's budget and ~{missing * per_row / 1e9:,.0f} GB of disk, and "
            "a report does not read them. The report's cost therefore grows with the number of "
            "statement-hours (rollup rows) plus the raw rows of the hours not yet rolled up (at most about two), "
            "not with the number of samples.",
            "",
        ]
    ins = results.get("insight")
    if ins:
        out += render_insight(ins, results.get("compare"))
    if results.get("memory"):
        out += memory_bench.render(results["memory"])
    if results.get("fleet"):
        out += render_fleet(results["fleet"])
    if results.get("forecast"):
        out += forecast_backtest.render(results["forecast"])
    soak = results.get("soak")
    if soak:
        out += [
            "## Soak",
            "",
            f"`make soak`: pgperf sampling every {soak['interval']} for {soak['minutes']:g} minutes under pgbench "
            "(4 clients, 200 transactions/s), scraped every 15 s, storing its samples in the monitored database. "
            "Figures from the end of a six-minute warm-up (caches and pools settle; the report scheduler's first "
            "check opens a connection that closes after its idle time) to the end. Backend memory is measured as "
            "PostgreSQL accounts it (memory contexts) and as private pages outside the shared memory segment; "
            "USS would count the shared buffers only one backend touched.",
            "",
            "| figure | start | end | change | spread (max − min) / median | target |",
            "|---|---|---|---|---|---|",
            f"| exporter resident memory | {soak['rss_start_mib']:.1f} MiB | {soak['rss_end_mib']:.1f} MiB | "
            f"{soak['rss_growth_percent']:+.1f} % | {soak['rss_spread_percent']:.1f} % | flat within 10 % |",
            f"| pgperf's backends: PostgreSQL memory contexts | {soak['backend_contexts_start_mib']:.2f} MiB | "
            f"{soak['backend_contexts_end_mib']:.2f} MiB | {soak['backend_contexts_growth_percent']:+.1f} % | "
            f"{soak['backend_contexts_spread_percent']:.1f} % | flat within 10 % |",
            f"| pgperf's backends: private memory outside shared memory | {soak['backend_private_start_mib']:.1f} MiB | "
            f"{soak['backend_private_end_mib']:.1f} MiB | {soak['backend_private_growth_percent']:+.1f} % | "
            f"{soak['backend_private_spread_percent']:.1f} % | flat within 10 % |",
            f"| pgperf connections | {soak['connections_min']} | {soak['connections_max']} | — | — | constant |",
            f"| exporter CPU at 1 s sampling | — | — | {soak['cpu_seconds_per_hour']:.0f} CPU-s per hour | — | — |",
            "",
        ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--only", help="comma-separated sections: " + ", ".join(ALL_SECTIONS))
    parser.add_argument("--output", default=str(HERE / "README.md"), help="README to write")
    parser.add_argument("--results", default=str(HERE / "results.json"), help="JSON results to write")
    parser.add_argument("--compare-as", default="compare", metavar="KEY",
                        help="key for the compare section's results (compare_before: the figures before "
                             "the optimizations, run with PYTHONPATH at the older exporter/)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the README from the results file")
    args = parser.parse_args(argv)
    if args.render_only:
        Path(args.output).write_text(render(json.loads(Path(args.results).read_text())))
        return 0
    chosen = args.only.split(",") if args.only else list(ALL_SECTIONS)
    unknown = sorted(set(chosen) - set(ALL_SECTIONS))
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}; choose from {', '.join(ALL_SECTIONS)}")
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    previous = Path(args.results)
    if previous.exists():
        # Sections not run now (soak, the figures before the optimizations, or those left
        # out with --only) keep their last results.
        produced = {args.compare_as if name == "compare" else name for name in chosen}
        kept = json.loads(previous.read_text())
        results = {**{k: v for k, v in kept.items() if k not in produced}, **results}
    begun = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pgperf-bench-") as tmp, contextlib.ExitStack() as stack:
        comparison = None
        latency: dict[str, Any] = {}
        if "compare" in chosen:
            print("bench: compare: database, then pgperf and postgres_exporter for the 10-minute window ...", flush=True)
            comparison = stack.enter_context(exporters_bench.comparison(args.quick, Path(tmp)))
            comparison.start()
            print(f"bench: compare: window started ({comparison.facts['statements_entries']} statements); "
                  "latency ...", flush=True)
            latency = comparison.latency()
            print(f"bench: compare: latency done at {time.monotonic() - begun:.0f}s", flush=True)

        def run(name: str) -> None:
            started = time.monotonic()
            print(f"bench: {name} ...", flush=True)
            results[name] = SECTIONS[name](args, Path(tmp))
            print(f"bench: {name} done in {time.monotonic() - started:.0f}s: {json.dumps(results[name])}", flush=True)

        for name in chosen:
            if name != "compare" and name not in AFTER_COMPARE:
                run(name)
        if comparison is not None:
            assert comparison.window is not None
            comparison.quiet()
            print(f"bench: compare: {comparison.window.remaining():.0f}s left in the window ...", flush=True)
            results[args.compare_as] = {**comparison.finish(), "latency": latency,
                                        "load_at_start": results["machine"]["load_at_start"],
                                        "load_at_end": round(os.getloadavg()[0], 2)}
            print(f"bench: compare done: {json.dumps(results[args.compare_as]['window'])}", flush=True)
            stack.close()  # its cluster too, before the sections that load the machine
        for name in chosen:
            if name in AFTER_COMPARE:
                run(name)
    results["seconds"] = round(time.monotonic() - begun)
    Path(args.results).write_text(json.dumps(results, indent=1) + "\n")
    Path(args.output).write_text(render(results))
    print(f"bench: wrote {args.output} ({results['seconds']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
