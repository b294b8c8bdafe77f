"""Backtest of the capacity forecasts and the seasonal anomaly baselines on synthetic histories.

    python bench/forecast_backtest.py                 # full run (a few minutes)
    python bench/forecast_backtest.py --quick         # a smoke test, figures meaningless
    python bench/forecast_backtest.py --output FILE   # also write the Markdown tables to FILE

No database: the histories are made with numpy from a fixed seed, so every run sees the
same cases. Four parts, each a function returning plain numbers (``run()`` gathers them,
``render()`` makes the Markdown, as bench/harness.py expects of a section):

* **forecasts** — histories with a known growth rate, daily and weekly rhythms, AR(1) noise
  with correlation times from a minute to six hours, rare outliers and level shifts (a
  VACUUM FULL, a data load). Each continues, with the same process and no new shift, into
  a future in which the first sample at or above the limit is the true date. The
  forecast's interval must contain it in at least 90 % of cases.
* **trend estimators** — Theil–Sen with every pair against the pair subsamples pgperf uses
  (20,000 for the estimate, 4,000 per bootstrap refit) and least squares: slope error and time.
* **timing** — one forecast over 30 days of one-minute samples (43,200 points) and over the
  same 30 days as hourly rollups (720 points).
* **anomalies** — labelled series (CPU-like, connection-like, statement mean time) with
  daily and weekly rhythms, recurring batches that are normal, and injected anomalies
  (spikes, and activity at an hour when there usually is none). The seasonal baselines
  (reports/seasonal.py) against the global robust z-score of reports/anomalies.py, whose
  function judges the global verdicts: precision and recall per hour.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "exporter")]  # run from a checkout without installing

from pgperf.config import load_config  # noqa: E402
from pgperf.reports.anomalies import resource_anomaly  # noqa: E402
from pgperf.reports.forecast import (  # noqa: E402
    BOOT_PAIRS,
    PAIRS,
    Forecast,
    NoForecast,
    Options,
    describe,
    forecast,
    theil_sen,
)
from pgperf.reports.model import ReportSettings  # noqa: E402
from pgperf.reports.seasonal import SpikeRule, judge_hours  # noqa: E402

DAY = 86400.0
HOUR = 3600.0
# 2026-06-01T00:00:00Z, a Monday: the histories end at different times after it.
EPOCH = 1_780_272_000.0
HORIZON_DAYS = 365.0
GLITCH_RATE = 0.002
LEVEL = 0.95

FloatArray = Any  # numpy arrays; the bench is not type-checked with the package


# -- synthetic histories ---------------------------------------------------------------------


def ar1(rng: np.random.Generator, n: int, phi: float) -> FloatArray:
    """A stationary AR(1) series of unit variance, by FFT convolution with the truncated impulse response."""
    z = rng.normal(size=n)
    if phi <= 0:
        return z
    taps = min(n, int(math.ceil(math.log(1e-6) / math.log(phi))) + 1)
    kernel = phi ** np.arange(taps)
    size = 1 << int(math.ceil(math.log2(n + taps)))
    out = np.fft.irfft(np.fft.rfft(z, size) * np.fft.rfft(kernel, size), size)[:n]
    # The first samples lack the process's past: warm up by prepending nothing, rescale to unit variance.
    return out * math.sqrt(1 - phi * phi)


@dataclass
class Case:
    """One synthetic series: its history, limit and the true date the limit is first reached."""

    t: FloatArray
    y: FloatArray
    limit: float
    truth: float  # epoch seconds of the first future sample >= limit; inf if not within HORIZON_DAYS
    lead_days: float  # truth - end of history, in days (inf if not reached)
    kind: dict[str, Any]


def _daily_shape(rng: np.random.Generator, shape: str, t: FloatArray) -> FloatArray:
    hod = (t % DAY) / HOUR
    if shape == "sine":
        return np.sin(2 * np.pi * hod / 24 + rng.uniform(0, 2 * np.pi))
    if shape == "business":
        return ((hod >= 9) & (hod < 18)).astype(float)
    # a nightly batch: 40 minutes from 02:00
    return ((hod >= 2) & (hod < 2 + 40 / 60)).astype(float)


def make_case(rng: np.random.Generator, future_glitches: bool = False) -> Case:
    """A history with known growth and its continuation, with parameters drawn at random."""
    days = float(rng.choice([1.5, 3, 7, 14, 30, 45]))
    interval = float(rng.choice([60.0, 300.0, 3600.0] if days >= 7 else [60.0, 300.0]))
    growth = float(10 ** rng.uniform(6, 10))  # per day (bytes)
    noise = growth * float(10 ** rng.uniform(-2, 0.3))  # standard deviation of the AR(1) deviation
    corr = float(10 ** rng.uniform(math.log10(60), math.log10(6 * HOUR)))  # correlation time, seconds
    phi = math.exp(-interval / corr)
    shape = str(rng.choice(["none", "sine", "business", "batch"], p=[0.4, 0.25, 0.2, 0.15]))
    amp = growth * float(10 ** rng.uniform(-1.5, 0.5)) if shape != "none" else 0.0
    weekly = growth * float(10 ** rng.uniform(-1.5, 0.3)) if shape == "business" and rng.random() < 0.7 else 0.0
    step = rng.random() < 0.3
    lead = days * float(rng.uniform(0.2, 8.0))

    end = EPOCH + float(rng.uniform(0, 7 * DAY))
    n_hist = int(days * DAY / interval)
    limit_level = 1e11 + growth * lead  # the trend reaches it `lead` days after the end
    # The future is simulated up to the horizon, or a little past the trend's crossing.
    future_days = min(HORIZON_DAYS, lead * 1.5 + 10 * noise / growth + 2)
    n_future = int(future_days * DAY / interval)
    t_all = end + interval * np.arange(-n_hist + 1, n_future + 1)
    rel_days = (t_all - end) / DAY
    y_all = 1e11 + growth * rel_days + noise * ar1(rng, t_all.size, phi)
    if shape != "none":
        y_all += amp * _daily_shape(rng, shape, t_all)
    if weekly:
        dow = np.floor((t_all - EPOCH) / DAY).astype(int) % 7
        y_all -= weekly * (dow >= 5)
    # Glitches: single samples far off (a sampling hiccup). In the history they test the
    # fit's robustness; in the future they do not count as reaching the limit unless
    # future_glitches is set (a glitch that touches the limit is no full disk).
    glitches = rng.random(t_all.size) < GLITCH_RATE
    if not future_glitches:
        glitches[n_hist:] = False
    y_all[glitches] += noise * rng.normal(0, 8, glitches.sum())
    shift_at = None
    if step:
        at = int(n_hist * rng.uniform(0.1, 0.95))
        size = growth * float(rng.uniform(1, 15)) * (-1 if rng.random() < 0.6 else 1)
        # The level before the shift differs; the level after it is the one the future continues.
        y_all[:at] -= size
        shift_at = float(t_all[at])
    hist, fut = slice(0, n_hist), slice(n_hist, None)
    reached = np.nonzero(y_all[fut] >= limit_level)[0]
    truth = float(t_all[fut][reached[0]]) if reached.size and t_all[fut][reached[0]] - end <= HORIZON_DAYS * DAY \
        else math.inf
    if y_all[hist][-1] >= limit_level:
        truth = float(t_all[hist][-1])
    kind = {"days": days, "interval": interval, "shape": shape, "weekly": bool(weekly), "step": step,
            "noise_ratio": noise / growth, "corr_s": corr, "shift_at": shift_at, "growth": growth, "trend_lead": lead}
    return Case(t_all[hist], y_all[hist], limit_level, truth, (truth - end) / DAY, kind)


# -- forecasts -------------------------------------------------------------------------------


def _score(case: Case, f: Forecast | NoForecast) -> dict[str, Any]:
    end = float(case.t[-1])
    out: dict[str, Any] = {"made": isinstance(f, Forecast), "truth_days": case.lead_days, **case.kind}
    if not isinstance(f, Forecast):
        return out
    tol = 3600.0  # the forecast's time grid is one bucket (at most an hour)
    horizon_end = f.horizon_end.timestamp() if f.horizon_end else end + HORIZON_DAYS * DAY
    at = f.reaches_limit_at.timestamp() if f.reaches_limit_at else None
    low = f.interval.low.timestamp() if f.interval.low else None
    high = f.interval.high.timestamp() if f.interval.high else math.inf
    truth = case.truth
    if at is None:
        # "Not reached within the horizon" (or not growing): right if the truth is later.
        covered = truth > horizon_end - tol
    else:
        covered = low is not None and low - tol <= truth <= high + tol
    out.update(covered=covered, dated=at is not None, growth=f.growth_per_day)
    if at is not None and math.isfinite(truth):
        out["abs_error_days"] = abs(at - truth) / DAY
    if low is not None and math.isfinite(high):
        out["width_days"] = (high - low) / DAY
        if math.isfinite(truth) and truth > end:
            out["relative_width"] = (high - low) / (truth - end)
    return out


def forecast_backtest(cases: int, seed: int, future_glitches: bool = False, level: float = LEVEL) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    rows = []
    began = time.perf_counter()
    for _ in range(cases):
        case = make_case(rng, future_glitches)
        f = forecast("disk_usage_bytes", case.t, case.y, limit=case.limit, options=Options(level=level))
        rows.append(_score(case, f))
    elapsed = time.perf_counter() - began
    return {"cases": cases, "seed": seed, "seconds": elapsed, "level": level, "rows": rows}


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    made = [r for r in rows if r["made"]]
    covered = [r for r in made if r["covered"]]
    widths = [r["width_days"] for r in made if "width_days" in r]
    rel = [r["relative_width"] for r in made if "relative_width" in r]
    errors = [r["abs_error_days"] for r in made if "abs_error_days" in r]
    return {
        "cases": len(rows), "forecasts": len(made),
        "coverage": len(covered) / len(made) if made else math.nan,
        "dated": sum(1 for r in made if r["dated"]),
        "median_width_days": statistics.median(widths) if widths else math.nan,
        "median_relative_width": statistics.median(rel) if rel else math.nan,
        "median_abs_error_days": statistics.median(errors) if errors else math.nan,
    }


def forecast_groups(rows: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    groups: list[tuple[str, dict[str, Any]]] = [("all cases", _summary(rows))]
    groups.append(("with a level shift", _summary([r for r in rows if r["step"]])))
    groups.append(("without a level shift", _summary([r for r in rows if not r["step"]])))
    for shape in ("none", "sine", "business", "batch"):
        groups.append((f"daily rhythm: {shape}", _summary([r for r in rows if r["shape"] == shape])))
    groups.append(("with a weekly rhythm", _summary([r for r in rows if r["weekly"]])))
    for days in sorted({r["days"] for r in rows}):
        groups.append((f"{days:g} days of history", _summary([r for r in rows if r["days"] == days])))
    groups.append(("noise over a day's growth < 0.1", _summary([r for r in rows if r["noise_ratio"] < 0.1])))
    groups.append(("noise over a day's growth ≥ 0.1", _summary([r for r in rows if r["noise_ratio"] >= 0.1])))
    return groups


# -- trend estimators ------------------------------------------------------------------------


def estimators(repeats: int, seed: int, buckets: int = 1440) -> dict[str, Any]:
    """Slope error of Theil–Sen on all pairs, on subsamples, and of least squares (30 days of 30-minute medians)."""
    rng = np.random.default_rng(seed)
    t = np.arange(buckets) * 1800.0
    errors: dict[str, list[float]] = {"all pairs": [], f"{PAIRS:,} pairs": [], f"{BOOT_PAIRS:,} pairs": [],
                                      "least squares": []}
    spent = dict.fromkeys(errors, 0.0)
    diff_to_full: dict[str, list[float]] = {k: [] for k in errors}
    for rep in range(repeats):
        e = ar1(rng, buckets, float(rng.uniform(0, 0.95)))
        wild = rng.random(buckets) < 0.03
        e[wild] += rng.normal(0, 20, wild.sum())
        y = t / DAY + e  # a slope of 1 per day, noise of unit standard deviation
        slopes = {}
        for name, pairs in (("all pairs", buckets * buckets), (f"{PAIRS:,} pairs", PAIRS),
                            (f"{BOOT_PAIRS:,} pairs", BOOT_PAIRS)):
            began = time.perf_counter()
            slopes[name] = theil_sen(t, y, pairs=pairs, seed=rep) * DAY
            spent[name] += time.perf_counter() - began
        began = time.perf_counter()
        slopes["least squares"] = float(np.polyfit(t, y, 1)[0]) * DAY
        spent["least squares"] += time.perf_counter() - began
        for name, s in slopes.items():
            errors[name].append(s - 1.0)
            diff_to_full[name].append(s - slopes["all pairs"])
    return {"buckets": buckets, "repeats": repeats, "estimators": [
        {"name": name, "rmse": math.sqrt(statistics.fmean(v * v for v in errors[name])),
         "rms_difference_to_all_pairs": math.sqrt(statistics.fmean(v * v for v in diff_to_full[name])),
         "ms": 1000 * spent[name] / repeats} for name in errors]}


# -- timing ----------------------------------------------------------------------------------


def timing(repeats: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, interval in (("30 days of one-minute samples", 60.0), ("30 days of hourly rollups", 3600.0)):
        n = int(30 * DAY / interval)
        t = EPOCH + interval * np.arange(n)
        y = 1e11 + 2e9 * (t - EPOCH) / DAY + 3e8 * ar1(rng, n, math.exp(-interval / 1800)) \
            + 5e8 * np.sin(2 * np.pi * (t % DAY) / DAY)
        limit = 1e11 + 2e9 * 90
        forecast("disk_usage_bytes", t, y, limit=limit)  # warm-up
        spent = []
        result: Forecast | NoForecast | None = None
        for _ in range(repeats):
            began = time.perf_counter()
            result = forecast("disk_usage_bytes", t, y, limit=limit)
            spent.append(time.perf_counter() - began)
        assert result is not None
        out[name] = {"points": n, "median_ms": 1000 * statistics.median(spent), "max_ms": 1000 * max(spent),
                     "repeats": repeats, "sentence": describe(result)}
    return out


# -- anomalies -------------------------------------------------------------------------------


def report_settings() -> ReportSettings:
    """The production profile's thresholds (spike factor 10, slow queries from 2 s), 7 days of baseline."""
    config = load_config(flags={"profile": "production", "dsn": "postgresql://bench@127.0.0.1/bench",
                                "store": {"enabled": False}}, env={})
    return ReportSettings.from_config(config)


