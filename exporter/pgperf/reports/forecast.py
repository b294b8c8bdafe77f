"""Capacity forecasts: when a growing series reaches its limit, with a prediction interval.

:func:`forecast` takes one series of (time, value) points — disk usage, database size,
connections, transaction ID age, a statement's mean time — and its limit, and answers
"disk full in 46 days, between 41 and 52". The steps, each a function below:

1. **Buckets.** The points become bucket medians, the bucket the narrowest of 1, 5, 15, 30
   or 60 minutes that gives at most 2,000 buckets and is not finer than the sampling (a
   month of one-minute samples: 30-minute buckets; hourly rollups: an hour). Medians
   ignore a single spiking sample, and the cost no longer grows with the sampling rate.
   Histories of less than 5 hours (only when ``min_span`` is set that short) get buckets
   of 1, 5, 15 or 30 seconds, as the sampling allows.
2. **Trend.** Theil–Sen: the median of the slopes between pairs of buckets, robust to up to
   29 % of wild points. All pairs up to 20,000 of them, else 20,000 random pairs (fixed
   seed): the full estimator is O(n²), and ``bench/forecast_backtest.py`` measures that the
   subsample changes the slope by far less than its own uncertainty.
3. **Seasonality.** Where the history allows it — three cycles: 3 days for a daily profile,
   3 weeks for a weekly one, with buckets of at most an hour — the median per UTC hour of
   the day of the values less their centred running median over a day, then the same per
   hour of the week (less a week's running median). A running median follows the trend
   and a level shift, so that neither leaks into the profile; the half cycle at either
   end, where its window is incomplete, is left out (three cycles give two of profile). A
   profile is kept only if noise cannot explain it: a Kruskal–Wallis test over the hourly
   medians finds that the slots differ at the 0.1 % level, or one slot stands out from
   the rest at that level (a nightly batch, which a rank test barely sees).
4. **Level shifts.** A VACUUM FULL, a bulk delete or a data load moves the level at once;
   the forecast must follow the latest regime. At every bucket the median of the next
   window is compared with the median of the previous one (a day each when the history
   has four, so that a daily rhythm cancels out), less the trend; a difference beyond 6
   robust standard deviations of these differences is a shift, placed where a two-level
   fit is best, and a shift undone within three days (a weekend dip) is none. The trend
   is fitted on the buckets after the last shift if they span the minimum history, else
   with the slope of the pairs within each regime and the level of the last one.
5. **Interval.** A sieve bootstrap: the residuals are taken as an AR(1) process (lag-1
   autocorrelation, outliers clipped), whose resampled innovations make 200 simulated
   histories; the trend is refitted on each (4,000 pairs). Each refit continues, hour by
   hour, into a simulated future of the hour's highest sample — an AR(1) process of its
   own with its own daily rhythm, started from the last hour observed — since the limit
   is reached by the first sample above it, not by a bucket's median. A lone sample far
   from both its neighbours (a sampling glitch) is left out: it is not a level the series
   reaches again. The first hour each simulated path reaches the limit gives the
   distribution: ``reaches_limit_at`` is its median and the interval its 2.5 % and 97.5 %
   quantiles (``level`` 0.95). Calibration, on the backtest's synthetic histories: the
   95 % range holds the true date in 93-94 % of cases, the 5-95 % range only in 89-92 %
   (what a short history cannot show — a weekly rhythm in under three weeks, a shift in
   its last hours — is missing from the simulation), hence the wider default.

A forecast needs ``min_span`` (2 days: two daily cycles) and ``min_points`` (12) of
history; it looks ahead at most ``horizon`` (365 days) and at most 10 times the history it
rests on. ``reaches_limit_at`` and its interval are null when the limit is not reached
within that horizon or when the series is not growing; ``interval.high`` alone is null
when the limit may be reached later than the horizon.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._numpy import np
from ._robust import MAD_SCALE, as_arrays, group_max, group_medians, mad, to_datetime
from .model import iso

if TYPE_CHECKING:
    import numpy.typing as npt

    from ._robust import FloatArray, IntArray

__all__ = [
    "HORIZON", "LEVEL", "METRICS", "MIN_POINTS", "MIN_SPAN", "Forecast", "Interval", "MetricKind", "NoForecast",
    "Options", "ProjectionPoint", "describe", "forecast", "theil_sen",
]

DAY = 86400.0
HOUR = 3600.0
BUCKET_WIDTHS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600)
MAX_BUCKETS = 2000
MIN_POINTS = 12
MIN_SPAN = timedelta(days=2)
HORIZON = timedelta(days=365)
# The forecast looks at most this many times as far ahead as the history it rests on.
EXTRAPOLATION = 10.0
DAILY_MIN_SPAN = 3 * DAY
WEEKLY_MIN_SPAN = 21 * DAY
# Standard-normal quantile of the seasonality test (0.999) and of the level-shift test.
SEASONAL_Z = 3.09
SHIFT_Z = 6.0
LEVEL = 0.95
REPLICATES = 200
PAIRS = 20_000
# Pairs per bootstrap refit: fewer than the estimate's, which widens the interval by a few
# per cent (the subsample's own noise) and makes the refits five times faster.
BOOT_PAIRS = 4_000
CHART_POINTS = 120
# Replicates simulated at once: bounds the memory of the path matrix (chunk x grid floats).
_CHUNK = 25


@dataclass(frozen=True)
class MetricKind:
    """How a forecast metric is spoken of: "disk full in 46 days"."""

    noun: str  # "disk usage"
    reached: str  # "disk full", or a template with {limit}: "connections reach max_connections ({limit})"
    unit: str  # bytes, connections, ms, xids, or "" for a plain number
    plural: bool = False  # "connections grow", "disk usage grows"

    def verb(self, singular: str, plural: str) -> str:
        return plural if self.plural else singular


METRICS: dict[str, MetricKind] = {
    "disk_usage_bytes": MetricKind("disk usage", "disk full", "bytes"),
    "database_size_bytes": MetricKind("database size", "database size reaches {limit}", "bytes"),
    "connections": MetricKind("connections", "connections reach max_connections ({limit})", "connections", True),
    "transaction_id_age": MetricKind("transaction ID age", "transaction ID age reaches {limit}", "xids"),
    "statement_mean_time_ms": MetricKind("mean time", "mean time reaches {limit}", "ms"),
}


@dataclass(frozen=True)
class Interval:
    """When the limit is reached at the earliest and at the latest (the prediction interval)."""

    low: datetime | None
    high: datetime | None


@dataclass(frozen=True)
class ProjectionPoint:
    """One point of the projected band, for charts: the median path and the interval's bounds."""

    at: datetime
    low: float
    mid: float
    high: float


