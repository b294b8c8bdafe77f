"""Capacity forecasts (reports/forecast.py) and the advice made of them (reports/capacity.py).

Unit tests on synthetic series with a known answer: the growth rate, the date a limit is
reached, level shifts, short histories. Calibration over many random histories is the
backtest's job (bench/forecast_backtest.py); here each property is checked on a few.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgperf.reports.capacity import advise
from pgperf.reports.forecast import (
    MIN_SPAN,
    Forecast,
    Interval,
    NoForecast,
    Options,
    describe,
    forecast,
    theil_sen,
)

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0
# 2026-06-01T00:00:00Z, a Monday.
T0 = 1_780_272_000.0
GB = 1e9


def series(days: float, interval: float, *, growth: float, level: float = 50 * GB, noise: float = 0.0,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``days`` of samples every ``interval`` seconds ending at T0 + days: level + growth per day + noise."""
    rng = np.random.default_rng(seed)
    t = T0 + interval * np.arange(int(days * DAY / interval))
    return t, level + growth * (t - T0) / DAY + noise * rng.normal(size=t.size)


def days_after(f: Forecast, at: datetime | None) -> float:
    assert at is not None and f.last_at is not None
    return (at - f.last_at).total_seconds() / DAY


def true_days(t: np.ndarray, level: float, growth: float, limit: float) -> float:
    """Days from the last sample until level + growth * days reaches the limit."""
    return (T0 + (limit - level) / growth * DAY - t[-1]) / DAY


def first_passage_days(t: np.ndarray, level: float, growth: float, noise: float, limit: float,
                       futures: int = 100) -> np.ndarray:
    """Days from the last sample to the first future sample at or above the limit, in simulated futures
    of the same process (the samples go on every ``t[1] - t[0]`` seconds)."""
    rng = np.random.default_rng(99)
    interval = t[1] - t[0]
    ahead = t[-1] + interval * np.arange(1, int((true_days(t, level, growth, limit) + 1) * DAY / interval) + 1)
    trend = level + growth * (ahead - T0) / DAY
    out = []
    for _ in range(futures):
        hit = np.nonzero(trend + noise * rng.normal(size=ahead.size) >= limit)[0]
        out.append((ahead[hit[0]] - t[-1]) / DAY)
    return np.array(out)


# -- growth and dates ----------------------------------------------------------------------


def test_linear_growth_recovered_with_its_date() -> None:
    t, y = series(30, 300, growth=2 * GB, noise=0.3 * GB)
    limit = 200 * GB
    f = forecast("disk_usage_bytes", t, y, limit=limit, target="db1")
    assert isinstance(f, Forecast)
    assert f.growth_per_day == pytest.approx(2 * GB, rel=0.02)
    # The trend reaches the limit 45 days after the last sample; noisy samples reach it a few hours earlier.
    truth = first_passage_days(t, 50 * GB, 2 * GB, 0.3 * GB, limit)
    assert true_days(t, 50 * GB, 2 * GB, limit) == pytest.approx(45, abs=0.01)
    assert days_after(f, f.reaches_limit_at) == pytest.approx(float(np.median(truth)), abs=0.5)
    low, high = days_after(f, f.interval.low), days_after(f, f.interval.high)
    assert low <= float(np.quantile(truth, 0.1)) and float(np.quantile(truth, 0.9)) <= high
    assert f.points == t.size and f.target == "db1"
    assert f.current == pytest.approx(y[-1])


def test_interval_contains_the_truth_on_clean_data_and_is_narrow() -> None:
    t, y = series(14, 60, growth=1 * GB)
    f = forecast("disk_usage_bytes", t, y, limit=80 * GB)
    assert isinstance(f, Forecast)
    truth = true_days(t, 50 * GB, 1 * GB, 80 * GB)
    low, high = days_after(f, f.interval.low), days_after(f, f.interval.high)
    # The dates are hours (the simulation's grid): within an hour of the truth.
    assert low - 1 / 24 <= truth <= high + 1 / 24
    assert high - low <= 2 / 24
    assert f.growth_per_day == pytest.approx(1 * GB, rel=1e-6)


