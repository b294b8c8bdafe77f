"""Seasonal baselines for anomaly detection: a value against the same hour of other days first.

reports/anomalies.py compares the highest value of a report's window with one global
baseline (the median and MAD of the whole baseline period), so a nightly batch that is
normal every night is flagged every night. Here each clock hour of the window is judged
against the most specific baseline the history allows:

1. **same hour of the week** — the peaks of that hour of the week in the other weeks, when
   at least ``MIN_WEEKS`` (3) other weeks have one (four weeks of history);
2. **same hour of the day** — the peaks of that hour in the other days, when at least
   ``MIN_DAYS`` (6) other days have one (a week of history);
3. **global** — the median and MAD of every value of the period, as anomalies.py does.

The seasonal baselines compare like with like: an hour's observation is its highest value
(``peaks``), and so are the other days' values of that hour. Each other day contributes
its highest value from ``tolerance`` (15 minutes, at least one sampling interval) before
the hour to as long after it, so that a batch that starts at 01:55 one night and 02:05
the next is still "the same hour"; a wider tolerance also lets a batch move by an hour
(daylight saving time) but hides a spike next to a busy hour (bench/forecast_backtest.py
measures both). The other days are all the days of the series but the judged one,
before and after it: a series of 14 nights of batches judges each night against the other
13. Hours are UTC hours.

A value is flagged when the baseline's rule (:class:`SpikeRule`: the robust z-score and the
floors and factors of anomalies.py) says so; the finding names the baseline that judged it
("same hour of day over 14 days"). A value that is normal for its hour is not flagged,
however far it is from the global median.

anomalies.py can call :func:`detect_spikes` with the series it already reads: for a
statement, the builder's points ``(bucket, mean, peak)`` (``times``, ``values``, ``peaks``),
and for a resource the samples ``(t, value)``, over the baseline period, with the report's
start as ``window_start`` and :meth:`SpikeRule.for_statements` or
:meth:`SpikeRule.for_resource` as the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from ._numpy import np
from ._robust import MAD_SCALE, as_arrays, group_max, mad, to_datetime
from .model import ReportSettings

if TYPE_CHECKING:
    from ._robust import FloatArray

__all__ = ["MIN_DAYS", "MIN_WEEKS", "TOLERANCE", "Baseline", "SpikeRule", "Verdict", "detect_spikes", "judge_hours"]

HOUR = 3600.0
DAY = 86400.0
MIN_DAYS = 6
MIN_WEEKS = 3
# An hour of another day is its highest value from this long before the hour to this long after it.
TOLERANCE = timedelta(minutes=15)

BaselineKind = Literal["hour_of_week", "hour_of_day", "global"]


@dataclass(frozen=True)
class SpikeRule:
    """When an observation is a spike against a baseline's median and MAD (anomalies.py's rule).

    The score is ``(observed - median) / scale`` with the scale ``1.4826 * MAD`` floored at
    ``scale_floor`` and at ``relative_floor`` times the median; a spike needs a score above
    ``z``, a rise of at least ``min_rise`` and, if set, ``observed >= min_factor * median``
    (with a positive median when ``positive_baseline``).
    """

    z: float = 3.5
    min_rise: float = 0.0
    min_factor: float | None = None
    scale_floor: float = 0.0
    relative_floor: float = 0.0
    positive_baseline: bool = False

    @classmethod
    def for_statements(cls, settings: ReportSettings) -> SpikeRule:
        """A statement's mean time, as the anomaly SQL of reports/builder.py judges it."""
        return cls(z=settings.anomaly_z, min_factor=settings.thresholds.query_spike_factor, scale_floor=0.01,
                   relative_floor=0.05, positive_baseline=True)

    @classmethod
    def for_resource(cls, name: str, settings: ReportSettings) -> SpikeRule:
        """CPU and memory percentages and connection counts, as anomalies.resource_anomaly judges them."""
        rules = {"cpu": cls(z=settings.anomaly_z, min_rise=20.0, scale_floor=1.0),
                 "memory": cls(z=settings.anomaly_z, min_rise=10.0, scale_floor=1.0),
                 "connections": cls(z=settings.anomaly_z, min_rise=5.0, min_factor=2.0, scale_floor=1.0)}
        if name not in rules:
            raise ValueError(f"no spike rule for resource {name!r}; known: {', '.join(sorted(rules))}")
        return rules[name]

    def score(self, observed: float, median: float, mad_: float) -> float:
        scale = max(MAD_SCALE * mad_, self.scale_floor, self.relative_floor * abs(median))
        if scale <= 0:
            return float("inf") if observed > median else 0.0
        return (observed - median) / scale

    def flags(self, observed: float, median: float, mad_: float) -> bool:
        if self.positive_baseline and median <= 0:
            return False
        if self.score(observed, median, mad_) <= self.z or observed - median < self.min_rise:
            return False
        return self.min_factor is None or observed >= self.min_factor * median


@dataclass(frozen=True)
class Baseline:
    """What an observation was compared with."""

    kind: BaselineKind
    median: float
    mad: float
    points: int  # values in the baseline (other days or weeks; every value for the global one)
    days: float  # the span of the series the baseline was read from

    def describe(self) -> str:
        """ "same hour of day over 14 days", "same hour of week over 4 weeks", "global over 7 days"."""
        if self.kind == "hour_of_week":
            return f"same hour of week over {self.days / 7:.0f} weeks"
        if self.kind == "hour_of_day":
            return f"same hour of day over {self.days:.0f} days"
        seconds = self.days * DAY
        for unit, name in ((DAY, "days"), (HOUR, "hours"), (60.0, "minutes")):
            if seconds >= 1.5 * unit:
                return f"global over {seconds / unit:.0f} {name}"
        return f"global over {seconds:.0f} seconds"


