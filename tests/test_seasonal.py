"""Seasonal baselines for anomalies (reports/seasonal.py): the same hour of other days before the global one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import make_config
from pgperf.reports.anomalies import resource_anomaly
from pgperf.reports.model import ReportSettings
from pgperf.reports.seasonal import SpikeRule, detect_spikes, judge_hours

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
CPU = SpikeRule(z=3.5, min_rise=20.0, scale_floor=1.0)


def report_settings() -> ReportSettings:
    return ReportSettings.from_config(make_config("postgresql://x@127.0.0.1/x", profile="production"))


def cpu_minutes(days: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``days`` of one-minute CPU samples around 20 % from START (epoch seconds, percent)."""
    rng = np.random.default_rng(seed)
    t = START.timestamp() + 60.0 * np.arange(days * 1440)
    return t, 20 + rng.normal(0, 2, t.size)


def nightly(t: np.ndarray, y: np.ndarray, days: int, at_minute: int = 120, minutes: int = 30) -> None:
    """The nightly batch: 85 % CPU for ``minutes`` from ``at_minute`` past midnight, every night."""
    for day in range(days):
        first = day * 1440 + at_minute
        y[first:first + minutes] = 85 + np.random.default_rng(day).normal(0, 2, minutes)


def test_nightly_batch_flags_only_the_afternoon_spike() -> None:
    """The same spike at 02:00 for 14 days and one at 15:00: only the 15:00 one is an anomaly."""
    t, y = cpu_minutes(14)
    nightly(t, y, 14)
    y[13 * 1440 + 15 * 60 + 5] = 90  # 15:05 on the last day
    found = detect_spikes(t, y, window_start=START, rule=CPU)
    assert [v.at for v in found] == [START + timedelta(days=13, hours=15, minutes=5)]
    assert found[0].flagged_by == "same hour of day over 14 days"
    assert found[0].observed == 90 and found[0].baseline.kind == "hour_of_day" and found[0].baseline.points == 13
    assert found[0].factor is not None and found[0].factor > 3
    # Every 02:00 hour was judged against the same hour of the other 13 days, and passed.
    verdicts = judge_hours(t, y, window_start=START, rule=CPU)
    batches = [v for v in verdicts if v.at.hour == 2]
    assert len(batches) == 14 and not any(v.flagged for v in batches)
    assert all(v.baseline.kind == "hour_of_day" and v.observed > 80 for v in batches)
    assert len(verdicts) == 14 * 24


def test_the_global_baseline_flags_every_night() -> None:
    """anomalies.py's rule against one global baseline: every batch is a spike, which is the problem."""
    t, y = cpu_minutes(14)
    nightly(t, y, 14)
    median = float(np.median(y))
    mad = float(np.median(np.abs(y - median)))
    for day in range(14):
        hour = slice(day * 1440 + 120, day * 1440 + 180)
        row = {"name": "cpu", "observed": float(y[hour].max()), "baseline": median, "mad": mad, "points": y.size}
        assert resource_anomaly(row, report_settings(), "db", 3.5) is not None


