"""The forecasts of a report and of ``GET /api/v1/forecasts``: which series, read from the
store, against which limits (the arithmetic is ``forecast.py``'s).

=========================  ===========================================  ==========================================
metric                     series                                       limit
=========================  ===========================================  ==========================================
``disk_usage_bytes``       the data directory's filesystem, used bytes  its size (the latest ``disk_total_bytes``),
                           (the host collector: pgperf on the database  or ``reports.forecast.disk_limit_bytes``
                           host)
``database_size_bytes``    the databases' total size                    the size at which that disk is full: the
                                                                        size plus the disk's free space at the
                                                                        last sample; none without the disk
``connections``            connections                                  ``max_connections`` (the latest)
``transaction_id_age``     the oldest database's ``age(datfrozenxid)``  2^31 less 3 million: PostgreSQL refuses to
                                                                        assign transaction IDs from there on
``statement_mean_time_ms`` a top statement's mean time per hour         none: its growth only
=========================  ===========================================  ==========================================

The history is the ``reports.forecast.history_days`` before the report's end: every
resource sample (thinned beyond 100,000, see ``queries.FORECAST_MAX_SAMPLES``), and for
statements the hourly rollups of the complete hours and the raw rows of the others summed
per hour. The statements are the report's top ``reports.forecast.statements`` by total time.
A series the store holds nothing of gets a forecast entry with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..collectors.wraparound import WRAPAROUND_XIDS
from ._numpy import np
from ._robust import group_medians, to_datetime
from .forecast import METRICS, Forecast, Interval, NoForecast, Options, describe, forecast
from .model import ForecastDetail, ForecastEntry, ReportSettings
from .queries import ReportQueries, ResourceHistory

if TYPE_CHECKING:
    from ._robust import FloatArray

__all__ = ["RESOURCE_METRICS", "XID_STOP_AGE", "Made", "forecast_of", "make_forecasts", "options"]

#: PostgreSQL stops assigning transaction IDs 3 million before the wraparound horizon
#: (``xidStopLimit``; "Preventing Transaction ID Wraparound Failures", Routine Vacuuming).
XID_STOP_AGE = WRAPAROUND_XIDS - 3_000_000
#: The resource forecasts, in the order of the report.
RESOURCE_METRICS = ("disk_usage_bytes", "database_size_bytes", "connections", "transaction_id_age")
# Points of a chart: the observed series (bucket medians) and the projected band.
CHART_OBSERVED = 120
CHART_BAND = 60

_MISSING = {
    "disk_usage_bytes": "no disk usage in the stored samples (pgperf measures the disk when it runs on the "
                        "database host)",
    "database_size_bytes": "no database size in the stored samples (the database_size collector is off)",
    "connections": "no connection count in the stored samples",
    "transaction_id_age": "no transaction ID age in the stored samples (the wraparound collector is off, or the "
                          "samples predate it)",
}


def options(settings: ReportSettings) -> Options:
    """The forecast options of ``reports.forecast``."""
    f = settings.forecast
    return Options(horizon=timedelta(days=f.horizon_days), min_span=timedelta(seconds=f.min_history))


@dataclass(frozen=True)
class Made:
    """A forecast and the series it was made from (epoch seconds, values)."""

    forecast: Forecast | NoForecast
    t: FloatArray
    y: FloatArray
    chart: bool

    def entry(self) -> ForecastEntry:
        return ForecastEntry.model_validate(self.forecast.to_dict())

    def detail(self) -> ForecastDetail:
        f = self.forecast
        kind = METRICS[f.metric]
        made = isinstance(f, Forecast)
        return ForecastDetail.model_validate({
            "metric": f.metric, "subject": f.subject, "sentence": describe(f), "unit": kind.unit,
            "last_at": f.last_at if isinstance(f, Forecast) else None,
            "since": f.since if isinstance(f, Forecast) else None,
            "horizon_end": f.horizon_end if isinstance(f, Forecast) else None,
            "level": f.level if isinstance(f, Forecast) else None,
            "observed": _observed(self.t, self.y) if made and self.chart else [],
            "projection": _band(f) if isinstance(f, Forecast) and self.chart else [],
        })


def _observed(t: FloatArray, y: FloatArray) -> list[dict[str, object]]:
    """The series as at most CHART_OBSERVED medians of equal stretches of time."""
    if t.size <= CHART_OBSERVED:
        return [{"t": to_datetime(float(a)), "value": float(b)} for a, b in zip(t, y, strict=True)]
    span = float(t[-1] - t[0]) or 1.0
    keys = np.minimum((t - t[0]) / span * CHART_OBSERVED, CHART_OBSERVED - 1).astype(np.int64)
    medians, counts = group_medians(keys, y, CHART_OBSERVED)
    times = np.bincount(keys, weights=t, minlength=CHART_OBSERVED) / np.maximum(counts, 1)
    return [{"t": to_datetime(float(a)), "value": float(b)} for a, b, n in zip(times, medians, counts, strict=True)
            if n > 0]


def _band(f: Forecast) -> list[dict[str, object]]:
    """The projected band up to where the chart ends: a little past the interval's end when the
    limit is reached, else as far ahead as the history reaches back (within the horizon)."""
    if not f.projection or f.last_at is None or f.horizon_end is None:
        return []
    last, horizon = f.last_at, f.horizon_end
    if f.reaches_limit_at is not None:
        end = f.interval.high or horizon
        end = min(horizon, end + (end - last) * 0.1)
    else:
        behind = last - (f.since or last)
        end = min(horizon, last + max(behind, timedelta(days=1)))
    points = [p for p in f.projection if p.at <= end] or list(f.projection[:1])
    step = max(1, math.ceil(len(points) / CHART_BAND))
    shown = points[::step]
    if shown[-1] is not points[-1]:
        shown.append(points[-1])
    return [{"t": p.at, "low": p.low, "mid": p.mid, "high": p.high} for p in shown]


def _last(values: FloatArray) -> float | None:
    known = values[np.isfinite(values)]
    return float(known[-1]) if known.size else None


def _resource(metric: str, t: FloatArray, y: FloatArray, limit: float | None, target: str,
              settings: ReportSettings) -> Made:
    keep = np.isfinite(y)
    if not keep.any():
        return Made(NoForecast(metric, target, 0, _MISSING[metric], None, limit), t[:0], y[:0], False)
    t, y = t[keep], y[keep]
    return Made(forecast(metric, t, y, limit=limit, target=target, options=options(settings)), t, y, True)


def resource_forecasts(history: ResourceHistory, target: str, settings: ReportSettings,
                       metric: str | None = None) -> list[Made]:
    """The resource forecasts of *history* (only *metric*'s when given)."""
    used, total = _last(history.disk_used), _last(history.disk_total)
    disk_limit = float(settings.forecast.disk_limit_bytes) if settings.forecast.disk_limit_bytes else total
    size = _last(history.database_size)
    size_limit = size + (disk_limit - used) if size is not None and used is not None and disk_limit is not None \
        else None
    series = {
        "disk_usage_bytes": (history.disk_used, disk_limit),
        "database_size_bytes": (history.database_size, size_limit),
        "connections": (history.connections, _last(history.max_connections)),
        "transaction_id_age": (history.xid_age, float(XID_STOP_AGE)),
    }
    return [_resource(name, history.t, values, limit, target, settings)
            for name, (values, limit) in series.items() if metric in (None, name)]


def statement_forecasts(histories: dict[str, tuple[FloatArray, FloatArray]], target: str,
                        settings: ReportSettings) -> list[Made]:
    """The mean time forecast of each statement of *histories* (query id -> hourly points)."""
    out = []
    for qid, (t, y) in histories.items():
        f = forecast("statement_mean_time_ms", t, y, target=target, subject=qid, options=options(settings))
        out.append(Made(f, t, y, False))
    return out


def make_forecasts(queries: ReportQueries, target: str, end: datetime, statements: Sequence[str], *,
                   start: datetime | None = None, metric: str | None = None) -> list[Made]:
    """Every forecast of *target* from the history ``[start, end)`` (by default the
    ``reports.forecast.history_days`` before *end*): the resources', then each of
    *statements*' (query ids); only *metric*'s when given."""
    settings = queries.settings
    if start is None:
        start = end - timedelta(days=settings.forecast.history_days)
    made: list[Made] = []
    if metric is None or metric in RESOURCE_METRICS:
        made += resource_forecasts(queries.resource_history(target, start, end), target, settings, metric)
    if metric in (None, "statement_mean_time_ms") and statements:
        made += statement_forecasts(queries.statement_history(target, statements, start, end), target, settings)
    return made


def forecast_of(entry: ForecastEntry, detail: ForecastDetail | None) -> Forecast | NoForecast:
    """The forecast a report's entry and detail describe (for the advice made of it)."""
    if entry.reason is not None or entry.growth_per_day is None or entry.method is None or entry.current is None:
        return NoForecast(entry.metric, entry.target, entry.points, entry.reason or "no forecast", entry.current,
                          entry.limit, entry.subject)
    return Forecast(metric=entry.metric, target=entry.target, current=entry.current,
                    growth_per_day=entry.growth_per_day, limit=entry.limit, reaches_limit_at=entry.reaches_limit_at,
                    interval=Interval(entry.interval.low, entry.interval.high), points=entry.points,
                    method=entry.method, subject=entry.subject, last_at=detail.last_at if detail else None,
                    since=detail.since if detail else None, horizon_end=detail.horizon_end if detail else None,
                    level=detail.level if detail else None)