@dataclass(frozen=True)
class Forecast:
    """A forecast: the growth of one series and when it reaches its limit.

    ``to_dict`` gives the report's JSON shape; ``subject`` (a statement's query id, a
    database name) and ``reason`` (null here; see :class:`NoForecast`) are added to it.
    """

    metric: str
    target: str | None
    current: float
    growth_per_day: float
    limit: float | None
    reaches_limit_at: datetime | None
    interval: Interval
    points: int
    method: str
    subject: str | None = None
    last_at: datetime | None = None  # the time of the last point: "in 46 days" counts from here
    since: datetime | None = None  # the first point of the regime the trend was fitted on
    horizon_end: datetime | None = None
    level: float | None = None  # the trend's value at last_at (without the rhythm): the chart's trend line
    projection: tuple[ProjectionPoint, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "target": self.target, "subject": self.subject, "current": self.current,
                "growth_per_day": self.growth_per_day, "limit": self.limit,
                "reaches_limit_at": iso(self.reaches_limit_at),
                "interval": {"low": iso(self.interval.low), "high": iso(self.interval.high)},
                "points": self.points, "method": self.method, "reason": None}


@dataclass(frozen=True)
class NoForecast:
    """No forecast for a series, and why (too few points, too short a history)."""

    metric: str
    target: str | None
    points: int
    reason: str
    current: float | None = None
    limit: float | None = None
    subject: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "target": self.target, "subject": self.subject, "current": self.current,
                "growth_per_day": None, "limit": self.limit, "reaches_limit_at": None,
                "interval": {"low": None, "high": None}, "points": self.points, "method": None,
                "reason": self.reason}


# -- steps ---------------------------------------------------------------------------------


def _bucket_width(span: float, spacing: float) -> int:
    """The narrowest width that gives at most MAX_BUCKETS buckets and is not finer than the sampling."""
    for width in BUCKET_WIDTHS:
        if span / width <= MAX_BUCKETS and width >= spacing * 0.99:
            return width
    return BUCKET_WIDTHS[-1]


def _buckets(t: FloatArray, y: FloatArray, width: int) -> tuple[FloatArray, FloatArray, IntArray]:
    """Bucket mean times, bucket medians, and each point's bucket number."""
    raw = np.floor(t / width).astype(np.int64)
    keys = raw - raw[0]
    # Buckets without a point are dropped: renumber the present ones 0..m-1.
    present, keys = np.unique(keys, return_inverse=True)
    m = present.size
    medians, counts = group_medians(keys, y, m)
    times = np.bincount(keys, weights=t, minlength=m) / counts
    return times, medians, keys


def _pairs(m: int, rng: np.random.Generator, segments: IntArray | None, limit: int = PAIRS) -> tuple[IntArray, IntArray]:
    """Index pairs i < j for Theil–Sen: all of them, or ``limit`` random ones; within a segment only."""
    if m * (m - 1) // 2 <= limit:
        i, j = np.triu_indices(m, 1)
    else:
        a = rng.integers(0, m, limit)
        b = rng.integers(0, m, limit)
        keep = a != b
        i, j = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
    i, j = i.astype(np.int64), j.astype(np.int64)
    if segments is not None:
        same = segments[i] == segments[j]
        i, j = i[same], j[same]
    return i, j


def theil_sen(t: FloatArray, y: FloatArray, *, pairs: int = PAIRS, seed: int = 0) -> float:
    """The Theil–Sen slope of ``y`` over ``t`` (per unit of ``t``), from at most ``pairs`` pairs."""
    if t.size < 2:
        raise ValueError("a slope needs at least two points")
    i, j = _pairs(t.size, np.random.default_rng(seed), None, pairs)
    dt = t[j] - t[i]
    ok = dt > 0
    return float(np.median((y[j] - y[i])[ok] / dt[ok]))


