"""Anomaly detection: robust statistics of each series against its own baseline.

For every statement, the series is its mean time per sampling interval (windows whose
baseline spans at most six hours) or per hour (longer ones, read from the hourly rollups)
over the baseline period: the report's window plus the ``reports.baseline_days`` before
it, limited to the data stored. Its median and MAD (median absolute deviation) are the
baseline; the highest interval mean inside the window is the observation. It is an
anomaly when

* the robust z-score ``(observed - median) / (1.4826 * MAD)`` exceeds ``reports.anomaly_z``
  (3.5 by default, the usual cut-off for modified z-scores), the scale floored at 5 % of
  the median so that a perfectly steady statement does not flag every wobble, and
* the factor ``observed / median`` reaches the profile's ``thresholds.query_spike_factor``.
  Statements faster than a tenth of the slow-query threshold are not reported.

The median and MAD ignore the spike itself, which a mean and standard deviation would not.
CPU, memory and connection counts are treated the same way sample by sample, with an
absolute floor (20 CPU points, 10 memory points, 5 connections and a doubling) instead
of the factor, which means little for percentages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..models import Anomaly
from .model import ReportSettings
from .queries import AnomalyInputs

__all__ = ["detect", "statement_anomaly"]

# name -> (kind, label, unit, minimum rise over the median, scale floor)
_RESOURCES = {
    "cpu": ("cpu", "CPU usage", "%", 20.0, 1.0),
    "memory": ("memory", "Memory usage", "%", 10.0, 1.0),
    "connections": ("connections", "Connection count", "", 5.0, 1.0),
}


def _when(at: Any) -> datetime | None:
    if at is None:
        return None
    return at if isinstance(at, datetime) else datetime.fromisoformat(str(at))


def statement_anomaly(row: dict[str, Any], settings: ReportSettings, target: str | None, resolution: str) -> Anomaly:
    observed = float(row["observed"])
    baseline = float(row["baseline"])
    factor = float(row["factor"]) if row.get("factor") is not None else None
    bucket_total = float(row.get("bucket_total_time") or 0)
    spike = settings.thresholds.query_spike_factor
    # Impact: how slow the statement became, how far from its usual self, and how much
    # database time the spike cost.
    if observed >= settings.thresholds.slow_query_time_ms or (factor or 0) >= 5 * spike or bucket_total >= 60_000:
        impact = "high"
        advice = ("Investigate and optimize the slowest queries: EXPLAIN (ANALYZE, BUFFERS) this statement and look "
                  "for lock waits, a plan change or unusual parameters at that time")
    elif (factor or 0) >= 2 * spike or bucket_total >= 1_000:
        impact = "medium"
        advice = "Check this statement's plan and what else ran at that time (locks, I/O, batch jobs)"
    else:
        impact = "low"
        advice = "Keep an eye on this statement; a one-off spike of a fast statement is often a lock wait"
    shown_factor = f"{factor:.1f}x average" if factor is not None else "baseline 0"
    return Anomaly(
        kind="query_performance", subject=str(row["query_id"]),
        message=f"Query execution time spike detected: {observed:.2f}ms ({shown_factor})",
        observed=observed, baseline=baseline, factor=factor, score=float(row["score"]), impact=impact,
        recommendation=advice, at=_when(row.get("at")), target=target, query_text=row.get("query_text"),
        evidence={"baseline_median_ms": baseline, "baseline_mad_ms": float(row["mad"]), "baseline_points": row["points"],
                  "resolution": resolution, "calls_at_peak": row.get("bucket_calls"),
                  "total_time_at_peak_ms": round(bucket_total, 3), "datname": row.get("datname"),
                  "username": row.get("username")},
    )


def resource_anomaly(row: dict[str, Any], settings: ReportSettings, target: str | None, z_limit: float) -> Anomaly | None:
    kind, label, unit, rise, floor = _RESOURCES[row["name"]]
    observed, baseline, mad = float(row["observed"]), float(row["baseline"]), float(row["mad"])
    score = (observed - baseline) / max(1.4826 * mad, floor)
    if score <= z_limit or observed - baseline < rise:
        return None
    if kind == "connections" and observed < 2 * baseline:
        return None
    factor = round(observed / baseline, 1) if baseline > 0 else None
    t = settings.thresholds
    limit = {"cpu": t.cpu_usage_max_percent, "memory": t.memory_usage_max_percent}.get(kind)
    if (limit is not None and observed >= limit) or (factor or 0) >= 4:
        impact = "high"
    elif observed - baseline >= 2 * rise:
        impact = "medium"
    else:
        impact = "low"
    advice = {
        "cpu": "Find the statements that ran at that time (top by total time) and check for batch jobs, "
               "missing indexes or a plan change",
        "memory": "Check for large sorts and hashes (work_mem times connections) and for processes other than "
                  "PostgreSQL on the host",
        "connections": "Check for a connection leak or a traffic burst; a connection pooler (PgBouncer) absorbs bursts",
    }[kind]
    value = f"{observed:.2f}{unit}" if unit else f"{observed:.0f}"
    shown_factor = f"{factor:.1f}x average" if factor is not None else "baseline 0"
    return Anomaly(
        kind=kind, subject=row["name"], message=f"{label} spike detected: {value} ({shown_factor})",
        observed=observed, baseline=baseline, factor=factor, score=round(score, 1), impact=impact,
        recommendation=advice, at=_when(row.get("at")), target=target,
        evidence={"baseline_median": baseline, "baseline_mad": mad, "baseline_points": row["points"],
                  "resolution": "sample"},
    )


_ORDER = {"high": 0, "medium": 1, "low": 2}


def detect(inputs: AnomalyInputs, settings: ReportSettings, target: str | None) -> list[Anomaly]:
    """Anomalies from ``ReportQueries.anomaly_inputs``, most important first.

    Statements still faster than a tenth of the slow-query threshold are left out, as in
    the PgperfQueryTimeSpike rule: sub-millisecond statements vary tenfold with caching
    and lock waits, and such a "spike" costs nothing.
    """
    floor = settings.thresholds.slow_query_time_ms / 10
    found = [statement_anomaly(row, settings, target, inputs.resolution) for row in inputs.statements
             if float(row["observed"]) >= floor]
    for row in inputs.resources:
        anomaly = resource_anomaly(row, settings, target, settings.anomaly_z)
        if anomaly is not None:
            found.append(anomaly)
    return sorted(found, key=lambda a: (_ORDER[a.impact], -(a.factor or 0), a.kind, a.subject))