@dataclass
class Labelled:
    """A resource or statement series with the hours (epoch of the hour's start) that hold an anomaly."""

    kind: str  # cpu, connections, statement
    t: FloatArray
    values: FloatArray  # samples (resources) or hourly means (statements)
    peaks: FloatArray  # the observations: the samples themselves, or each hour's highest interval mean
    anomalous: set[float]


def _hour_of_day(t: FloatArray) -> FloatArray:
    return (t % DAY) / HOUR


def _weekday(t: FloatArray) -> FloatArray:
    return np.floor((t - EPOCH) / DAY) % 7


def make_labelled(rng: np.random.Generator, kind: str, days: int) -> Labelled:
    """``days`` of a series with a daily and weekly rhythm, normal batches, and injected anomalies.

    Normal (never labelled): business hours on weekdays, a nightly batch every night at a
    time of its own (jittering by a few minutes), in a third of the series a Sunday batch
    too. Anomalies, in the last 7 days and outside the batches: 1 to 4 spikes at random
    times, and in half of the series a business-hours level of activity for an hour at night.
    """
    step = 3600.0 if kind == "statement" else 300.0
    t = EPOCH + step * np.arange(int(days * DAY / step))
    hod, dow = _hour_of_day(t), _weekday(t)
    business = ((hod >= 9) & (hod < 18) & (dow < 5)).astype(float)
    batch_at = float(rng.uniform(0.5, 4.5))
    batch = np.zeros(t.size)
    for day in range(days):
        start = day * DAY + (batch_at + float(rng.normal(0, 0.1))) * HOUR
        # A point stands for its interval [t, t + step): the batch shows where it overlaps it.
        batch[(t - EPOCH + step > start) & (t - EPOCH < start + float(rng.uniform(0.3, 0.8)) * HOUR)] = 1
    if rng.random() < 0.33:
        batch[(dow == 6) & (hod >= 5.5) & (hod < 6.5)] = 1
    if kind == "cpu":
        busy, batch_level = float(rng.uniform(15, 40)), float(rng.uniform(60, 90))
        y = np.clip(np.where(batch > 0, batch_level, 15 + busy * business) + rng.normal(0, 2.5, t.size), 0, 100)
    elif kind == "connections":
        busy, batch_level = float(rng.uniform(20, 60)), float(rng.uniform(40, 120))
        y = rng.poisson(10 + busy * business + batch_level * batch).astype(float)
    else:  # statement: hourly mean time, ms
        base = float(rng.uniform(250, 600))
        y = np.where(batch > 0, base * float(rng.uniform(12, 30)),
                     base * (1 + 0.5 * business) * np.exp(rng.normal(0, 0.1, t.size)))
    # A statement's observation is its hour's highest interval mean, above the hour's mean.
    peaks = y * np.exp(np.abs(rng.normal(0, 0.2, t.size))) if kind == "statement" else y
    anomalous: set[float] = set()
    quiet = (t >= t[-1] - 7 * DAY) & (batch == 0)
    quiet &= np.concatenate((batch[1:] == 0, [True])) & np.concatenate(([True], batch[:-1] == 0))
    for _ in range(int(rng.integers(1, 5))):
        i = int(rng.choice(np.nonzero(quiet)[0]))
        span = np.arange(i, min(t.size, i + int(rng.integers(1, 6)))) if kind != "statement" else np.array([i])
        if kind == "cpu":
            y[span] = np.minimum(100, y[span] + float(rng.uniform(25, 45)))
        elif kind == "connections":
            y[span] += float(rng.uniform(40, 150))
        else:
            peaks[i] = y[i] * float(rng.uniform(12, 40))
            y[i] = peaks[i] / 3
        anomalous.update(math.floor(x / HOUR) * HOUR for x in t[span])
    if rng.random() < 0.5:  # business-hours activity for an hour at night, away from the batch
        hour = float(rng.choice([h for h in range(0, 8) if abs(h + 0.5 - batch_at) > 2 and h not in (5, 6)]))
        night = (t >= t[-1] - 7 * DAY) & (np.floor((t - EPOCH) / DAY) == days - 2) & (hod >= hour) & (hod < hour + 1)
        if kind == "cpu":
            y[night] = 15 + 40 + rng.normal(0, 2.5, int(night.sum()))
        elif kind == "connections":
            y[night] = rng.poisson(10 + 60, int(night.sum()))
        else:
            y[night] = float(np.median(y)) * 15
            peaks[night] = y[night] * 1.2
        anomalous.update(math.floor(x / HOUR) * HOUR for x in t[night])
    if kind != "statement":
        peaks = y
    return Labelled(kind, t, y, peaks, anomalous)