@dataclass(frozen=True)
class _Design:
    """What the trend is fitted on: bucket times (relative to the last point), segments, pairs."""

    t: FloatArray  # seconds relative to the last point (<= 0)
    segments: IntArray  # regime number per bucket (0 when there is one regime)
    count: int  # number of regimes
    i: IntArray
    j: IntArray

    def slopes(self, y: FloatArray, pairs: int | None = None) -> FloatArray:
        """Theil–Sen slope per row of ``y`` (shape (replicates, buckets)), from the first ``pairs`` pairs."""
        i, j = self.i[:pairs], self.j[:pairs]
        return np.asarray(np.median((y[:, j] - y[:, i]) / (self.t[j] - self.t[i]), axis=1))

    def levels(self, y: FloatArray, slope: FloatArray) -> FloatArray:
        """Per row and regime, the median of the detrended values: the regime's level at t = 0."""
        detrended = y - slope[:, None] * self.t[None, :]
        out = np.empty((y.shape[0], self.count))
        for s in range(self.count):
            out[:, s] = np.median(detrended[:, self.segments == s], axis=1)
        return out

    def fitted(self, slope: FloatArray, levels: FloatArray) -> FloatArray:
        return np.asarray(levels[:, self.segments] + slope[:, None] * self.t[None, :])


def _design(t: FloatArray, segments: IntArray, rng: np.random.Generator) -> _Design:
    count = int(segments.max()) + 1 if segments.size else 1
    i, j = _pairs(t.size, rng, segments if count > 1 else None)
    keep = t[j] > t[i]
    # In random order, so that the first pairs are a random subsample (the bootstrap's).
    shuffle = rng.permutation(int(keep.sum()))
    return _Design(t, segments, count, i[keep][shuffle], j[keep][shuffle])


def _cycle_slope(t: FloatArray, y: FloatArray, width: int) -> float | None:
    """Theil–Sen over the pairs of buckets 1 to 7 days apart (None for less than two days of history).

    Values a whole number of days apart share their hour of the day, so the daily rhythm
    cancels out of these slopes, and only pairs that straddle a level shift see it: a
    first trend, before the rhythm and the shifts are known.
    """
    if t[-1] - t[0] < 2 * DAY:
        return None
    i_all, j_all = [], []
    for days in range(1, 8):
        target = t + days * DAY
        j = np.searchsorted(t, target - width / 2)
        ok = j < t.size
        ok[ok] &= np.abs(t[j[ok]] - target[ok]) <= width / 2
        i_all.append(np.nonzero(ok)[0])
        j_all.append(j[ok])
    i, j = np.concatenate(i_all), np.concatenate(j_all)
    if i.size < MIN_POINTS:
        return None
    return float(np.median((y[j] - y[i]) / (t[j] - t[i])))


def _chi2_quantile(df: int, z: float) -> float:
    """Wilson–Hilferty approximation of the chi-square quantile at standard-normal quantile ``z``."""
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a)) ** 3


def _kruskal_wallis(keys: IntArray, values: FloatArray, groups: int) -> tuple[float, int]:
    """The Kruskal–Wallis H statistic (tie-corrected) of ``values`` grouped by ``keys``, and its degrees of freedom.

    A rank test: no assumption on the distribution of the values, and integer series
    (connection counts, with many ties) are handled by average ranks.
    """
    n = values.size
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    new = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    tie_id = np.cumsum(new) - 1
    ties = np.bincount(tie_id).astype(np.float64)
    average = np.cumsum(ties) - (ties - 1) / 2  # 1-based average rank of each run of equal values
    ranks = np.empty(n)
    ranks[order] = average[tie_id]
    counts = np.bincount(keys, minlength=groups)
    sums = np.bincount(keys, weights=ranks, minlength=groups)
    present = counts > 0
    h = 12.0 / (n * (n + 1)) * float(np.sum(sums[present] ** 2 / counts[present])) - 3.0 * (n + 1)
    correction = 1.0 - float(np.sum(ties ** 3 - ties)) / (n ** 3 - n)
    return (h / correction if correction > 0 else 0.0), int(present.sum()) - 1


def _slots(t: FloatArray, period: int) -> IntArray:
    """UTC hour of the day (period 24) or of the week (168, Monday 00:00 first) of each time."""
    hours = np.floor(t / HOUR).astype(np.int64)
    # 1970-01-01 was a Thursday: 72 hours after a Monday 00:00.
    return (hours + (72 if period == 168 else 0)) % period


def _profile(t: FloatArray, r: FloatArray, period: int) -> FloatArray | None:
    """A seasonal profile of residuals ``r`` (one value per hour slot, centred), or None if not significant.

    The residuals are first reduced to one median per clock hour, so that a slot holds one
    value per day (or week): values a cycle apart are close to independent, values minutes
    apart are not. The profile is kept if the Kruskal–Wallis test finds that the slots
    differ at the 0.1 % level.
    """
    known = np.isfinite(r)
    t, r = t[known], r[known]
    if r.size == 0:
        return None
    hours = np.floor(t / HOUR).astype(np.int64)
    present, inverse = np.unique(hours, return_inverse=True)
    hourly, _ = group_medians(inverse.astype(np.int64), r, present.size)
    slots = _slots(present.astype(np.float64) * HOUR, period)
    medians, counts = group_medians(slots, hourly, period)
    if (counts < 2).any():
        return None
    h, df = _kruskal_wallis(slots, hourly, period)
    if h <= _chi2_quantile(df, SEASONAL_Z) and not _outstanding_slot(slots, hourly, medians, counts):
        return None
    return np.asarray(medians - medians.mean())


