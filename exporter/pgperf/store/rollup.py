"""Hourly rollups of ``query_performance_metrics`` for reports (migration 002).

The store writer calls :func:`roll_up` from its hourly maintenance. For every target it
(re)builds the complete hours from the target's watermark (``query_rollup_state``) — or
from an earlier hour when samples older than the watermark were written since, as the
spool does after an outage — up to the current hour, in one bulk ``INSERT ... SELECT``
per run. A run handles at most ``max_hours`` hours per target so that a first run over a
long history never blocks the writer for minutes; the next run goes on from there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["RollupResult", "delete_expired", "floor_hour", "roll_up", "rolled_until"]

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)

_ROLL = """
INSERT INTO {schema}.query_metrics_hourly
    (target, hour, query_id, datname, username, query_text, samples, calls, total_time, rows_affected,
     cache_hits, cache_misses, temp_blocks_written, plan_time, peak_mean_time, min_time, max_time,
     spans_reset, is_remainder)
SELECT target, date_trunc('hour', recorded_at), query_id, datname, username, min(query_text), count(*),
       sum(calls), sum(total_time), sum(rows_affected), sum(cache_hits), sum(cache_misses),
       sum(temp_blocks_written), sum(plan_time), max(mean_time), min(min_time), max(max_time),
       bool_or(spans_reset), bool_or(is_remainder)
FROM {schema}.query_performance_metrics
WHERE target = %(target)s AND recorded_at >= %(start)s AND recorded_at < %(end)s
GROUP BY target, date_trunc('hour', recorded_at), query_id, datname, username
"""


def floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class RollupResult:
    target: str
    start: datetime
    end: datetime
    rows: int
    #: False when the run stopped at max_hours: hours from ``end`` on still need a run.
    caught_up: bool = True


def rolled_until(conn: psycopg.Connection[Any], schema: str) -> dict[str, datetime]:
    """Each target's watermark: every hour before it is in query_metrics_hourly."""
    rows = conn.execute(sql.SQL("SELECT target, rolled_until FROM {}.query_rollup_state").format(
        sql.Identifier(schema))).fetchall()
    return {target: until for target, until in rows}


def roll_up(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    now: datetime | None = None,
    dirty_from: Mapping[str, float | datetime] | None = None,
    targets: tuple[str, ...] = (),
    max_hours: int = 48,
) -> list[RollupResult]:
    """Roll up the complete hours of every known target; return what was (re)built.

    *dirty_from* maps a target to the oldest sample written since the last run (the
    writer's memory), *targets* names targets that may have no watermark yet.
    """
    ident = sql.Identifier(schema)
    end_all = floor_hour(now or datetime.now(UTC))
    marks = rolled_until(conn, schema)
    dirty: dict[str, datetime] = {}
    for target, at in (dirty_from or {}).items():
        dirty[target] = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    results = []
    for target in sorted(set(marks) | set(dirty) | set(targets)):
        start = marks.get(target)
        if start is not None and target in dirty and dirty[target] < start:
            start = floor_hour(dirty[target])
        if start is None:
            # A target seen for the first time: start at its oldest retained sample
            # (the (target, recorded_at) index finds it without a scan).
            first = conn.execute(sql.SQL(
                "SELECT min(recorded_at) FROM {}.query_performance_metrics WHERE target = %s").format(ident),
                (target,)).fetchone()
            if first is None or first[0] is None:
                continue
            start = floor_hour(first[0])
        end = min(end_all, start + max_hours * HOUR)
        if end <= start:
            continue
        params = {"target": target, "start": start, "end": end}
        with conn.transaction():
            conn.execute(sql.SQL(
                "DELETE FROM {}.query_metrics_hourly WHERE target = %(target)s AND hour >= %(start)s AND hour < %(end)s"
            ).format(ident), params)
            rows = conn.execute(sql.SQL(_ROLL).format(schema=ident), params).rowcount
            # The watermark never moves back: hours rebuilt after a late sample were complete before.
            conn.execute(sql.SQL(
                "INSERT INTO {}.query_rollup_state (target, rolled_until) VALUES (%(target)s, %(end)s)"
                " ON CONFLICT (target) DO UPDATE SET rolled_until = greatest(query_rollup_state.rolled_until,"
                " EXCLUDED.rolled_until), updated_at = now()"
            ).format(ident), params)
        results.append(RollupResult(target, start, end, rows, end >= end_all))
        log.debug("store: rolled up %s from %s to %s (%d rows)", target, start.isoformat(), end.isoformat(), rows)
    return results


def delete_expired(conn: psycopg.Connection[Any], schema: str, *, query_days: int, now: datetime | None = None) -> int:
    """Drop rollup rows older than the query retention (the raw rows are gone by then)."""
    cutoff = floor_hour((now or datetime.now(UTC)) - timedelta(days=query_days))
    return conn.execute(sql.SQL("DELETE FROM {}.query_metrics_hourly WHERE hour < %s").format(
        sql.Identifier(schema)), (cutoff,)).rowcount