def test_noise_widens_the_interval() -> None:
    clean = forecast("disk_usage_bytes", *series(14, 300, growth=GB, noise=0.01 * GB), limit=90 * GB)
    noisy = forecast("disk_usage_bytes", *series(14, 300, growth=GB, noise=1.0 * GB), limit=90 * GB)
    assert isinstance(clean, Forecast) and isinstance(noisy, Forecast)
    assert clean.interval.low and clean.interval.high and noisy.interval.low and noisy.interval.high

    def width(f: Forecast) -> float:
        assert f.interval.low and f.interval.high
        return (f.interval.high - f.interval.low).total_seconds()

    assert width(noisy) > 5 * width(clean)


def test_hourly_rollups_give_the_same_answer_as_minutes() -> None:
    minutes = forecast("disk_usage_bytes", *series(30, 60, growth=GB, noise=0.2 * GB), limit=150 * GB)
    hours = forecast("disk_usage_bytes", *series(30, 3600, growth=GB, noise=0.2 * GB), limit=150 * GB)
    assert isinstance(minutes, Forecast) and isinstance(hours, Forecast)
    assert "60-minute medians" in hours.method and "30-minute medians" in minutes.method
    assert hours.growth_per_day == pytest.approx(minutes.growth_per_day, rel=0.02)
    assert abs(days_after(hours, hours.reaches_limit_at) - days_after(minutes, minutes.reaches_limit_at)) < 2


def test_datetimes_and_missing_values_are_accepted() -> None:
    t, y = series(3, 600, growth=GB)
    times = [datetime.fromtimestamp(x, UTC) for x in t]
    values: list[float | None] = [float(v) for v in y]
    values[10] = None
    values[20] = math.nan
    f = forecast("database_size_bytes", times, values, limit=60 * GB)
    assert isinstance(f, Forecast)
    assert f.points == t.size - 2
    assert f.growth_per_day == pytest.approx(GB, rel=1e-6)


def test_bad_input_is_refused_with_its_reason() -> None:
    t, y = series(3, 600, growth=GB)
    with pytest.raises(ValueError, match="differ in length"):
        forecast("disk_usage_bytes", t, y[:-1])
    naive = [datetime(2026, 6, 1) + timedelta(minutes=10 * i) for i in range(t.size)]
    with pytest.raises(ValueError, match="no time zone"):
        forecast("disk_usage_bytes", naive, list(y))
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        forecast("disk_usage_bytes", t, y, options=Options(level=90))


def test_same_input_same_forecast() -> None:
    t, y = series(10, 300, growth=GB, noise=0.5 * GB, seed=3)
    assert forecast("disk_usage_bytes", t, y, limit=80 * GB) == forecast("disk_usage_bytes", t, y, limit=80 * GB)


# -- level shifts, glitches, seasonality ---------------------------------------------------


def test_a_level_shift_is_followed() -> None:
    """A VACUUM FULL gives back 20 GB on day 20: the date follows the level after it."""
    t, y = series(30, 300, growth=GB, noise=0.1 * GB)
    shift_at = T0 + 20 * DAY
    y[t >= shift_at] -= 20 * GB
    f = forecast("disk_usage_bytes", t, y, limit=100 * GB)
    assert isinstance(f, Forecast)
    assert "level shift at 2026-06-21T00:" in f.method
    assert f.since is not None and abs(f.since.timestamp() - shift_at) <= 3600
    assert f.growth_per_day == pytest.approx(GB, rel=0.05)
    truth = first_passage_days(t, 30 * GB, GB, 0.1 * GB, 100 * GB)  # the level after the shift: 20 GB lower
    assert days_after(f, f.interval.low) <= float(np.quantile(truth, 0.1))
    assert float(np.quantile(truth, 0.9)) <= days_after(f, f.interval.high)


def test_a_recent_shift_shares_the_slope_of_the_history() -> None:
    """A data load 6 hours ago: too little history after it for a slope of its own."""
    t, y = series(14, 300, growth=GB, noise=0.05 * GB)
    y[t >= t[-1] - 6 * 3600] += 10 * GB
    f = forecast("disk_usage_bytes", t, y, limit=100 * GB)
    assert isinstance(f, Forecast)
    assert "slope within 2 regimes" in f.method
    assert f.growth_per_day == pytest.approx(GB, rel=0.05)
    truth = true_days(t, 60 * GB, GB, 100 * GB)
    assert days_after(f, f.reaches_limit_at) == pytest.approx(truth, abs=1.0)