def _outstanding_slot(slots: IntArray, values: FloatArray, medians: FloatArray, counts: IntArray) -> bool:
    """Whether one slot stands out from the others beyond chance: a nightly batch, which a rank test
    (a slot's ranks can only be the highest) does not see.

    The noise is read from the differences between consecutive cycles' values of each slot
    (a difference of two values has twice their variance); a slot stands out when its median
    is more than SLOT_Z standard errors from the median of all values (SLOT_Z: the 0.1 %
    level, Bonferroni-corrected for the number of slots).
    """
    order = np.argsort(slots, kind="stable")  # values are in time order: stable keeps it per slot
    same = slots[order][1:] == slots[order][:-1]
    steps = np.diff(values[order])[same]
    if steps.size == 0:
        return False
    sigma = MAD_SCALE * mad(steps, 0.0) / math.sqrt(2)
    if sigma == 0:
        return bool(np.ptp(medians) > 0)
    z = np.abs(medians - np.median(values)) / (1.2533 * sigma / np.sqrt(counts))
    slot_z = math.sqrt(2) * _erfinv(1 - 0.001 / medians.size)
    return bool(z.max() > slot_z)


def _erfinv(p: float) -> float:
    """Inverse error function by bisection on math.erf (accurate to 1e-12; called once per profile)."""
    lo, hi = 0.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if math.erf(mid) < p:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class _Seasonal:
    daily: FloatArray | None
    weekly: FloatArray | None

    def at(self, t: FloatArray) -> FloatArray:
        out = np.zeros(t.shape)
        if self.daily is not None:
            out += self.daily[_slots(t, 24)]
        if self.weekly is not None:
            out += self.weekly[_slots(t, 168)]
        return out

    @property
    def label(self) -> str:
        parts = [name for name, p in (("daily", self.daily), ("weekly", self.weekly)) if p is not None]
        return "+".join(parts)


def _glitches(e: FloatArray) -> npt.NDArray[np.bool_]:
    """Lone samples far from both neighbours, which agree with each other: sampling glitches.

    A sample is one when it differs from the mean of its neighbours by more than 8 robust
    standard deviations of that difference while the neighbours differ by less than 3: a
    batch that lifts several samples in a row, or a shift, is not. ``e`` are residuals
    after the trend and the rhythm, so that a spike that recurs every night is not either.
    """
    out = np.zeros(e.size, dtype=np.bool_)
    if e.size < 5:
        return out
    off = e[1:-1] - (e[:-2] + e[2:]) / 2
    apart = e[2:] - e[:-2]
    scale = MAD_SCALE * mad(off)
    if scale == 0:
        return out
    out[1:-1] = (np.abs(off - np.median(off)) > 8 * scale) & (np.abs(apart - np.median(apart)) < 3 * scale * 1.15)
    return out


def _top_profile(t: FloatArray, tops: FloatArray, seasonal: _Seasonal) -> _Seasonal:
    """The rhythm of the hourly highest samples, where the series has one: the median per hour of the day
    (and of the week), not centred, so that it holds the typical top too; else none."""
    if seasonal.daily is None:
        return _Seasonal(None, None)
    slots = _slots(t, 24)
    medians, counts = group_medians(slots, tops, 24)
    daily = np.where(counts > 0, medians, float(np.median(tops)))
    weekly = None
    if seasonal.weekly is not None:
        wslots = _slots(t, 168)
        wmed, wcounts = group_medians(wslots, tops - daily[slots], 168)
        weekly = np.where(wcounts > 0, wmed, 0.0)
    return _Seasonal(np.asarray(daily), None if weekly is None else np.asarray(weekly))


def _rolling_median(x: FloatArray, k: int) -> FloatArray:
    """``med[i]`` = median of ``x[i:i + k]``."""
    return np.asarray(np.median(np.lib.stride_tricks.sliding_window_view(x, k), axis=1))