def _global_flags(series: Labelled, settings: ReportSettings, start: float, end: float,
                  baseline_start: float) -> set[float]:
    """anomalies.py's rule, applied to every hour of the window against the global median and MAD."""
    period = (series.t >= baseline_start) & (series.t < end)
    values = series.values[period]
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    flagged: set[float] = set()
    window = (series.t >= start) & (series.t < end)
    hours = np.floor(series.t[window] / HOUR) * HOUR
    for hour in np.unique(hours):
        observed = float(series.peaks[window][hours == hour].max())
        if series.kind == "statement":
            # The anomaly SQL of reports/builder.py and the floor of anomalies.detect().
            scale = max(1.4826 * mad, 0.05 * median, 0.01)
            hit = (median > 0 and observed / median >= settings.thresholds.query_spike_factor
                   and (observed - median) / scale > settings.anomaly_z
                   and observed >= settings.thresholds.slow_query_time_ms / 10)
        else:
            row = {"name": series.kind, "observed": observed, "baseline": median, "mad": mad, "points": values.size}
            hit = resource_anomaly(row, settings, "bench", settings.anomaly_z) is not None
        if hit:
            flagged.add(float(hour))
    return flagged


def _seasonal_flags(series: Labelled, settings: ReportSettings, start: float, end: float, baseline_start: float,
                    tolerance: timedelta) -> set[float]:
    period = (series.t >= baseline_start) & (series.t < end)
    rule = SpikeRule.for_statements(settings) if series.kind == "statement" else \
        SpikeRule.for_resource(series.kind, settings)
    verdicts = judge_hours(series.t[period], series.values[period], peaks=series.peaks[period], window_start=start,
                           rule=rule, tolerance=tolerance)
    floor = settings.thresholds.slow_query_time_ms / 10 if series.kind == "statement" else -math.inf
    return {math.floor(v.at.timestamp() / HOUR) * HOUR for v in verdicts if v.flagged and v.observed >= floor}


