"""Rule-based recommendations, each with the numbers that triggered it.

Every rule reads the assembled report (summary, query analysis, resources, alerts) and,
for the rules marked *catalog*, the live facts of ``catalog.py``; a rule that lacks its
inputs (no host metrics, no catalog) stays silent rather than guessing. The thresholds
are the profile's (``thresholds.*``); the fixed limits below are the ones a DBA would
apply by default and are written next to the rule that uses them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

from ..models import Recommendation
from .capacity import advise
from .catalog import CatalogFacts
from .forecasting import forecast_of
from .formatting import clip
from .model import AdviceEntry, Report, ReportSettings, Statement, iso

__all__ = ["RULES", "recommend"]

MiB = 1024 * 1024
# A table is "large" for the sequential-scan rule from this many live rows...
SEQ_SCAN_MIN_ROWS = 10_000
# ...when its scans read at least this many rows each on average, and outnumber index scans.
SEQ_SCAN_MIN_ROWS_PER_SCAN = 1_000
SEQ_SCAN_MIN_SCANS = 10
UNUSED_INDEX_MIN_BYTES = 1 * MiB
DEAD_TUPLES_MIN = 1_000
TEMP_BYTES_MIN = 1 * MiB
# Alert fatigue: this many firings in the window, or fewer that mostly resolved within 10 minutes.
ALERT_FATIGUE_COUNT = 10
ALERT_FLAP_COUNT = 5
CONCENTRATION_PERCENT = 30.0
CONCENTRATION_MIN_MS = 1_000.0
ERROR_RATE_MIN_TRANSACTIONS = 100

Rule = Callable[[Report, ReportSettings, CatalogFacts | None], list[Recommendation]]


def _size(n: float | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"  # pragma: no cover - the loop always returns


def _rows(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1_000_000 else f"{n:,}"


def slow_queries(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    slow = report.queries.slow_statements
    if not slow.count:
        return []
    limit = s.thresholds.slow_query_time_ms
    worst = (slow.statements[0].mean_time_ms or 0) if slow.statements else 0
    severity = "high" if slow.count >= 5 or worst >= 5 * limit else "medium"
    noun = "query" if slow.count == 1 else "queries"
    return [Recommendation(
        "slow_queries",
        f"Consider optimizing {slow.count} slow {noun} with average execution time > {limit:g}ms "
        f"(slowest: {worst:,.2f}ms on average)",
        severity,
        {"threshold_ms": limit, "count": slow.count, "statements": [x.model_dump() for x in slow.statements[:5]]},
    )]


def cache_hit_ratio(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    summary = report.summary
    ratio = summary.cache_hit_ratio_percent
    minimum = s.thresholds.cache_hit_ratio_min
    source = "pg_stat_database"
    blocks = summary.cache.blocks_hit + summary.cache.blocks_read
    if ratio is None or blocks < 1000:
        ratio, source = summary.cache.statements_hit_ratio_percent, "pg_stat_statements"
        blocks = summary.cache.statements_blocks
    if ratio is None or blocks < 1000 or ratio >= minimum:
        return []
    evidence: dict[str, Any] = {"cache_hit_ratio_percent": ratio, "target_percent": minimum,
                                "source": source, "blocks": blocks}
    advice = "Consider increasing shared_buffers"
    if catalog is not None:
        shared, effective = catalog.setting_bytes("shared_buffers"), catalog.setting_bytes("effective_cache_size")
        evidence.update(shared_buffers_bytes=shared, effective_cache_size_bytes=effective)
        advice += f" (now {_size(shared)}; effective_cache_size {_size(effective)})"
        memory = report.resources.memory
        if memory.avg_bytes and memory.avg_percent:
            total = memory.avg_bytes / (memory.avg_percent / 100)
            evidence["host_memory_bytes"] = round(total)
            if shared is not None and shared < 0.25 * total:
                advice += f"; about 25% of the host's {_size(total)} is the usual starting point"
    severity = "high" if ratio < minimum - 10 else "medium"
    return [Recommendation("cache_hit_ratio", f"Cache hit ratio is {ratio:.2f}% (target {minimum:g}%). "
                           f"{advice}", severity, evidence)]


def cpu_sustained(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    cpu = report.resources.cpu
    limit = s.thresholds.cpu_usage_max_percent
    if not cpu.samples or cpu.avg_percent is None:
        return []
    share = 100.0 * cpu.samples_over_threshold / cpu.samples
    if cpu.avg_percent < limit and share < 25:
        return []
    top = report.queries.slowest_by_total[:3]
    return [Recommendation(
        "cpu_sustained",
        f"High average CPU usage ({cpu.avg_percent:.2f}%, above {limit:g}% in {share:.0f}% of samples). "
        "Consider query optimization (start with the statements taking most time) or scaling up",
        "high" if cpu.avg_percent >= limit else "medium",
        {"avg_percent": cpu.avg_percent, "p95_percent": cpu.p95_percent, "max_percent": cpu.max_percent,
         "threshold_percent": limit, "share_of_samples_over_percent": round(share, 1),
         "top_statements_by_total_time": [{"query_id": q.query_id, "total_time_ms": q.total_time_ms} for q in top]},
    )]


def memory_high(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    memory = report.resources.memory
    limit = s.thresholds.memory_usage_max_percent
    if not memory.samples or memory.avg_percent is None or memory.avg_percent < limit:
        return []
    return [Recommendation(
        "memory_high",
        f"High average memory usage ({memory.avg_percent:.2f}%, threshold {limit:g}%). "
        "Check work_mem × connections and other processes on the host, or add memory",
        "medium",
        {"avg_percent": memory.avg_percent, "max_percent": memory.max_percent, "threshold_percent": limit},
    )]


def connection_utilization(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    conn = report.resources.connections
    t = s.thresholds
    peak = conn.utilization_max_percent
    if peak is None or peak < t.connection_utilization_warning_percent:
        return []
    busiest = max(conn.by_hour, key=lambda h: (h.utilization_max_percent or 0, h.utilization_avg_percent or 0),
                  default=None)
    when = f" around {busiest.hour:02d}:00 UTC" if busiest else ""
    return [Recommendation(
        "connection_utilization",
        f"Connection utilization peaked at {peak:.2f}% of max_connections ({conn.max_connections}){when}. "
        "Put a connection pooler (PgBouncer) in front of the database or raise max_connections",
        "high" if peak >= t.connection_utilization_critical_percent else "medium",
        {"utilization_max_percent": peak, "utilization_p95_percent": conn.utilization_p95_percent,
         "utilization_avg_percent": conn.utilization_avg_percent, "max_connections": conn.max_connections,
         "connections_max": conn.max, "samples_over_warning": conn.samples_over_warning,
         "warning_percent": t.connection_utilization_warning_percent,
         "busiest_hour_utc": busiest.hour if busiest else None},
    )]


def _listed_statements_on(report: Report, table: str) -> list[Statement]:
    """The listed statements whose main table is *table* (either spelling), each once."""
    short = table.split(".", 1)[-1]
    seen: dict[str, Statement] = {}
    q = report.queries
    for listed in (q.slowest_by_total, q.slowest_by_mean, q.most_frequent):
        for statement in listed:
            if statement.table in (table, short):
                seen.setdefault(statement.query_id, statement)
    return list(seen.values())


#: Said of an advice whose index would cost more to maintain than it saves (query insight
#: weighs its read saving against its write cost): it is never recommended.
WRITE_HEAVY = "it would cost more to maintain than it saves at the current rates"


def _advice_order(a: AdviceEntry) -> tuple[bool, bool, bool, float, float, str]:
    """Write-heavy advice last; then verified first; what pays for its upkeep first, by net
    benefit; then by cost saved."""
    net = (a.saving_per_second - a.maintenance_per_second
           if a.write_verdict != "unknown" and a.saving_per_second is not None and a.maintenance_per_second is not None
           else 0.0)
    return (a.write_verdict == "write_heavy", a.verified != "hypopg", a.write_verdict != "pays", -net,
            -(a.cost_before - (a.cost_after or 0.0)), a.sql)


def _advice_for(report: Report, table: str) -> list[AdviceEntry]:
    """Query insight's open advice on *table* (either spelling), verified first, write-heavy last."""
    short = table.split(".", 1)[-1]
    found = [a for a in report.queries.index_advice
             if a.status == "open" and (a.table == table or a.table.split(".", 1)[-1] == short)]
    return sorted(found, key=_advice_order)