def _local_level(x: FloatArray, k: int) -> FloatArray:
    """The centred running median over ``k`` buckets; NaN within half a window of either end."""
    out = np.full(x.size, np.nan)
    if x.size >= k:
        out[k // 2: k // 2 + x.size - k + 1] = _rolling_median(x, k)
    return out


def _seasonal(t: FloatArray, detrended: FloatArray, width: int, span: float) -> _Seasonal:
    """Daily and weekly profiles of a detrended series, each where the history allows and the test finds it.

    Each profile is read from the series less its centred running median over one cycle (a
    day, then a week): the running median follows the trend and a level shift, so that
    neither leaks into the profile. The half cycle at either end, where the window is
    incomplete, is left out; hence three cycles of history for two of profile.
    """
    if width > HOUR or span < DAILY_MIN_SPAN:
        return _Seasonal(None, None)
    per_day = int(round(DAY / width))
    daily = _profile(t, detrended - _local_level(detrended, per_day + 1 - per_day % 2), 24)
    rest = detrended - daily[_slots(t, 24)] if daily is not None else detrended
    weekly = _profile(t, rest - _local_level(rest, 7 * per_day + 1 - per_day % 2), 168) \
        if span >= WEEKLY_MIN_SPAN else None
    return _Seasonal(daily, weekly)


def _level_shifts(t: FloatArray, x: FloatArray, slope: float, k: int) -> list[int]:
    """Indices where a new level starts: the median of the next ``k`` buckets against the previous ``k``.

    ``x`` is the deseasonalised series and ``slope`` its trend (per second), which the
    difference of the two windows' medians is corrected for. Near the end the next window
    shrinks to a quarter of ``k``, so that a recent shift is seen too. A shift is a
    difference beyond SHIFT_Z robust standard deviations of the differences; one undone
    within three days (a weekend dip before the history shows a weekly rhythm, a load
    purged again) is no new regime.
    """
    m = x.size
    kmin = max(3, k // 4)
    if m < k + kmin or k < 3:
        return []
    z = x - slope * (t - t[-1])
    med = _rolling_median(z, k)  # med[i] = median of z[i:i + k]
    full = np.arange(k, m - k + 1)  # both windows complete
    tail = np.arange(max(k, m - k + 1), m - kmin + 1)  # the next window shorter than k
    cand = np.concatenate((full, tail))
    right_len = np.minimum(k, m - cand)
    right = np.concatenate((med[full], [float(np.median(z[c:])) for c in tail]))
    d = right - med[cand - k]
    # The differences' own spread is the yardstick (it includes the noise's autocorrelation
    # and whatever rhythm is left), without the window around the largest difference: a
    # shift lifts every difference within a window of it.
    ref = d[: full.size] if full.size >= 10 else d
    peak = int(np.argmax(np.abs(ref - np.median(ref))))
    away = np.abs(np.arange(ref.size) - peak) >= k
    if away.sum() >= 10:
        ref = ref[away]
    center = float(np.median(ref))
    # Noise of a difference of medians grows as sqrt(1/k + 1/k_right).
    spread = np.sqrt(1.0 / k + 1.0 / right_len)
    scale = MAD_SCALE * mad(ref, center) * spread / math.sqrt(2.0 / k)
    # Neighbouring differences share most of their windows, so a short history holds few
    # independent ones and their spread can be small by chance: it is floored at what
    # independent noise (its scale read from the lag-1 differences) would give, and above 0.
    noise = MAD_SCALE * mad(np.diff(z)) / math.sqrt(2)
    floor = max(1.2533 * noise, 1e-9 * (float(np.max(np.abs(x))) + 1.0)) * spread
    score = np.abs(d - center) / np.maximum(scale, floor)
    above = score > SHIFT_Z
    shifts: list[int] = []
    run_start = None
    for pos in range(cand.size + 1):
        inside = pos < cand.size and above[pos]
        if inside and run_start is None:
            run_start = pos
        elif not inside and run_start is not None:
            best = run_start + int(np.argmax(score[run_start:pos]))
            shifts.append(int(cand[best]))
            run_start = None
    # Runs closer than a window belong to one shift seen twice: keep the strongest.
    merged: list[int] = []
    for c in shifts:
        if merged and c - merged[-1] < k:
            prev = merged[-1]
            if score[np.searchsorted(cand, c)] > score[np.searchsorted(cand, prev)]:
                merged[-1] = c
        else:
            merged.append(c)
    # The windows' medians saturate once half of a window is past the shift, so the score
    # is flat within half a window of it: place each shift where two levels fit best.
    placed = sorted({_refine(z, max(0, c - k), min(m, c + k)) for c in merged} - {0})
    return _lasting(t, z, placed)


def _lasting(t: FloatArray, z: FloatArray, shifts: list[int]) -> list[int]:
    """The shifts without those undone within three days by a shift of opposite sign and similar size."""
    bounds = [0, *shifts, z.size]
    sizes = [float(np.median(z[c:bounds[n + 2]]) - np.median(z[bounds[n]:c])) for n, c in enumerate(shifts)]
    out: list[int] = []
    n = 0
    while n < len(shifts):
        if n + 1 < len(shifts) and t[shifts[n + 1]] - t[shifts[n]] <= 3 * DAY and sizes[n] * sizes[n + 1] < 0 \
                and 0.5 <= abs(sizes[n + 1] / sizes[n]) <= 2:
            n += 2
            continue
        out.append(shifts[n])
        n += 1
    return out


def _refine(z: FloatArray, lo: int, hi: int) -> int:
    """The split of ``z[lo:hi]`` into two runs that minimises the absolute deviations from their medians."""
    best, best_cost = lo + 1, math.inf
    for split in range(lo + 1, hi):
        left, right = z[lo:split], z[split:hi]
        cost = float(np.abs(left - np.median(left)).sum() + np.abs(right - np.median(right)).sum())
        if cost < best_cost:
            best, best_cost = split, cost
    return best


def _ar_coefficient(r: FloatArray) -> float:
    """Lag-1 autocorrelation of residuals (outliers clipped at 5 robust standard deviations), in [0, 0.999]."""
    if r.size < 3:
        return 0.0
    center = float(np.median(r))
    scale = MAD_SCALE * mad(r, center)
    if scale == 0:
        return 0.0
    w = np.clip(r - center, -5 * scale, 5 * scale)
    rho = float(np.sum(w[1:] * w[:-1]) / np.sum(w * w))
    return min(max(rho, 0.0), 0.999)


def _innovations(r: FloatArray, rho: float) -> FloatArray:
    """The innovations of AR(1) residuals, centred on their median."""
    u = r[1:] - rho * r[:-1] if r.size > 1 else r
    return np.asarray(u - float(np.median(u)))


def _ar_filter(u: FloatArray, rho: float, start: FloatArray) -> FloatArray:
    """Rows of x[t] = rho * x[t-1] + u[t] with x[-1] = ``start``: a scan over time in blocks, vectorised over rows.

    Within a block of length L, x[t] = rho^t * (x[-1] + sum(rho^-s * u[s] for s <= t)): a
    cumulative sum. L is kept short enough that rho^-L stays below e^18, far from overflow
    and from cancellation in float64.
    """
    if rho < 1e-3:
        return u + rho * start[:, None]
    n = u.shape[1]
    memory = int(math.ceil(math.log(1e-9) / math.log(rho)))
    if memory <= 48:
        # A short memory: the sum of a few shifted copies is faster than a scan.
        out = u.copy()
        for lag in range(1, min(memory, n)):
            out[:, lag:] += rho ** lag * u[:, :-lag]
        return out + start[:, None] * rho ** np.arange(1, n + 1)[None, :]
    block = max(1, min(n, int(18.0 / -math.log(rho))))
    steps = np.arange(1, block + 1, dtype=np.float64)
    up, down = rho ** steps, rho ** -steps
    out = np.empty_like(u)
    carry = start.astype(np.float64)
    for a in range(0, n, block):
        part = u[:, a:a + block]
        size = part.shape[1]
        x = up[:size] * (carry[:, None] + np.cumsum(part * down[:size], axis=1))
        out[:, a:a + size] = x
        carry = x[:, -1]
    return out


# -- the forecast --------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """How far a forecast looks and how much history it needs (the module docstring says why)."""

    horizon: timedelta = HORIZON
    min_span: timedelta = MIN_SPAN
    min_points: int = MIN_POINTS
    level: float = LEVEL  # of the interval: 0.95 gives the simulation's 2.5 % and 97.5 % quantiles
    replicates: int = REPLICATES
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.level < 1:
            raise ValueError(f"level must be between 0 and 1 (a 95% interval is 0.95), not {self.level}")
        if self.replicates < 20 or self.min_points < 3:
            raise ValueError("a forecast needs at least 20 replicates and 3 points")


@dataclass(frozen=True)
class _Fit:
    """The trend of the regime the forecast rests on, and what the simulation needs of the history."""

    width: int  # bucket width, seconds
    spacing: float  # median sampling interval, seconds
    t_end: float  # the last point's time
    seasonal: _Seasonal
    shifts: list[int]
    own: bool  # fitted on the buckets after the last shift alone
    since: float  # the first bucket the trend rests on
    first_raw: int  # the first point the trend rests on
    keys: IntArray  # each point's bucket
    regime_times: FloatArray  # the times of the buckets the trend rests on
    design: _Design
    fitted: FloatArray  # the trend at each bucket of the design (deseasonalised)
    residuals: FloatArray
    slope: float  # per second
    level: float  # of the last regime, at t_end
    method: str


def _fit(t: FloatArray, y: FloatArray, options: Options, rng: np.random.Generator) -> _Fit | str:
    """Buckets, seasonality, level shifts and the trend of the last regime; or why there is none."""
    spacing = float(np.median(np.diff(t)))
    span = float(t[-1] - t[0]) + spacing  # the time the history covers, its last sample's interval included
    if span < options.min_span.total_seconds():
        return f"the history spans {_duration(span)}; a forecast needs at least " \
               f"{_duration(options.min_span.total_seconds())}"
    width = _bucket_width(span, spacing)
    bt, by, keys = _buckets(t, y, width)
    m = bt.size
    if m < options.min_points:
        return f"{m} distinct {_width(width)} buckets; a forecast needs at least {options.min_points}"
    t_end = float(t[-1])
    rel = bt - t_end
    # Seasonality first (a strong weekly rhythm would look like shifts), then level shifts
    # on the deseasonalised series.
    per_day = max(1, int(round(DAY / width)))
    cycle = _cycle_slope(bt, by, width) if span >= WEEKLY_MIN_SPAN else None
    slope0 = cycle if cycle is not None else theil_sen(bt, by, seed=options.seed)
    seasonal = _seasonal(bt, by - slope0 * rel, width, span)
    x = by - seasonal.at(bt)
    shifts = _level_shifts(bt, x, slope0, per_day if span >= 4 * DAY else max(3, m // 8))
    segments = np.searchsorted(np.asarray(shifts, dtype=np.int64), np.arange(m), side="right").astype(np.int64)
    first = shifts[-1] if shifts else 0
    own = m - first >= options.min_points and t_end - bt[first] + spacing >= options.min_span.total_seconds()
    use = slice(first, m) if own else slice(0, m)
    design = _design(rel[use], segments[use] - segments[use][0] if own else segments, rng)
    slope = design.slopes(x[use][None, :])
    levels = design.levels(x[use][None, :], slope)
    fitted = design.fitted(slope, levels)[0]
    return _Fit(width, spacing, t_end, seasonal, shifts, own, float(bt[use][0]),
                int(np.searchsorted(keys, np.arange(m)[use][0])), keys, bt[use], design, fitted, x[use] - fitted,
                float(slope[0]), float(levels[0, -1]), _method(width, seasonal, shifts, own, bt, options.level))


@dataclass(frozen=True)
class _Tops:
    """The highest sample of each clock hour against the trend: its rhythm and its AR(1) deviations."""

    times: FloatArray  # hour starts
    profile: _Seasonal
    typical: float
    deviations: FloatArray  # less the profile and the typical value, glitches capped


def _hourly_tops(t: FloatArray, y: FloatArray, fit: _Fit) -> _Tops:
    """The limit is reached by the first sample above it, not by a bucket's median: the simulated
    future is that of each hour's highest sample, read here from the raw points."""
    raw_t, raw_y = t[fit.first_raw:], y[fit.first_raw:]
    raw_keys = fit.keys[fit.first_raw:] - fit.keys[fit.first_raw]
    raw_trend = fit.fitted[raw_keys] + fit.slope * (raw_t - fit.regime_times[raw_keys])
    real = ~_glitches(raw_y - raw_trend - fit.seasonal.at(raw_t))
    raw_t, raw_y, raw_trend = raw_t[real], raw_y[real], raw_trend[real]
    hours, hour_keys = np.unique(np.floor(raw_t / HOUR).astype(np.int64), return_inverse=True)
    hour_max, _ = group_max(hour_keys.astype(np.int64), raw_y - raw_trend, raw_t, hours.size)
    hour_t = hours.astype(np.float64) * HOUR
    profile = _top_profile(hour_t, hour_max, fit.seasonal)
    deviations = hour_max - profile.at(hour_t)
    # What glitches remain (in hourly data, say) are capped at 5 robust standard deviations.
    typical = float(np.median(deviations))
    deviations = np.minimum(deviations, typical + 5 * MAD_SCALE * mad(deviations, typical))
    return _Tops(hour_t, profile, typical, deviations - typical)


def _simulate(fit: _Fit, tops: _Tops, horizon_end: float, limit: float | None, options: Options,
              rng: np.random.Generator) -> tuple[FloatArray, tuple[ProjectionPoint, ...]]:
    """The sieve bootstrap: each replicate's first hour at or above the limit (inf if none), and the band.

    The residuals are an AR(1) process with resampled innovations; each replicate refits the
    trend on the fit plus simulated residuals, and continues into a future of hourly highest
    samples — another AR(1) process — from the last hour observed.
    """
    rho = _ar_coefficient(fit.residuals)
    innovations = _innovations(fit.residuals, rho)
    top_rho = _ar_coefficient(tops.deviations)
    top_innovations = _innovations(tops.deviations, top_rho)
    grid = tops.times[-1] + HOUR * np.arange(1, int((horizon_end - fit.t_end) // HOUR) + 1, dtype=np.float64)
    grid_end = np.minimum(grid + HOUR, horizon_end)
    grid_top = tops.profile.at(grid) + tops.typical
    crossing = np.full(options.replicates, np.inf)
    shown = np.linspace(0, grid.size - 1, min(CHART_POINTS, grid.size)).astype(np.int64)
    chart = np.empty((options.replicates, shown.size))
    last_hour_end = min(tops.times[-1] + HOUR, fit.t_end) - fit.t_end
    size = fit.residuals.size
    for lo in range(0, options.replicates, _CHUNK):
        rows = min(_CHUNK, options.replicates - lo)
        first = fit.residuals[rng.integers(0, size, rows)]
        simulated = _ar_filter(innovations[rng.integers(0, innovations.size, (rows, size))], rho, first)
        ystar = fit.fitted[None, :] + simulated
        b = fit.design.slopes(ystar, BOOT_PAIRS)
        level = fit.design.levels(ystar, b)[:, -1]
        # The last hour's deviation, against this replicate's trend rather than the fitted one.
        deviation = tops.deviations[-1] + (fit.level + fit.slope * last_hour_end) - (level + b * last_hour_end)
        future = _ar_filter(top_innovations[rng.integers(0, top_innovations.size, (rows, grid.size))], top_rho,
                            deviation)
        paths = level[:, None] + b[:, None] * (grid_end - fit.t_end)[None, :] + grid_top[None, :] + future
        chart[lo:lo + rows] = paths[:, shown]
        if limit is not None and grid.size:
            hit = paths >= limit
            # The hour's middle: the first sample above the limit is somewhere in it.
            crossing[lo:lo + rows] = np.where(hit.any(axis=1), grid[np.argmax(hit, axis=1)] + HOUR / 2, np.inf)
    lows, mids, highs = np.quantile(chart, [(1 - options.level) / 2, 0.5, (1 + options.level) / 2], axis=0)
    band = tuple(ProjectionPoint(to_datetime(float(grid_end[p])), float(lo), float(mid), float(hi))
                 for p, lo, mid, hi in zip(shown, lows, mids, highs, strict=True))
    return crossing, band


def forecast(metric: str, times: Sequence[datetime] | FloatArray, values: Sequence[float | None] | FloatArray, *,
             limit: float | None = None, target: str | None = None, subject: str | None = None,
             options: Options = Options()) -> Forecast | NoForecast:
    """Forecast ``metric`` from its points: growth per day and when it reaches ``limit``.

    ``times`` are aware datetimes or epoch seconds; values of None are skipped. The result
    is deterministic for a given input and ``options.seed``. Too few points or too short a
    history give a :class:`NoForecast` that says so.
    """
    t, y = as_arrays(times, values)
    current = float(y[-1]) if t.size else None
    if t.size < options.min_points:
        points = f"{t.size} point{'' if t.size == 1 else 's'}"
        return NoForecast(metric, target, int(t.size), f"{points}; a forecast needs at least {options.min_points}",
                          current, limit, subject)
    rng = np.random.default_rng(options.seed)
    fit = _fit(t, y, options, rng)
    if isinstance(fit, str):
        return NoForecast(metric, target, int(t.size), fit, current, limit, subject)
    tops = _hourly_tops(t, y, fit)
    horizon_end = fit.t_end + min(options.horizon.total_seconds(),
                                  EXTRAPOLATION * (fit.t_end - float(t[fit.first_raw]) + fit.spacing))
    crossing, band = _simulate(fit, tops, horizon_end, limit, options, rng)
    growth = fit.slope * DAY
    result = Forecast(metric=metric, target=target, subject=subject, current=float(y[-1]),
                      growth_per_day=_round(growth), limit=limit, reaches_limit_at=None, interval=Interval(None, None),
                      points=int(t.size - fit.first_raw), method=fit.method, last_at=to_datetime(fit.t_end),
                      since=to_datetime(fit.since), horizon_end=to_datetime(horizon_end), level=fit.level,
                      projection=band)
    if limit is None:
        return result
    if result.current >= limit:
        now = to_datetime(fit.t_end)
        return replace(result, reaches_limit_at=now, interval=Interval(now, now))
    if growth <= 0:
        return result
    n = options.replicates
    ordered = np.sort(crossing)
    point = ordered[n // 2]
    low = ordered[int(math.floor((1 - options.level) / 2 * n))]
    high = ordered[min(n - 1, int(math.ceil((1 + options.level) / 2 * n)) - 1)]
    if not np.isfinite(point):
        return result
    return replace(result, reaches_limit_at=to_datetime(float(point)),
                   interval=Interval(to_datetime(float(low)), to_datetime(float(high)) if np.isfinite(high) else None))


def _round(value: float) -> float:
    """Six significant digits: enough for any growth rate, no float noise in the JSON."""
    return float(f"{value:.6g}")


def _method(width: int, seasonal: _Seasonal, shifts: list[int], own: bool, bt: FloatArray, level: float) -> str:
    parts = [f"theil-sen trend over {_width(width)} medians"]
    if seasonal.label:
        parts.append(f"{seasonal.label} seasonality")
    if shifts:
        at = iso(to_datetime(float(bt[shifts[-1]])))
        if own:
            parts.append(f"fitted after the level shift at {at}")
        else:
            parts.append(f"slope within {len(shifts) + 1} regimes, level after the shift at {at}")
    parts.append(f"{round(level * 100)}% sieve-bootstrap interval")
    return ", ".join(parts)


# -- words ---------------------------------------------------------------------------------


def _width(seconds: int) -> str:
    """A bucket width as an adjective: "30-minute", "5-second"."""
    return f"{seconds // 60}-minute" if seconds >= 60 else f"{seconds}-second"


def _duration(seconds: float) -> str:
    """Whole days, hours, minutes or seconds, rounded down: a history 5 minutes short of two days
    "spans 47 hours", not 48, when two days are needed."""
    for unit, name in ((DAY, "days"), (HOUR, "hours"), (60.0, "minutes")):
        if seconds >= 2 * unit:
            return f"{math.floor(seconds / unit + 1e-9)} {name}"
    return f"{math.floor(seconds + 1e-9)} seconds"


def _amount(value: float, unit: str) -> str:
    if unit == "bytes":
        n = abs(value)
        for name in ("bytes", "kB", "MB", "GB", "TB", "PB"):
            if n < 1024 or name == "PB":
                sign = "-" if value < 0 else ""
                return f"{sign}{n:,.0f} bytes" if name == "bytes" else f"{sign}{n:,.1f} {name}"
            n /= 1024
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "xids":
        return f"{value / 1e6:,.1f}M transaction IDs" if abs(value) >= 1e5 else f"{value:,.0f} transaction IDs"
    if unit == "connections" and float(value).is_integer():
        return f"{value:,.0f}"
    if unit:
        return f"{value:,.1f} {unit}"
    return f"{value:,.3g}"


def _count(seconds: float, unit: float) -> str:
    return f"{max(0.0, seconds) / unit:.0f}"


def describe(result: Forecast | NoForecast) -> str:
    """One sentence: "disk full in 46 days, between 41 and 52"."""
    kind = METRICS.get(result.metric, MetricKind(result.metric.replace("_", " "), "it reaches {limit}", ""))
    who = f"statement {result.subject}: " if result.metric == "statement_mean_time_ms" and result.subject else ""
    limit = _amount(result.limit, kind.unit) if result.limit is not None else "its limit"
    reached = kind.reached.format(limit=limit)
    if isinstance(result, NoForecast):
        return f"{who}no {kind.noun} forecast: {result.reason}"
    growth = f"{_amount(result.growth_per_day, kind.unit)} per day"
    grows = kind.verb("grows", "grow")
    if result.growth_per_day <= 0:
        return f"{who}{kind.noun} {kind.verb('is', 'are')} not growing ({growth})"
    if result.limit is None:
        return f"{who}{kind.noun} {grows} by {growth}"
    last = result.last_at or result.since
    at = result.reaches_limit_at
    if at is None or last is None:
        end = result.horizon_end
        days = f" within {_count((end - last).total_seconds(), DAY)} days" if end is not None and last is not None else ""
        return f"{who}{kind.noun} {grows} by {growth}; not expected to reach {limit}{days}"
    if at <= last:
        return f"{who}{reached} now"
    ahead = (at - last).total_seconds()
    unit, name = (DAY, "days") if ahead >= 2 * DAY else (HOUR, "hours")
    low = _count((result.interval.low - last).total_seconds(), unit) if result.interval.low else "now"
    if result.interval.high is not None:
        high = _count((result.interval.high - last).total_seconds(), unit)
    else:
        end = result.horizon_end
        high = f"more than {_count((end - last).total_seconds(), unit)}" if end is not None else "later"
    point = _count(ahead, unit)
    if low == point == high:  # a series without noise: the interval is within the unit
        return f"{who}{reached} in {point} {name}"
    return f"{who}{reached} in {point} {name}, between {low} and {high}"
