"""Interval arithmetic of the statements collector on canned entries (no database)."""

from __future__ import annotations

import math

from pgperf.collectors.statements import Entry, compute_deltas, select_top


def entry(calls: int, total_ms: float, *, rows: int = 0, stddev: float = 0.0, since: float | None = None,
          max_ms: float = 0.0) -> Entry:
    return Entry("db", "u", calls, total_ms, 0.0, max_ms, stddev, rows, 0, 0, 0.0, 0.0, 0, 0.0, 0.0, since)


K1 = (1, 10, 111, True)
K1_NESTED = (1, 10, 111, False)
K2 = (1, 10, 222, True)


def test_plain_interval() -> None:
    deltas = compute_deltas({K1: entry(10, 100.0, rows=10)}, {K1: entry(15, 160.0, rows=16)}, False)
    (d,) = deltas
    assert (d.calls, d.total_ms, d.rows, d.mean_ms) == (5, 60.0, 6, 12.0)
    assert not d.restarted


def test_idle_statement_has_no_row() -> None:
    assert compute_deltas({K1: entry(10, 100.0)}, {K1: entry(10, 100.0)}, False) == []


def test_new_entry_counts_fully() -> None:
    (d,) = compute_deltas({}, {K2: entry(3, 30.0)}, False)
    assert d.calls == 3 and not d.restarted


def test_entry_reset_individually_is_restarted_not_negative() -> None:
    (d,) = compute_deltas({K1: entry(100, 1000.0)}, {K1: entry(4, 40.0)}, False)
    assert (d.calls, d.total_ms) == (4, 40.0)
    assert d.restarted


def test_global_reset_uses_current_values() -> None:
    # Counters grew past the old values after a reset: only stats_reset reveals it.
    (d,) = compute_deltas({K1: entry(5, 50.0)}, {K1: entry(8, 90.0)}, True)
    assert (d.calls, d.total_ms) == (8, 90.0)


def test_stats_since_change_means_new_entry() -> None:
    (d,) = compute_deltas({K1: entry(5, 50.0, since=1.0)}, {K1: entry(9, 95.0, since=2.0)}, False)
    assert d.calls == 9 and d.restarted


def test_toplevel_and_nested_summed() -> None:
    prev = {K1: entry(1, 10.0), K1_NESTED: entry(1, 5.0)}
    cur = {K1: entry(3, 30.0), K1_NESTED: entry(5, 25.0)}
    (d,) = compute_deltas(prev, cur, False)
    assert (d.calls, d.total_ms) == (6, 40.0)


def test_interval_stddev_from_sums_of_squares() -> None:
    # Executions 10, 10 (before) then 20, 40 in the interval.
    def stats(xs: list[float]) -> Entry:
        mean = sum(xs) / len(xs)
        sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
        return entry(len(xs), sum(xs), stddev=sd)

    (d,) = compute_deltas({K1: stats([10, 10])}, {K1: stats([10, 10, 20, 40])}, False)
    assert d.calls == 2 and d.mean_ms == 30.0
    assert math.isclose(d.stddev_ms, 10.0, rel_tol=1e-9)


def test_top_selection_is_stable_and_puts_slow_first() -> None:
    a, b, c, slow = (1, 1, 1), (1, 1, 2), (1, 1, 3), (1, 1, 4)
    scores = {a: 100.0, b: 90.0, c: 80.0, slow: 1.0}
    first = select_top(scores, {slow}, frozenset(), 2)
    assert first == {slow, a}
    # c now slightly ahead of a, but a is an incumbent: no flap.
    assert select_top({a: 100.0, b: 90.0, c: 120.0}, set(), frozenset({a, b}), 2) == {a, b}
    # A newcomer that spends far more time takes a place.
    assert c in select_top({a: 100.0, b: 90.0, c: 500.0}, set(), frozenset({a, b}), 2)
    assert select_top(scores, set(), frozenset(), 0) == frozenset()