def test_a_weekend_dip_is_no_level_shift() -> None:
    t, y = series(10, 600, growth=GB, noise=0.05 * GB)
    weekday = np.floor((t - T0) / DAY).astype(int) % 7
    y[(weekday == 5) | (weekday == 6)] -= 3 * GB
    y = y[t < T0 + 9 * DAY]  # ends on a Wednesday, after the weekend
    t = t[t < T0 + 9 * DAY]
    f = forecast("disk_usage_bytes", t, y, limit=100 * GB)
    assert isinstance(f, Forecast)
    assert "shift" not in f.method


def test_glitches_do_not_move_the_date() -> None:
    t, y = series(14, 60, growth=GB, noise=0.05 * GB, seed=5)
    clean = forecast("disk_usage_bytes", t, y, limit=80 * GB)
    rng = np.random.default_rng(6)
    glitched = y.copy()
    spots = rng.choice(t.size, 20, replace=False)
    glitched[spots] += 25 * GB  # a sample now and then far above (and beyond the limit)
    f = forecast("disk_usage_bytes", t, glitched, limit=80 * GB)
    assert isinstance(clean, Forecast) and isinstance(f, Forecast)
    assert abs(days_after(f, f.reaches_limit_at) - days_after(clean, clean.reaches_limit_at)) < 0.5


def test_a_daily_rhythm_dates_the_limit_at_the_daily_peak() -> None:
    """Connections peak every afternoon: the limit is first reached at a peak, days before the mean reaches it."""
    t, y = series(21, 300, growth=1.0, level=40, noise=1.0)
    hour = (t % DAY) / 3600
    y = y + 20 * np.exp(-((hour - 15) ** 2) / 4)  # +20 connections around 15:00 UTC
    f = forecast("connections", t, np.round(y), limit=100)
    assert isinstance(f, Forecast)
    assert "daily" in f.method
    assert f.reaches_limit_at is not None and 12 <= f.reaches_limit_at.hour <= 18
    mean_reaches = true_days(t, 40, 1.0, 100)
    assert days_after(f, f.reaches_limit_at) < mean_reaches - 10


def test_noise_is_not_taken_for_a_rhythm() -> None:
    found = []
    for seed in range(5):
        f = forecast("disk_usage_bytes", *series(28, 600, growth=GB, noise=0.3 * GB, seed=seed), limit=100 * GB)
        assert isinstance(f, Forecast)
        found.append("seasonality" in f.method)
    assert sum(found) <= 1


def test_a_weekly_rhythm_is_found_in_three_weeks() -> None:
    t, y = series(28, 900, growth=GB, noise=0.05 * GB)
    weekday = np.floor((t - T0) / DAY).astype(int) % 7
    y = y - 2 * GB * (weekday >= 5)
    f = forecast("disk_usage_bytes", t, y, limit=100 * GB)
    assert isinstance(f, Forecast)
    assert "weekly" in f.method and "shift" not in f.method


# -- no date, no forecast -------------------------------------------------------------------


def test_short_history_is_refused_with_a_reason() -> None:
    t, y = series(1, 300, growth=GB)
    f = forecast("disk_usage_bytes", t, y, limit=100 * GB, target="db1")
    assert isinstance(f, NoForecast)
    assert "spans 24 hours" in f.reason and "at least 2 days" in f.reason
    few = forecast("disk_usage_bytes", t[::30], y[::30], limit=100 * GB)
    assert isinstance(few, NoForecast) and "10 points" in few.reason
    empty = forecast("disk_usage_bytes", [], [], limit=100 * GB)
    assert isinstance(empty, NoForecast) and empty.points == 0 and empty.current is None
    shape = f.to_dict()
    assert shape["reaches_limit_at"] is None and shape["interval"] == {"low": None, "high": None}
    assert shape["reason"] == f.reason and shape["growth_per_day"] is None and shape["target"] == "db1"
    assert describe(f).startswith("no disk usage forecast: the history spans 24 hours")
    # A shorter minimum is the caller's to choose.
    assert isinstance(forecast("disk_usage_bytes", t, y, limit=100 * GB, options=Options(min_span=timedelta(hours=12))), Forecast)
    assert MIN_SPAN == timedelta(days=2)


