"""Anomaly detection: robust statistics of each series against its own baseline.

The series are a statement's mean time per sampling interval (windows whose baseline
spans at most six hours) or per hour (longer ones, read from the hourly rollups), and the
samples of CPU, memory and connections, over the baseline period: the report's window plus
the ``reports.baseline_days`` before it, limited to the data stored.

Each clock hour of the window is judged against the most specific baseline the period
allows (``seasonal.py``): the same hour of the week in the other weeks (three of them, so
four weeks of baseline), else the same hour of the day in the other days (six of them),
else the global baseline, the median and MAD (median absolute deviation) of every value of
the period. A nightly batch is judged against the other nights and is normal; the same
load at 15:00 is not. An hour is an anomaly when

* the robust z-score ``(observed - median) / (1.4826 * MAD)`` exceeds ``reports.anomaly_z``
  (3.5 by default, the usual cut-off for modified z-scores), the scale floored at 5 % of
  the median so that a perfectly steady statement does not flag every wobble, and
* the factor ``observed / median`` reaches the profile's ``thresholds.query_spike_factor``.
  Statements faster than a tenth of the slow-query threshold are not reported.

The observation is the hour's highest value (its highest interval mean for a statement).
CPU, memory and connection counts are treated the same way, with an absolute floor (20 CPU
points, 10 memory points, 5 connections and a doubling) instead of the factor, which means
little for percentages. Each series gives at most one anomaly, its highest-scoring hour,
which says which baseline flagged it (``baseline_kind``, ``flagged_by``).

The statements judged are those whose peak in the window reaches the spike factor against
their global median (at most 50, found in SQL): a statement's series is read only when it
can be a spike. At the sample resolution (six hours of baseline at most) no other day is
known, and the SQL's global verdict stands.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from ..models import Anomaly
from ..store.rollup import floor_hour
from ._numpy import np
from .model import ReportSettings
from .queries import AnomalyInputs, StatementSeries
from .seasonal import Baseline, SpikeRule, Verdict, detect_spikes

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


def _flagged(anomaly: Anomaly, baseline: Baseline) -> Anomaly:
    return replace(anomaly, baseline_kind=baseline.kind, flagged_by=baseline.describe())


def _statement_row(row: dict[str, Any], series: StatementSeries, v: Verdict) -> dict[str, Any]:
    """The candidate *row* as its flagged hour *v* against its baseline shows it."""
    at = v.at.timestamp()
    hour = int(np.argmin(np.abs(series.t - at))) if series.t.size else None
    median = v.baseline.median
    factor = round(v.observed / median, 1) if median > 0 else None
    return {**row, "observed": round(v.observed, 3), "baseline": round(median, 3), "mad": round(v.baseline.mad, 3),
            "points": v.baseline.points, "factor": factor, "score": round(v.score, 1), "at": v.at,
            "bucket_total_time": float(series.total_time[hour]) if hour is not None else None,
            "bucket_calls": int(series.calls[hour]) if hour is not None else None}


def _statements(inputs: AnomalyInputs, settings: ReportSettings, target: str | None) -> list[Anomaly]:
    floor = settings.thresholds.slow_query_time_ms / 10
    days = (inputs.end - inputs.baseline_start).total_seconds() / 86400
    found = []
    for row in inputs.statements:
        if inputs.resolution == "sample":
            if float(row["observed"]) >= floor:
                baseline = Baseline("global", float(row["baseline"]), float(row["mad"]), int(row["points"]), days)
                found.append(_flagged(statement_anomaly(row, settings, target, inputs.resolution), baseline))
            continue
        series = inputs.statement_series.get((row["query_id"], row["datname"] or "", row["username"] or ""))
        if series is None or series.t.size == 0:
            continue
        verdicts = [v for v in detect_spikes(series.t, series.mean, peaks=series.peak,
                                             window_start=floor_hour(inputs.window_start),
                                             rule=SpikeRule.for_statements(settings))
                    if v.observed >= floor]
        if verdicts:
            shown = _statement_row(row, series, verdicts[0])
            found.append(_flagged(statement_anomaly(shown, settings, target, inputs.resolution), verdicts[0].baseline))
    return found


def _resources(inputs: AnomalyInputs, settings: ReportSettings, target: str | None) -> list[Anomaly]:
    found = []
    for name, (t, values) in inputs.resources.items():
        for v in detect_spikes(t, values, window_start=inputs.window_start,
                               rule=SpikeRule.for_resource(name, settings)):
            # The numbers as the report shows them; the highest-scoring hour that still passes.
            row = {"name": name, "at": v.at, "observed": round(v.observed, 2), "baseline": round(v.baseline.median, 2),
                   "mad": round(v.baseline.mad, 3), "points": v.baseline.points}
            anomaly = resource_anomaly(row, settings, target, settings.anomaly_z)
            if anomaly is not None:
                found.append(_flagged(anomaly, v.baseline))
                break
    return found


def detect(inputs: AnomalyInputs, settings: ReportSettings, target: str | None) -> list[Anomaly]:
    """Anomalies from ``ReportQueries.anomaly_inputs``, most important first.

    Statements still faster than a tenth of the slow-query threshold are left out, as in
    the PgperfQueryTimeSpike rule: sub-millisecond statements vary tenfold with caching
    and lock waits, and such a "spike" costs nothing.
    """
    found = _statements(inputs, settings, target) + _resources(inputs, settings, target)
    return sorted(found, key=lambda a: (_ORDER[a.impact], -(a.factor or 0), a.kind, a.subject))