TOLERANCES = {"seasonal, ±15 minutes (default)": timedelta(minutes=15), "seasonal, exact hour": timedelta(0),
              "seasonal, ±1 hour": timedelta(hours=1)}


def anomaly_backtest(per_kind: int, seed: int, baseline_days: float = 7.0) -> dict[str, Any]:
    """Precision and recall per hour of the global rule and of the seasonal baselines, over daily windows.

    Each of the last 7 days is a report's window, with ``baseline_days`` of baseline before
    it (reports.baseline_days, 7 by default); every hour of each window is judged by each
    detector.
    """
    days = int(baseline_days) + 8
    rng = np.random.default_rng(seed)
    settings = report_settings()
    detectors = ("global", *TOLERANCES)
    counts = {(kind, d): {"tp": 0, "fp": 0, "fn": 0, "batch_fp": 0} for kind in ("cpu", "connections", "statement")
              for d in detectors}
    hours_judged = 0
    for kind in ("cpu", "connections", "statement"):
        for _ in range(per_kind):
            series = make_labelled(rng, kind, days)
            end_all = math.floor(series.t[-1] / DAY) * DAY + DAY
            for day in range(7):
                end = end_all - day * DAY
                start = end - DAY
                baseline_start = start - baseline_days * DAY
                truth = {h for h in series.anomalous if start <= h < end}
                hours_judged += 24
                found = {"global": _global_flags(series, settings, start, end, baseline_start)}
                for name, tolerance in TOLERANCES.items():
                    found[name] = _seasonal_flags(series, settings, start, end, baseline_start, tolerance)
                for name, flagged in found.items():
                    c = counts[(kind, name)]
                    c["tp"] += len(flagged & truth)
                    c["fp"] += len(flagged - truth)
                    c["fn"] += len(truth - flagged)
    rows = []
    for kind in ("all", "cpu", "connections", "statement"):
        for name in detectors:
            picked = [c for (k, d), c in counts.items() if d == name and kind in ("all", k)]
            tp, fp, fn = (sum(c[x] for c in picked) for x in ("tp", "fp", "fn"))
            rows.append({"series": kind, "detector": name, "tp": tp, "fp": fp, "fn": fn,
                         "precision": tp / (tp + fp) if tp + fp else math.nan,
                         "recall": tp / (tp + fn) if tp + fn else math.nan})
    return {"series_per_kind": per_kind, "baseline_days": baseline_days, "hours_judged": hours_judged, "seed": seed,
            "rows": rows}