@dataclass(frozen=True)
class Verdict:
    """One clock hour of the window: its highest value, the baseline that judged it, and the verdict."""

    at: datetime  # the time of the hour's highest value
    observed: float
    baseline: Baseline
    score: float
    factor: float | None  # observed / the baseline's median (None when the median is 0)
    flagged: bool

    @property
    def flagged_by(self) -> str:
        return self.baseline.describe()


def _baseline(values: FloatArray, kind: BaselineKind, days: float) -> Baseline:
    center = float(np.median(values))
    return Baseline(kind, center, mad(values, center), int(values.size), days)


def judge_hours(times: Sequence[datetime] | FloatArray, values: Sequence[float | None] | FloatArray, *,
                window_start: datetime | float, rule: SpikeRule, peaks: Sequence[float | None] | FloatArray | None = None,
                tolerance: timedelta = TOLERANCE, min_days: int = MIN_DAYS, min_weeks: int = MIN_WEEKS) -> list[Verdict]:
    """A verdict for every clock hour from ``window_start`` to the end of the series.

    ``times`` and ``values`` cover the whole baseline period (the window included); the
    global baseline is their median and MAD. ``peaks`` are the observations (a bucket's
    highest value when ``values`` are its means; ``values`` themselves by default).
    """
    t, v = as_arrays(times, values)
    if peaks is None:
        tp, p = t, v
    else:
        tp, p = as_arrays(times, peaks)
    if t.size == 0 or tp.size == 0:
        return []
    start = window_start.timestamp() if isinstance(window_start, datetime) else float(window_start)
    # The span the series covers, its last interval included (a day of 5-minute samples: 24 hours).
    spacing = float(np.median(np.diff(tp))) if tp.size > 1 else HOUR
    days = (max(t[-1], tp[-1]) - min(t[0], tp[0]) + spacing) / DAY
    overall = _baseline(v, "global", days)

    # Hourly peaks on a dense grid of hours (NaN where an hour has no value).
    first = int(np.floor(tp[0] / HOUR))
    index = np.floor(tp / HOUR).astype(np.int64) - first
    n = int(index[-1]) + 1
    peak, peak_at = group_max(index, p, tp, n)
    # The other days' value for an hour: their highest from ``tolerance`` before the hour to
    # ``tolerance`` after it; at least a sampling interval, so that hourly points (rollups)
    # take their neighbours in: a batch at 02:55 lands in hour 02 one night and 03 the next.
    tol = tolerance.total_seconds()
    if tol > 0 and tp.size > 1:
        tol = max(tol, float(np.median(np.diff(tp))))
    tolerant = peak
    if tol > 0:
        starts = (first + np.arange(n)) * HOUR
        lo = np.searchsorted(tp, starts - tol)
        hi = np.searchsorted(tp, starts + HOUR + tol)
        # Overlapping windows in one call: reduceat over [lo0, hi0, lo1, hi1, ...] reduces
        # each [lo, hi) at even positions (the odd ones, between windows, are dropped); a
        # sentinel makes the index len(p) valid.
        padded = np.append(p, -np.inf)
        maxima = np.maximum.reduceat(padded, np.column_stack((lo, hi)).ravel())[::2]
        tolerant = np.where(hi > lo, maxima, np.nan)

    levels: tuple[tuple[BaselineKind, int, int], ...] = (("hour_of_week", 168, min_weeks), ("hour_of_day", 24, min_days))
    out: list[Verdict] = []
    for k in np.nonzero(np.isfinite(peak))[0]:
        if peak_at[k] < start:
            continue
        baseline = overall
        for kind, period, needed in levels:
            others = np.concatenate((tolerant[k - period::-period] if k >= period else tolerant[:0],
                                     tolerant[k + period::period]))
            others = others[np.isfinite(others)]
            if others.size >= needed:
                baseline = _baseline(others, kind, days)
                break
        observed = float(peak[k])
        verdict_score = rule.score(observed, baseline.median, baseline.mad)
        out.append(Verdict(to_datetime(float(peak_at[k])), observed, baseline, round(verdict_score, 2),
                           round(observed / baseline.median, 2) if baseline.median > 0 else None,
                           rule.flags(observed, baseline.median, baseline.mad)))
    return out


def detect_spikes(times: Sequence[datetime] | FloatArray, values: Sequence[float | None] | FloatArray, *,
                  window_start: datetime | float, rule: SpikeRule,
                  peaks: Sequence[float | None] | FloatArray | None = None, tolerance: timedelta = TOLERANCE,
                  min_days: int = MIN_DAYS, min_weeks: int = MIN_WEEKS) -> list[Verdict]:
    """The flagged hours of the window, highest score first (see :func:`judge_hours`)."""
    verdicts = judge_hours(times, values, window_start=window_start, rule=rule, peaks=peaks,
                           tolerance=tolerance, min_days=min_days, min_weeks=min_weeks)
    return sorted((v for v in verdicts if v.flagged), key=lambda v: (-v.score, v.at))