def _advice_evidence(a: AdviceEntry) -> dict[str, Any]:
    return {"columns": a.columns, "sql": a.sql, "verified": a.verified, "statements": a.query_ids,
            "cost_before": a.cost_before, "cost_after": a.cost_after, "write_verdict": a.write_verdict}


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}" if abs(value) >= 1 else f"{value:.2g}"


def seq_scans(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    """Large tables read mostly by sequential scans. The counters are pg_stat_user_tables'
    since the statistics were reset, where each process of a parallel scan (the leader and
    every worker) counts one scan: the sentence says so, and gives the calls of the
    table's statements in the window beside it rather than letting scans pass for calls.
    Index candidates are query insight's advice (from the plans, verified by the planner
    where HypoPG is installed), never guessed from statement texts."""
    if catalog is None:
        return []
    found: list[dict[str, Any]] = []
    for t in catalog.tables:
        if (t.n_live_tup >= SEQ_SCAN_MIN_ROWS and t.seq_scan >= SEQ_SCAN_MIN_SCANS and t.seq_scan > t.idx_scan
                and t.seq_tup_read / t.seq_scan >= SEQ_SCAN_MIN_ROWS_PER_SCAN):
            statements = _listed_statements_on(report, t.name)
            found.append({"table": t.name, "live_rows": t.n_live_tup, "size_bytes": t.size_bytes, "seq_scan": t.seq_scan,
                          "seq_tup_read": t.seq_tup_read, "rows_per_seq_scan": round(t.seq_tup_read / t.seq_scan),
                          "idx_scan": t.idx_scan, "statements": [q.query_id for q in statements][:5],
                          # INSERTs name the table without reading it
                          "statement_calls": sum(q.calls for q in statements if q.statement_type != "INSERT"),
                          "index_candidates": [_advice_evidence(a) for a in _advice_for(report, t.name)[:3]]})
    if not found:
        return []
    found.sort(key=lambda f: (-f["seq_tup_read"], f["table"]))
    first = found[0]
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    named = [f"{f['table']} ({', '.join(f['index_candidates'][0]['columns'])}, "
             f"{'verified by the planner' if f['index_candidates'][0]['verified'] == 'hypopg' else 'not verified'}"
             f"{'; but ' + WRITE_HEAVY if f['index_candidates'][0]['write_verdict'] == 'write_heavy' else ''})"
             for f in found[:3] if f["index_candidates"]]
    candidates = ("Index advice from the statements' plans: " + "; ".join(named) if named
                  else "Query insight has no index advice for them: their statements' plans show no scan an index "
                       "would serve, or were not captured yet")
    since = f" since {iso(catalog.stats_reset)}" if catalog.stats_reset else " since the statistics were reset"
    calls = (f"; the listed statements reading it ran {first['statement_calls']:,} times in the window"
             if first["statement_calls"] else "")
    return [Recommendation(
        "seq_scans_large_tables",
        f"Sequential scans on large tables: {first['table']} ({_rows(first['live_rows'])} rows) had "
        f"{first['seq_scan']:,} sequential scans{since} (each parallel worker's share counts as one scan), "
        f"reading {_rows(first['rows_per_seq_scan'])} rows per scan, against {first['idx_scan']:,} index scans"
        f"{calls}{more}. {candidates}",
        "high" if first["seq_tup_read"] >= 100 * first["live_rows"] else "medium",
        {"tables": found[:5], "counters_since": iso(catalog.stats_reset),
         "scans_count": "pg_stat_user_tables.seq_scan: the leader and each parallel worker count one scan each"},
    )]


def index_advice(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    """Query insight's open index advice: proven by the planner (HypoPG), or heuristic where
    HypoPG is not installed (said so, and lower). Advice whose index would cost more to
    maintain than it saves (``write_heavy``) is never recommended: it is only counted."""
    heavy = [a for a in report.queries.index_advice if a.status == "open" and a.write_verdict == "write_heavy"]
    advice = [a for a in report.queries.index_advice if a.status == "open" and a.write_verdict != "write_heavy"]
    if not advice:
        return []
    advice.sort(key=_advice_order)
    first = advice[0]
    listed = {q.query_id for q in (*report.queries.slowest_by_total, *report.queries.slowest_by_mean)}
    if first.verified == "hypopg" and first.cost_after is not None:
        proof = (f"the planner's cost of {'its statement' if len(first.query_ids) == 1 else 'its statements'} falls "
                 f"from {first.cost_before:,.2f} to {first.cost_after:,.2f} with it (tried as a hypothetical index "
                 "with HypoPG)")
        severity: Literal["high", "medium", "low"] = "high" if listed & set(first.query_ids) else "medium"
    else:
        proof = ("taken from the statements' plans, not verified (install HypoPG in the database to have the "
                 "planner verify it)")
        severity = "low"
    if first.write_verdict == "pays":
        writes = (f"; it pays for its upkeep at the current rates: it saves the reads about "
                  f"{_rate(first.saving_per_second)} planner cost units per second, maintaining it costs about "
                  f"{_rate(first.maintenance_per_second)}"
                  + (f" ({first.writes_per_second:,.2f} rows written per second)" if first.writes_per_second is not None
                     else ""))
    else:
        writes = (f"; {first.writes_per_second:,.2f} rows written per second on the table will maintain it"
                  if first.writes_per_second is not None else "")
    more = f" ({len(advice) - 1} more index advice: pgperf advise)" if len(advice) > 1 else ""
    if heavy:
        more += (f" ({len(heavy)} other index advice left out: "
                 f"{'it' if len(heavy) == 1 else 'each'} would cost more to maintain than it saves at the current rates)")
    return [Recommendation(
        "index_advice",
        f"Create an index on {first.table} ({', '.join(first.columns)}): {proof}{writes}. {first.sql}{more}",
        severity,
        {"advice": [a.model_dump(mode="json") for a in advice[:5]]},
    )]


def unused_indexes(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    if catalog is None:
        return []
    found = [i for i in catalog.unused_indexes if i.size_bytes >= UNUSED_INDEX_MIN_BYTES]
    if not found:
        return []
    total = sum(i.size_bytes for i in found)
    since = f" since the statistics were reset ({iso(catalog.stats_reset)})" if catalog.stats_reset else ""
    names = ", ".join(f"{i.schemaname}.{i.index_name}" for i in found[:3])
    return [Recommendation(
        "unused_indexes",
        f"{len(found)} index{'es' if len(found) > 1 else ''} never used{since}: {names}"
        f"{' ...' if len(found) > 3 else ''}. Dropping them saves {_size(total)} and write time "
        "(check replicas and rare jobs first)",
        "low",
        {"indexes": [{"index": f"{i.schemaname}.{i.index_name}", "table": f"{i.schemaname}.{i.table_name}",
                      "size_bytes": i.size_bytes, "idx_scan": i.idx_scan, "definition": i.definition} for i in found[:10]],
         "total_bytes": total, "counters_since": iso(catalog.stats_reset)},
    )]


def duplicate_indexes(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    if catalog is None or not catalog.duplicate_indexes:
        return []
    groups = catalog.duplicate_indexes
    first = groups[0]
    return [Recommendation(
        "duplicate_indexes",
        f"Duplicate indexes: {', '.join(first.indexes)} on {first.schemaname}.{first.table_name} are identical"
        f"{f' ({len(groups) - 1} more sets)' if len(groups) > 1 else ''}. Keep one (the constraint's, if any) and "
        "drop the others",
        "medium",
        {"sets": [{"table": f"{d.schemaname}.{d.table_name}", "indexes": list(d.indexes), "size_bytes": d.size_bytes}
                  for d in groups[:10]]},
    )]


def dead_tuples(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    if catalog is None:
        return []
    threshold = float(catalog.setting("autovacuum_vacuum_threshold") or 50)
    scale = float(catalog.setting("autovacuum_vacuum_scale_factor") or 0.2)
    found: list[dict[str, Any]] = []
    for t in catalog.tables:
        total = t.n_live_tup + t.n_dead_tup
        if t.n_dead_tup < DEAD_TUPLES_MIN or not total:
            continue
        share = 100.0 * t.n_dead_tup / total
        if share < s.thresholds.dead_tuple_max_percent:
            continue
        last = max((d for d in (t.last_autovacuum, t.last_vacuum) if d is not None), default=None)
        # Autovacuum should have run once n_dead_tup passed its trigger point.
        trigger = threshold + scale * t.n_live_tup
        lag = (catalog.read_at - last).total_seconds() / 3600 if last is not None else None
        found.append({"table": t.name, "dead_tuples": t.n_dead_tup, "live_tuples": t.n_live_tup,
                      "dead_percent": round(share, 1), "autovacuum_trigger": round(trigger),
                      "autovacuum_behind": t.n_dead_tup > trigger, "last_vacuum": iso(last),
                      "hours_since_vacuum": round(lag, 1) if lag is not None else None,
                      "autovacuum_count": t.autovacuum_count})
    if not found:
        return []
    found.sort(key=lambda f: (-f["dead_tuples"], f["table"]))
    first = found[0]
    when = (f"last vacuumed {first['hours_since_vacuum']:.1f} h ago" if first["hours_since_vacuum"] is not None
            else "never vacuumed")
    behind = " Autovacuum is behind: " if first["autovacuum_behind"] else " "
    return [Recommendation(
        "dead_tuples",
        f"Dead tuples: {first['table']} has {first['dead_percent']:.1f}% dead rows ({first['dead_tuples']:,}), {when}."
        f"{behind}lower autovacuum_vacuum_scale_factor for this table or raise autovacuum_max_workers / "
        "autovacuum_vacuum_cost_limit; check for long transactions holding back cleanup",
        "high" if first["dead_percent"] >= 2 * s.thresholds.dead_tuple_max_percent else "medium",
        {"tables": found[:5], "threshold_percent": s.thresholds.dead_tuple_max_percent,
         "autovacuum": catalog.setting("autovacuum"), "autovacuum_vacuum_threshold": threshold,
         "autovacuum_vacuum_scale_factor": scale},
    )]


def temp_files(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    temp_bytes = report.summary.temp_bytes or 0
    spilling = report.queries.spilling_to_disk
    statement_bytes = sum(q.temp_blocks_written for q in spilling) * 8192
    if max(temp_bytes, statement_bytes) < TEMP_BYTES_MIN:
        return []
    evidence: dict[str, Any] = {"temp_bytes": temp_bytes, "statements": [
        {"query_id": q.query_id, "temp_bytes": q.temp_blocks_written * 8192, "calls": q.calls} for q in spilling[:5]]}
    now = ""
    if catalog is not None:
        work_mem = catalog.setting_bytes("work_mem")
        evidence["work_mem_bytes"] = work_mem
        now = f" (now {_size(work_mem)})"
    return [Recommendation(
        "temp_files",
        f"Queries wrote {_size(max(temp_bytes, statement_bytes))} of temporary files: sorts and hashes spill to disk. "
        f"Raise work_mem{now} for the statements that spill (SET LOCAL work_mem or per role) or reduce what they sort",
        "medium" if max(temp_bytes, statement_bytes) >= 100 * MiB else "low",
        evidence,
    )]


def alert_fatigue(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    out = []
    for a in report.alerts.by_metric:
        flapping = a.count >= ALERT_FLAP_COUNT and a.resolved_within_10m * 2 >= a.count
        if a.count < ALERT_FATIGUE_COUNT and not flapping:
            continue
        why = f", {a.resolved_within_10m} of them resolved within 10 minutes" if a.resolved_within_10m else ""
        threshold = f" ({a.threshold:g})" if a.threshold is not None else ""
        out.append(Recommendation(
            "alert_fatigue",
            f"Alert {a.alertname} fired {a.count} times in the window{why}: raise its threshold{threshold} or "
            "lengthen its `for:` duration, or fix the cause, to avoid alert fatigue",
            "medium",
            a.model_dump(),
        ))
    return out


def error_rate(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    errors = report.summary.errors
    rate, limit = errors.error_rate_percent, s.thresholds.error_rate_max
    if rate is None or errors.commits + errors.rollbacks < ERROR_RATE_MIN_TRANSACTIONS or rate < limit:
        return []
    return [Recommendation(
        "error_rate",
        f"Error rate is {rate:.2f}% of transactions ({errors.rollbacks:,} rollbacks, {errors.deadlocks:,} deadlocks; "
        f"threshold {limit:g}%). Check the application's error log for failing statements and lock ordering",
        "high" if errors.deadlocks else "medium",
        {**errors.model_dump(), "threshold_percent": limit},
    )]


def _capacity_advice(report: Report, s: ReportSettings) -> list[Recommendation]:
    """capacity.advise over the report's forecasts; the database size's advice only without the
    disk's (both say that the same disk fills up)."""
    details = report.forecast_details if len(report.forecast_details) == len(report.forecasts) else \
        [None] * len(report.forecasts)
    forecasts = [forecast_of(e, d) for e, d in zip(report.forecasts, details, strict=True)]
    advice = advise(forecasts, within=timedelta(days=s.forecast.advise_within_days))
    if any(r.rule == "capacity_disk" for r in advice):
        advice = [r for r in advice if r.rule != "capacity_database_size"]
    return advice


def capacity(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    """Resource scaling from the forecasts (``capacity.py``): what to do before which date, for
    each limit plausibly reached within ``reports.forecast.advise_within_days``."""
    return _capacity_advice(report, s)


def disk_growth(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    """The disk used beyond the profile's threshold now, when no forecast dates it (the capacity
    rule does, with its date): one recommendation for the disk."""
    disk = report.resources.disk
    used, limit = disk.used_percent, s.thresholds.disk_usage_max_percent
    if used is None or used < limit or any(r.rule == "capacity_disk" for r in _capacity_advice(report, s)):
        return []
    outlook = (f"; growing {_size(disk.growth_bytes_per_day)}/day" if disk.growth_bytes_per_day is not None
               and disk.growth_bytes_per_day > 0 else "")
    return [Recommendation(
        "disk_growth",
        f"Disk space: disk {used:.1f}% used (threshold {limit:g}%){outlook}. Add space, archive or drop old data, "
        "or check for bloat",
        "high" if used >= 95 else "medium",
        {"used_percent": used, "used_bytes": disk.used_bytes, "total_bytes": disk.total_bytes,
         "growth_bytes_per_day": disk.growth_bytes_per_day, "growth_source": disk.growth_source,
         "days_until_full": disk.days_until_full, "threshold_percent": limit},
    )]


def time_concentration(report: Report, s: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    top = report.queries.slowest_by_total
    if not top:
        return []
    first = top[0]
    share = first.share_of_time_percent or 0
    if share < CONCENTRATION_PERCENT or first.total_time_ms < CONCENTRATION_MIN_MS:
        return []
    return [Recommendation(
        "time_concentration",
        f"One statement takes {share:.1f}% of all execution time ({first.total_time_ms / 1000:,.1f} s in "
        f"{first.calls:,} calls): optimizing it has the largest effect. Query: {clip(first.query_text)}",
        "medium",
        {"query_id": first.query_id, "share_of_time_percent": share, "total_time_ms": first.total_time_ms,
         "calls": first.calls, "mean_time_ms": first.mean_time_ms},
    )]


#: Every rule, in the order their recommendations are listed within a severity.
RULES: tuple[Rule, ...] = (
    slow_queries, cache_hit_ratio, cpu_sustained, memory_high, connection_utilization, index_advice, seq_scans,
    unused_indexes, duplicate_indexes, dead_tuples, temp_files, alert_fatigue, error_rate, capacity, disk_growth,
    time_concentration,
)
_SEVERITY = {"high": 0, "medium": 1, "low": 2}


def recommend(report: Report, settings: ReportSettings, catalog: CatalogFacts | None) -> list[Recommendation]:
    """Every rule's recommendations, most severe first (stable within a severity)."""
    found: list[tuple[int, int, Recommendation]] = []
    for order, rule in enumerate(RULES):
        for rec in rule(report, settings, catalog):
            found.append((_SEVERITY[rec.severity], order, rec))
    return [rec for _, _, rec in sorted(found, key=lambda item: (item[0], item[1]))]