# -- the run ---------------------------------------------------------------------------------


_NUMPY_WEIGHT = """
import json, psutil, sys
process = psutil.Process()
import pgperf.app  # what pgperf serve imports at start
before, threads = process.memory_info().rss, process.num_threads()
assert "numpy" not in sys.modules
from pgperf.reports._numpy import np
np.median(np.arange(10.0))  # the first use imports numpy
print(json.dumps({"rss_before_mib": before / 2**20, "rss_added_mib": (process.memory_info().rss - before) / 2**20,
                  "threads_added": process.num_threads() - threads}))
"""


def numpy_weight() -> dict[str, float]:
    """What numpy adds to a pgperf process that has imported what serve imports, measured
    in a fresh interpreter: resident memory and threads."""
    out = subprocess.run([sys.executable, "-c", _NUMPY_WEIGHT], capture_output=True, text=True, check=True,
                         timeout=120)
    return dict(json.loads(out.stdout))


def run(quick: bool = False, seed: int = 20261204, cases: int | None = None) -> dict[str, Any]:
    """Every part of the backtest; plain numbers for bench/harness.py's results.json."""
    n = cases if cases is not None else (30 if quick else 1000)
    fc = forecast_backtest(n, seed)
    glitchy = forecast_backtest(n, seed, future_glitches=True)
    narrower = forecast_backtest(n, seed, level=0.9)
    return {
        "quick": quick,
        "forecasts": {**{k: v for k, v in fc.items() if k != "rows"},
                      "groups": [{"group": g, **s} for g, s in forecast_groups(fc["rows"])],
                      "with_future_glitches": _summary(glitchy["rows"]),
                      "at_90_percent": _summary(narrower["rows"])},
        "estimators": estimators(5 if quick else 100, seed),
        "timing": timing(2 if quick else 10, seed),
        "anomalies": [anomaly_backtest(3 if quick else 60, seed, days) for days in (7.0, 28.0)],
        "numpy": numpy_weight(),
    }