def test_minutes_of_history_with_a_short_minimum() -> None:
    """A minimum span of seconds (reports.forecast.min_history in a test): buckets of seconds, a growth,
    no date (the simulated future is hourly and the horizon ten times the history)."""
    t = T0 + np.arange(120.0)
    y = 8e6 + 2e5 * np.arange(120.0) + np.random.default_rng(0).normal(size=120) * 1e4
    f = forecast("database_size_bytes", t, y, limit=1e12, options=Options(min_span=timedelta(seconds=30)))
    assert isinstance(f, Forecast)
    assert f.method.startswith("theil-sen trend over 1-second medians")
    assert f.growth_per_day == pytest.approx(2e5 * DAY, rel=0.01)
    assert f.reaches_limit_at is None and f.projection == ()
    assert f.level == pytest.approx(y[-1], rel=1e-3)
    # Every 10 s for 5 minutes: buckets no finer than the sampling, 15 seconds.
    t10 = T0 + 10.0 * np.arange(30)
    sparse = forecast("database_size_bytes", t10, 8e6 + 2e5 * (t10 - T0), options=Options(min_span=timedelta(minutes=1)))
    assert isinstance(sparse, Forecast) and sparse.method.startswith("theil-sen trend over 15-second medians")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.one_of(st.none(), st.floats(-1e15, 1e15), st.just(0.0)), min_size=0, max_size=60),
       step=st.sampled_from([0.0, 0.5, 1.0, 60.0, 3600.0]), limit=st.one_of(st.none(), st.floats(-1e15, 1e15)),
       short=st.booleans())
def test_any_series_gives_a_forecast_or_a_reason(values: list[float | None], step: float, limit: float | None,
                                                 short: bool) -> None:
    """Whatever the store holds (constant, repeated times, huge values, gaps), a forecast or a reason; never an error."""
    t = T0 + step * np.arange(len(values), dtype=float)
    y = np.array([np.nan if v is None else v for v in values], dtype=float)
    options = Options(min_span=timedelta(seconds=1) if short else MIN_SPAN)
    f = forecast("connections", t, y, limit=limit, options=options)
    assert isinstance(f, (Forecast, NoForecast))
    assert describe(f)
    if isinstance(f, Forecast):
        assert math.isfinite(f.growth_per_day)


def test_flat_and_decreasing_series_have_no_date() -> None:
    flat = forecast("disk_usage_bytes", *series(7, 300, growth=0.0, noise=0.1 * GB), limit=51 * GB)
    falling = forecast("disk_usage_bytes", *series(7, 300, growth=-GB), limit=60 * GB)
    for f in (flat, falling):
        assert isinstance(f, Forecast)
        assert f.reaches_limit_at is None and f.interval == Interval(None, None)
    assert isinstance(falling, Forecast) and falling.growth_per_day == pytest.approx(-GB, rel=1e-6)
    assert describe(falling) == "disk usage is not growing (-953.7 MB per day)"


def test_beyond_the_horizon_there_is_no_date() -> None:
    f = forecast("disk_usage_bytes", *series(30, 600, growth=GB), limit=5000 * GB)
    assert isinstance(f, Forecast)
    assert f.reaches_limit_at is None and f.interval.low is None
    assert f.horizon_end is not None and f.last_at is not None
    assert (f.horizon_end - f.last_at).days == 300  # ten times the history
    assert describe(f) == "disk usage grows by 953.7 MB per day; not expected to reach 4.5 TB within 300 days"
    year = forecast("disk_usage_bytes", *series(60, 3600, growth=GB), limit=5000 * GB)
    assert isinstance(year, Forecast) and year.horizon_end and year.last_at
    assert (year.horizon_end - year.last_at).days == 365


def test_already_at_the_limit() -> None:
    f = forecast("connections", *series(3, 60, growth=5, level=80), limit=90)
    assert isinstance(f, Forecast)
    assert f.reaches_limit_at == f.last_at and f.interval.low == f.last_at
    assert describe(f) == "connections reach max_connections (90) now"


def test_without_a_limit_only_the_growth() -> None:
    f = forecast("database_size_bytes", *series(3, 300, growth=2 * GB), subject="app")
    assert isinstance(f, Forecast)
    assert f.limit is None and f.reaches_limit_at is None
    assert describe(f) == "database size grows by 1.9 GB per day"
    assert len(f.projection) > 10 and all(p.low <= p.mid <= p.high for p in f.projection)