def test_hourly_rollups_with_peaks() -> None:
    """A statement's hourly points: the mean of each hour for the baseline, its peak as the observation."""
    rng = np.random.default_rng(1)
    t = START.timestamp() + 3600.0 * np.arange(14 * 24)
    mean = 5 + rng.normal(0, 0.2, t.size)
    peak = mean * 1.5
    hour = ((t % 86400) // 3600).astype(int)
    peak[hour == 2] = 60  # a nightly report query, slow every night
    mean[hour == 2] = 20
    peak[10 * 24 + 11] = 70  # once, at 11:00 on day 10
    rule = SpikeRule(z=3.5, min_factor=2.0, scale_floor=0.01, relative_floor=0.05, positive_baseline=True)
    found = detect_spikes(t, mean, peaks=peak, window_start=START + timedelta(days=7), rule=rule)
    assert [(v.at, v.observed) for v in found] == [(START + timedelta(days=10, hours=11), 70)]
    assert found[0].baseline.kind == "hour_of_day"


def test_a_weekly_batch_is_normal_on_its_day_only() -> None:
    """Five weeks of a Sunday 03:00 batch: normal on Sundays (same hour of week), a spike on a Wednesday."""
    t, y = cpu_minutes(35)
    sundays = [6 + 7 * w for w in range(5)]
    for day in sundays:
        y[day * 1440 + 180: day * 1440 + 220] = 90
    wednesday = 30  # the fifth week's Wednesday, 03:00
    y[wednesday * 1440 + 180: wednesday * 1440 + 220] = 90
    verdicts = judge_hours(t, y, window_start=START + timedelta(days=28), rule=CPU)
    flagged = [v for v in verdicts if v.flagged]
    assert [v.at.date() for v in flagged] == [(START + timedelta(days=wednesday)).date()]
    assert flagged[0].flagged_by == "same hour of week over 5 weeks"
    sunday = next(v for v in verdicts if v.at.date() == (START + timedelta(days=34)).date() and v.at.hour == 3)
    assert not sunday.flagged and sunday.baseline.kind == "hour_of_week"
    # With only the hour of the day (too little history for the week), the Sunday batch is
    # 1 night in 7 and stands out: the week matters.
    by_day = judge_hours(t, y, window_start=START + timedelta(days=28), rule=CPU, min_weeks=10)
    assert any(v.flagged and v.at.date() == (START + timedelta(days=34)).date() for v in by_day)


def test_short_history_falls_back_to_the_global_baseline() -> None:
    t, y = cpu_minutes(3)
    nightly(t, y, 3)
    found = detect_spikes(t, y, window_start=START + timedelta(days=2), rule=CPU)
    assert len(found) == 1 and found[0].at.hour == 2
    assert found[0].flagged_by == "global over 3 days"


def test_a_batch_that_wanders_around_the_hour_is_the_same_hour() -> None:
    """01:55 one night, 02:05 the next: the default tolerance of 15 minutes keeps it one hour."""
    t, y = cpu_minutes(14)
    for day in range(14):
        start = day * 1440 + (115 if day % 2 else 125)
        y[start:start + 20] = 85
    assert detect_spikes(t, y, window_start=START, rule=CPU) == []
    strict = detect_spikes(t, y, window_start=START, rule=CPU, tolerance=timedelta(0))
    assert {v.at.hour for v in strict} == {1}  # without it, the nights that start at 01:55 stand out
    # A move by an hour (daylight saving time) needs an hour's tolerance.
    for day in (12, 13):
        y[day * 1440 + 115: day * 1440 + 145] = 20
        y[day * 1440 + 175: day * 1440 + 195] = 85
    assert detect_spikes(t, y, window_start=START, rule=CPU) != []
    assert detect_spikes(t, y, window_start=START, rule=CPU, tolerance=timedelta(hours=1)) == []


def test_hourly_points_take_their_neighbours_in() -> None:
    """Rollups: a batch at 02:55 is in hour 02 one night and 03 the next; that is no anomaly."""
    rng = np.random.default_rng(4)
    t = START.timestamp() + 3600.0 * np.arange(14 * 24)
    mean = 300 + rng.normal(0, 10, t.size)
    for day in range(14):
        mean[day * 24 + (2 if day % 3 else 3)] = 6000
    rule = SpikeRule(z=3.5, min_factor=10, scale_floor=0.01, relative_floor=0.05, positive_baseline=True)
    assert detect_spikes(t, mean, window_start=START, rule=rule) == []
    assert detect_spikes(t, mean, window_start=START, rule=rule, tolerance=timedelta(0)) != []


def test_nothing_to_judge() -> None:
    assert judge_hours([], [], window_start=START, rule=CPU) == []
    t, y = cpu_minutes(2)
    assert judge_hours(t, y, window_start=START + timedelta(days=5), rule=CPU) == []


def test_rules_from_the_report_settings() -> None:
    s = report_settings()
    statements = SpikeRule.for_statements(s)
    assert statements.z == s.anomaly_z and statements.min_factor == s.thresholds.query_spike_factor
    assert statements.relative_floor == 0.05 and statements.positive_baseline
    with pytest.raises(ValueError, match="no spike rule for resource 'disk'"):
        SpikeRule.for_resource("disk", s)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["cpu", "memory", "connections"]), median=st.floats(0, 100),
       mad=st.floats(0, 20), rise=st.floats(-10, 100))
def test_resource_rules_agree_with_anomalies_py(name: str, median: float, mad: float, rise: float) -> None:
    """SpikeRule.for_resource re-expresses anomalies.resource_anomaly: the same verdict on any numbers."""
    s = report_settings()
    observed = median + rise
    row = {"name": name, "observed": observed, "baseline": median, "mad": mad, "points": 100}
    expected = resource_anomaly(row, s, "db", s.anomaly_z) is not None
    assert SpikeRule.for_resource(name, s).flags(observed, median, mad) == expected
