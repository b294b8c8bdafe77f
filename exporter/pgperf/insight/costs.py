"""Cost analysis: each statement's share of database time and its CPU-seconds per day.

Pure functions over statement totals of a window (from the store or pg_stat_statements)
and, where sampled, the statements' wait profiles. A statement's CPU time is estimated,
best source first:

* ``wait_samples`` — pg_stat_activity sampling saw it running (``CPU``) in that share of
  its samples: CPU = execution time x that share;
* ``execution_less_waits`` — pg_wait_sampling (which samples waits only) saw it waiting
  that long: CPU = execution time - waits;
* ``execution_less_io`` — no samples: CPU = execution time - block read and write time
  (pg_stat_statements, with track_io_timing on; otherwise all of the execution time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .waits import CPU

__all__ = ["StatementCost", "StatementTotals", "statement_cost", "statement_costs", "time_split"]

SECONDS_PER_DAY = 86_400.0
CpuBasis = Literal["wait_samples", "execution_less_waits", "execution_less_io"]


@dataclass(frozen=True)
class StatementTotals:
    """What one statement did in the window."""

    query_id: int
    calls: int
    total_ms: float
    io_ms: float = 0.0
    #: Session seconds per wait event type (``CPU`` included) from wait sampling.
    wait_seconds: Mapping[str, float] = field(default_factory=dict)
    #: Whether ``wait_seconds`` come from a source that samples CPU (pg_stat_activity).
    waits_include_cpu: bool = True


@dataclass(frozen=True)
class StatementCost:
    query_id: int
    calls: int
    total_ms: float
    mean_ms: float
    share_of_db_time_percent: float
    cpu_seconds_per_day: float
    cpu_basis: CpuBasis
    #: Percent of the statement's time per wait event type, ``CPU`` included.
    time_split: Mapping[str, float]


def time_split(totals: StatementTotals) -> tuple[dict[str, float], CpuBasis]:
    """How the statement's time divides between CPU and each wait event type, in percent."""
    waits = {k: max(0.0, v) for k, v in totals.wait_seconds.items() if v > 0}
    if waits and totals.waits_include_cpu:
        sampled = sum(waits.values())
        return {k: 100.0 * v / sampled for k, v in sorted(waits.items())}, "wait_samples"
    total_s = max(0.0, totals.total_ms) / 1000.0
    if waits and total_s > 0:
        waited = {k: v for k, v in waits.items() if k != CPU}
        scale = min(1.0, total_s / sum(waited.values())) if waited else 1.0
        split = {k: 100.0 * v * scale / total_s for k, v in sorted(waited.items())}
        split[CPU] = max(0.0, 100.0 - sum(split.values()))
        return split, "execution_less_waits"
    if total_s <= 0:
        return {}, "execution_less_io"
    io = min(max(0.0, totals.io_ms) / 1000.0, total_s)
    split = {CPU: 100.0 * (total_s - io) / total_s}
    if io:
        split["IO"] = 100.0 * io / total_s
    return split, "execution_less_io"


def statement_cost(s: StatementTotals, db_ms: float, window_seconds: float) -> StatementCost:
    """The cost of one statement that took part of *db_ms*, the database time of every
    statement over a window of *window_seconds*."""
    if window_seconds <= 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds}")
    split, basis = time_split(s)
    cpu_ms = max(0.0, s.total_ms) * split.get(CPU, 0.0) / 100.0
    return StatementCost(
        query_id=s.query_id, calls=s.calls, total_ms=s.total_ms,
        mean_ms=s.total_ms / s.calls if s.calls else 0.0,
        share_of_db_time_percent=100.0 * max(0.0, s.total_ms) / db_ms if db_ms > 0 else 0.0,
        cpu_seconds_per_day=cpu_ms / 1000.0 * SECONDS_PER_DAY / window_seconds,
        cpu_basis=basis, time_split=split,
    )


def statement_costs(statements: Iterable[StatementTotals], window_seconds: float) -> list[StatementCost]:
    """The cost of each statement over a window of *window_seconds*, most expensive first."""
    if window_seconds <= 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds}")
    todo = list(statements)
    db_ms = sum(max(0.0, s.total_ms) for s in todo)
    out = [statement_cost(s, db_ms, window_seconds) for s in todo]
    return sorted(out, key=lambda c: (-c.total_ms, c.query_id))