# -- the report's shape and sentence ------------------------------------------------------


def test_json_shape() -> None:
    f = forecast("disk_usage_bytes", *series(7, 300, growth=GB, noise=0.1 * GB), limit=70 * GB, target="db1")
    assert isinstance(f, Forecast)
    shape = json.loads(json.dumps(f.to_dict()))
    assert set(shape) == {"metric", "target", "subject", "current", "growth_per_day", "limit", "reaches_limit_at",
                          "interval", "points", "method", "reason"}
    assert set(shape["interval"]) == {"low", "high"}
    assert shape["reaches_limit_at"].endswith("Z") and shape["interval"]["low"] <= shape["reaches_limit_at"]
    assert shape["reason"] is None and shape["metric"] == "disk_usage_bytes"


def _made(at_days: float | None, low: float | None, high: float | None, **kw: object) -> Forecast:
    last = datetime(2026, 12, 1, tzinfo=UTC)

    def when(days: float | None) -> datetime | None:
        return None if days is None else last + timedelta(days=days)

    fields: dict[str, object] = {"metric": "disk_usage_bytes", "target": "db1", "current": 80 * GB,
                                 "growth_per_day": GB, "limit": 100 * GB, "points": 1000, "method": "m",
                                 "last_at": last, "horizon_end": last + timedelta(days=300)}
    fields.update(kw)
    return Forecast(reaches_limit_at=when(at_days), interval=Interval(when(low), when(high)), **fields)  # type: ignore[arg-type]


def test_sentences() -> None:
    assert describe(_made(46.2, 41.4, 52.0)) == "disk full in 46 days, between 41 and 52"
    assert describe(_made(1.5, 1.2, 1.7)) == "disk full in 36 hours, between 29 and 41"
    assert describe(_made(200, 150, None)) == "disk full in 200 days, between 150 and more than 300"
    assert describe(_made(3, 2, 4, metric="statement_mean_time_ms", subject="42", limit=500.0, growth_per_day=2.0)) \
        == "statement 42: mean time reaches 500.00 ms in 3 days, between 2 and 4"
    assert describe(_made(10, 9, 11, metric="transaction_id_age", limit=2e9, growth_per_day=1e7)) \
        == "transaction ID age reaches 2,000.0M transaction IDs in 10 days, between 9 and 11"
    # A series without noise: the interval within the day says nothing more.
    assert describe(_made(18.0, 17.99, 18.01)) == "disk full in 18 days"
    assert describe(_made(None, None, None, metric="connections", limit=100.0, growth_per_day=-1.0)) \
        == "connections are not growing (-1 per day)"
    # A metric without words of its own is spoken of by its name.
    assert describe(_made(10, 9, 11, metric="wal_bytes", growth_per_day=-1.0)) == "wal bytes is not growing (-1 per day)"


# -- Theil-Sen ------------------------------------------------------------------------------


def test_theil_sen_is_exact_on_a_line_and_robust_to_outliers() -> None:
    t = np.arange(500, dtype=float) * 60
    y = 3.0 + 0.5 * t
    assert theil_sen(t, y) == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    wild = rng.choice(500, 100, replace=False)  # 20 % of the points far off
    y2 = y.copy()
    y2[wild] += rng.normal(0, 1e6, 100)
    assert theil_sen(t, y2) == pytest.approx(0.5, rel=0.01)
    assert np.polyfit(t, y2, 1)[0] != pytest.approx(0.5, rel=0.01)  # least squares is not
    with pytest.raises(ValueError):
        theil_sen(t[:1], y[:1])


def test_theil_sen_subsample_is_close_to_all_pairs() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(3000, dtype=float)
    y = 0.01 * t + rng.normal(size=t.size)
    full = theil_sen(t, y, pairs=10**7)
    assert theil_sen(t, y, pairs=20_000) == pytest.approx(full, rel=0.02)


# -- properties -----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(growth=st.floats(0.1, 100.0), level=st.floats(0.0, 1e6), noise=st.floats(0.0, 0.5),
       lead=st.floats(1.0, 40.0), seed=st.integers(0, 1000))