def _pct(v: float) -> str:
    return "—" if math.isnan(v) else f"{100 * v:.1f} %"


def _num(v: float, digits: int = 1) -> str:
    return "—" if math.isnan(v) else f"{v:,.{digits}f}"


def render(results: dict[str, Any]) -> list[str]:
    """The Markdown section for bench/README.md."""
    fc = results["forecasts"]
    overall = fc["groups"][0]
    level = f"{100 * fc['level']:g}"
    out = [
        "## Forecasts and seasonal baselines (backtest)",
        "",
        f"bench/forecast_backtest.py, no database: {fc['cases']:,} synthetic histories (seed {fc['seed']}) of 1.5 to 45 "
        "days sampled every minute, 5 minutes or hour, with a known growth rate, AR(1) noise (correlation time one "
        "minute to six hours, standard deviation 1 % to 200 % of a day's growth), a daily rhythm in 60 % of them (a "
        "sine, business hours with a weekend dip, or a nightly batch), a level shift (a VACUUM FULL or a data load) "
        "in 30 %, and sampling glitches (one sample in 500 far off). Each continues into a future of the same "
        "process without a new shift; the true date is the first future sample at or above the limit, set 0.2 to 8 "
        "histories ahead (a glitch does not count: it fills no disk). A forecast that gives no date is right when "
        "the truth lies beyond its horizon; histories under 2 days get no forecast.",
        "",
        f"| histories | cases | forecasts | true date inside the {level} % interval | median interval width | "
        "median width / lead time | median absolute error of the date |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in fc["groups"]:
        out.append(f"| {g['group']} | {g['cases']} | {g['forecasts']} | {_pct(g['coverage'])} | "
                   f"{_num(g['median_width_days'])} days | {_pct(g['median_relative_width'])} | "
                   f"{_num(g['median_abs_error_days'])} days |")
    glitchy = fc["with_future_glitches"]
    out += ["", f"Target: at least 90 % — {'met' if overall['coverage'] >= 0.9 else 'NOT met'} "
                f"({_pct(overall['coverage'])} over all {overall['forecasts']} forecasts; "
                f"{fc['seconds']:.0f} s for the backtest). Counting a future glitch at or above the limit as the true "
                f"date: {_pct(glitchy['coverage'])}. The interval is the simulation's {level} % range; its 90 % range "
                f"holds the truth in {_pct(fc['at_90_percent']['coverage'])} of these cases (median width "
                f"{_num(fc['at_90_percent']['median_width_days'])} days): what a short history cannot show — a weekly "
                "rhythm in under three weeks, a shift in its last hours — is missing from the simulation.", ""]
    est = results["estimators"]
    out += [
        f"Trend estimators on {est['buckets']:,} buckets (30 days of 30-minute medians; slope 1 per day, AR(1) noise "
        f"of unit standard deviation, 3 % wild points), {est['repeats']} series:",
        "",
        "| estimator | slope RMSE (per day) | RMS difference to all pairs | time |",
        "|---|---|---|---|",
    ]
    for e in est["estimators"]:
        out.append(f"| {e['name']} | {e['rmse']:.4f} | {e['rms_difference_to_all_pairs']:.4f} | {e['ms']:.2f} ms |")
    out += ["", "| one forecast over | points | median time | max |", "|---|---|---|---|"]
    for name, tm in results["timing"].items():
        out.append(f"| {name} | {tm['points']:,} | {tm['median_ms']:.0f} ms | {tm['max_ms']:.0f} ms |")
    out.append("")
    if "numpy" in results:
        weight = results["numpy"]
        out += [f"numpy's weight: it adds {weight['rss_added_mib']:.1f} MiB resident and "
                f"{weight['threads_added']:.0f} thread(s) (its BLAS) to a process that has imported what "
                f"`pgperf serve` imports ({weight['rss_before_mib']:.1f} MiB). pgperf imports it at the first "
                "report, forecast or anomaly check (`pgperf.reports._numpy`), never at start: a pgperf that only "
                "samples does not carry it.", ""]
    runs = results["anomalies"]
    first = runs[0]
    out += [
        f"Anomalies: {first['series_per_kind']} labelled series each of CPU (5-minute samples), connections "
        "(5-minute samples) and a statement's mean time (hourly points: the hour's mean, and its highest interval "
        "mean as the observation), with business hours on weekdays, a nightly batch at a time of its own that "
        "wanders by a few minutes, a Sunday batch in a third of them (all normal), and 1 to 4 spikes plus, in half "
        "of them, an hour of daytime activity at night (the anomalies). Each of the last 7 days is a report's window; "
        "every hour of it is judged by anomalies.py's rule against the global median and MAD of the baseline period "
        "(`resource_anomaly` itself for the resources, the anomaly SQL's conditions for statements) and by the "
        "seasonal baselines (reports/seasonal.py) with the same thresholds (production profile).",
        "",
        "| baseline period | series | detector | precision | recall | true / false positives | missed |",
        "|---|---|---|---|---|---|---|",
    ]
    for run_ in runs:
        for row in run_["rows"]:
            out.append(f"| {run_['baseline_days']:g} days | {row['series']} | {row['detector']} | "
                       f"{_num(row['precision'], 2)} | {_num(row['recall'], 2)} | {row['tp']} / {row['fp']} | "
                       f"{row['fn']} |")
    out += ["", "The global rule flags every busy hour and every batch (it is meant for a report's single highest "
                "value, and even so a nightly batch is that value every night). With 7 days of baseline the seasonal "
                "baselines judge by the same hour of the day only: a Sunday batch stands out against the other days "
                "(most of the false positives); from 4 weeks on, the same hour of the week knows it. Most spikes "
                "missed rise less than the rule's minimum (20 CPU points) above the other days' highest value of "
                "that hour.", ""]
    if results.get("quick"):
        out += ["(quick mode: tiny sizes, figures meaningless)", ""]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--seed", type=int, default=20261204, help="seed of the synthetic cases")
    parser.add_argument("--cases", type=int, help="number of forecast cases (default 1000, quick 30)")
    parser.add_argument("--output", help="also write the Markdown tables to this file")
    args = parser.parse_args(argv)
    results = run(args.quick, args.seed, args.cases)
    text = "\n".join(render(results)) + "\n"
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
