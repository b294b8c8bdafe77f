"""Hourly rollups of the statement samples for reports (migration 002).

The store writer calls :func:`roll_up` from its hourly maintenance, for its own targets.
For each it (re)builds the complete hours from the target's watermark
(``query_rollup_state``) — or from an earlier hour when samples older than the watermark
were written since, as the spool does after an outage — up to the current hour, in one
bulk ``INSERT ... SELECT`` per run. A run handles at most ``max_hours`` hours per target
so that a first run over a long history never blocks the writer for minutes; the next
run goes on from there.

Rollups are idempotent and safe under concurrency: a target's hours are rebuilt (deleted
and inserted) in one transaction under an advisory lock of that target, and its
watermark is read under the lock, so two processes or tools rolling up the same target
at the same time take turns, and the second sees what the first did. The unique key of
``query_metrics_hourly`` (migration 005) makes a doubled hour impossible.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["RollupResult", "delete_expired", "floor_hour", "roll_up", "rolled_until"]

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)

_LOCK = 0x70677275  # "pgru": with hashtext(schema/target), one rollup of a target at a time

# Grouped by statement id, which stands for (target, query_id, datname, username).
_ROLL = """
INSERT INTO {schema}.query_metrics_hourly
    (target, hour, query_id, datname, username, query_text, samples, calls, total_time, rows_affected,
     cache_hits, cache_misses, temp_blocks_written, plan_time, peak_mean_time, min_time, max_time,
     spans_reset, is_remainder)
SELECT k.target, a.hour, k.query_id, k.datname, k.username, coalesce(t.query_text, ''), a.samples, a.calls,
       a.total_time, a.rows_affected, a.cache_hits, a.cache_misses, a.temp_blocks_written, a.plan_time,
       a.peak_mean_time, a.min_time, a.max_time, a.spans_reset, a.is_remainder
FROM (
    SELECT statement_id, date_trunc('hour', recorded_at) AS hour, count(*) AS samples, sum(calls) AS calls,
           sum(total_time) AS total_time, sum(rows_affected) AS rows_affected, sum(cache_hits) AS cache_hits,
           sum(cache_misses) AS cache_misses, sum(temp_blocks_written) AS temp_blocks_written,
           sum(plan_time) AS plan_time, max(mean_time) AS peak_mean_time, min(min_time) AS min_time,
           max(max_time) AS max_time, bool_or(spans_reset) AS spans_reset, bool_or(is_remainder) AS is_remainder
    FROM {schema}.query_samples
    WHERE statement_id IN (SELECT id FROM {schema}.query_statements WHERE target = %(target)s)
      AND recorded_at >= %(start)s AND recorded_at < %(end)s
    GROUP BY 1, 2
) a
JOIN {schema}.query_statements k ON k.id = a.statement_id
LEFT JOIN {schema}.statement_texts t ON t.target = k.target AND t.query_id = k.query_id
"""
# A target's oldest sample: the first entry of each of its statements in the
# (statement_id, recorded_at) index.
_FIRST = """
SELECT min(f.at) FROM {schema}.query_statements k,
LATERAL (SELECT min(q.recorded_at) AS at FROM {schema}.query_samples q WHERE q.statement_id = k.id) f
WHERE k.target = %s
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
    targets: Collection[str] | None = None,
    max_hours: int = 48,
) -> list[RollupResult]:
    """Roll up the complete hours of *targets* (by default: every target with a watermark
    or in *dirty_from*); return what was (re)built.

    *dirty_from* maps a target to the oldest sample written since the last run (the
    writer's memory); a target without a watermark starts at its oldest sample.
    """
    end_all = floor_hour(now or datetime.now(UTC))
    dirty: dict[str, datetime] = {}
    for target, at in (dirty_from or {}).items():
        dirty[target] = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    chosen = set(targets) if targets is not None else set(rolled_until(conn, schema)) | set(dirty)
    results = []
    for target in sorted(chosen):
        result = _roll_target(conn, schema, target, end_all, dirty.get(target), max_hours)
        if result is not None:
            results.append(result)
    return results


def _roll_target(conn: psycopg.Connection[Any], schema: str, target: str, end_all: datetime,
                 dirty: datetime | None, max_hours: int) -> RollupResult | None:
    ident = sql.Identifier(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))", (_LOCK, f"{schema}/{target}"))
        # Read under the lock: a run that held it before moved the watermark.
        row = conn.execute(sql.SQL("SELECT rolled_until FROM {}.query_rollup_state WHERE target = %s").format(ident),
                           (target,)).fetchone()
        start: datetime | None = row[0] if row else None
        if start is not None and dirty is not None and dirty < start:
            start = floor_hour(dirty)
        if start is None:
            first = conn.execute(sql.SQL(_FIRST).format(schema=ident), (target,)).fetchone()
            if first is None or first[0] is None:
                return None
            start = floor_hour(first[0])
        end = min(end_all, start + max_hours * HOUR)
        if end <= start:
            return None
        params = {"target": target, "start": start, "end": end}
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
    log.debug("store: rolled up %s from %s to %s (%d rows)", target, start.isoformat(), end.isoformat(), rows)
    return RollupResult(target, start, end, rows, end >= end_all)


def delete_expired(conn: psycopg.Connection[Any], schema: str, *, query_days: int, now: datetime | None = None,
                   targets: Collection[str] | None = None) -> int:
    """Drop rollup rows older than the query retention (the raw rows are gone by then), of
    *targets* (by default of every target)."""
    cutoff = floor_hour((now or datetime.now(UTC)) - timedelta(days=query_days))
    if targets is None:
        return conn.execute(sql.SQL("DELETE FROM {}.query_metrics_hourly WHERE hour < %s").format(
            sql.Identifier(schema)), (cutoff,)).rowcount
    return conn.execute(sql.SQL("DELETE FROM {}.query_metrics_hourly WHERE hour < %s AND target = ANY(%s)").format(
        sql.Identifier(schema)), (cutoff, list(targets))).rowcount