def test_dates_are_ordered_and_near_the_truth(growth: float, level: float, noise: float, lead: float,
                                              seed: int) -> None:
    """For any steady growth with noise below half a day's growth, the interval is ordered and
    holds the date the trend reaches the limit, give or take the noise's own day."""
    t, y = series(10, 900, growth=growth, level=level, noise=noise * growth, seed=seed)
    end_level = level + growth * (t[-1] - T0) / DAY
    limit = end_level + growth * lead
    f = forecast("disk_usage_bytes", t, y, limit=limit)
    assert isinstance(f, Forecast)
    assert f.growth_per_day > 0
    assert f.reaches_limit_at is not None and f.interval.low is not None and f.interval.high is not None
    assert f.interval.low <= f.reaches_limit_at <= f.interval.high
    assert days_after(f, f.interval.low) - 1.0 <= lead <= days_after(f, f.interval.high) + 1.0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offset=st.floats(-1e9, 1e9), scale=st.floats(0.01, 1000.0), seed=st.integers(0, 100))
def test_units_do_not_matter(offset: float, scale: float, seed: int) -> None:
    """Moving and scaling the values and the limit together moves no date and scales the growth."""
    t, y = series(5, 600, growth=1.0, level=100, noise=0.3, seed=seed)
    base = forecast("disk_usage_bytes", t, y, limit=110.0)
    moved = forecast("disk_usage_bytes", t, y * scale + offset, limit=110.0 * scale + offset)
    assert isinstance(base, Forecast) and isinstance(moved, Forecast)
    assert moved.growth_per_day == pytest.approx(base.growth_per_day * scale, rel=1e-4)
    for a, b in ((base.reaches_limit_at, moved.reaches_limit_at), (base.interval.low, moved.interval.low),
                 (base.interval.high, moved.interval.high)):
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert abs((a - b).total_seconds()) <= 3600


# -- advice ---------------------------------------------------------------------------------


def test_advice_has_its_date_and_severity() -> None:
    soon = _made(5.5, 5.0, 6.0)
    later = _made(46, 41, 52, metric="connections", limit=100.0, current=60.0, growth_per_day=1.0)
    far = _made(200, 150, None)
    flat = _made(None, None, None, growth_per_day=-1.0)
    refused = NoForecast("disk_usage_bytes", "db1", 3, "too short")
    recs = advise([later, far, flat, refused, soon])
    assert [r.rule for r in recs] == ["capacity_disk", "capacity_connections"]
    disk, conns = recs
    assert disk.severity == "high" and disk.message.startswith("Grow the disk before 2026-12-06")
    assert disk.message.endswith("Disk full in 6 days, between 5 and 6")
    assert conns.severity == "low"
    assert conns.message.startswith("Raise max_connections or add a connection pooler (PgBouncer) before 2027-01-11")
    assert conns.evidence["act_by"] == "2027-01-11T00:00:00.000Z" and conns.evidence["days_left"] == 41.0
    assert conns.evidence["metric"] == "connections"
    assert [r.rule for r in advise([far], within=timedelta(days=365))] == ["capacity_disk"]
    now = _made(0, 0, 0)
    assert advise([now])[0].message.startswith("Grow the disk now, or free space")


def test_advice_from_a_real_forecast() -> None:
    f = forecast("connections", *series(14, 300, growth=2.0, level=40, noise=2.0), limit=120)
    recs = advise([f])
    assert len(recs) == 1 and recs[0].severity == "medium"
    assert "max_connections" in recs[0].message and isinstance(f, Forecast) and f.interval.low is not None
    assert f.interval.low.date().isoformat() in recs[0].message


# -- the backtest ---------------------------------------------------------------------------


def test_backtest_runs_quick(tmp_path: Path) -> None:
    """bench/forecast_backtest.py end to end with tiny sizes (its figures are the bench's business)."""
    out = tmp_path / "backtest.md"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "forecast_backtest.py"), "--quick", "--output", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = out.read_text()
    assert text.startswith("## Forecasts and seasonal baselines (backtest)")
    assert "| all cases | 30 |" in text and "true date inside the 95 % interval" in text
    assert "| 7 days | all | global |" in text and "| 28 days | statement | seasonal, ±15 minutes (default) |" in text
    assert "30 days of one-minute samples | 43,200 |" in text and "quick mode" in text
    assert text in proc.stdout
