"""Insight's rows in the sample store (migration 004; advice's write cost: 008): wait
profiles, plans, advice.

Every function takes a psycopg connection to the store (autocommit, as the store's own
sessions are) and the store's schema, and writes in one transaction. Writing plans
returns the plan changes they reveal; reading closes the loop for advice (the observed
mean time of its statements before and after it was applied, from
query_performance_metrics).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..store.schema import ensure_partitions
from ..store.waits import copy_wait_rows
from .advice import IndexAdvice, rank
from .plans import Plan
from .waits import StatementWaitProfile

__all__ = [
    "PlanChange",
    "StatementWindow",
    "StoredPlan",
    "WaitTotal",
    "delete_expired",
    "observed_means",
    "read_advice",
    "read_plans",
    "read_waits",
    "record_plans",
    "statement_window",
    "wait_seconds",
    "save_advice",
    "write_wait_profiles",
]

@dataclass(frozen=True)
class PlanChange:
    """A statement's plan differs from the one seen before it."""

    target: str
    datname: str
    query_id: int
    previous_hash: str
    plan_hash: str
    at: datetime


@dataclass(frozen=True)
class StoredPlan:
    datname: str
    query_id: int
    plan_hash: str
    first_seen: datetime
    last_seen: datetime
    total_cost: float
    method: str
    plan: dict[str, Any]


@dataclass(frozen=True)
class WaitTotal:
    """A statement's samples in one wait event over a window."""

    source: str
    wait_event_type: str
    wait_event: str
    samples: int
    seconds: float


def _ident(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def write_wait_profiles(conn: psycopg.Connection[Any], schema: str, rows: Sequence[StatementWaitProfile]) -> int:
    """Write *rows* (one transaction, COPY); their days' partitions are made if missing.
    (``pgperf serve`` writes them with its samples instead: ``store.waits``.)"""
    if not rows:
        return 0
    days = sorted({r.recorded_at.astimezone(UTC).date() for r in rows})
    values = [(r.target, r.recorded_at.timestamp(), r.interval_seconds, r.source,
               None if r.query_id is None else str(r.query_id), r.wait_event_type, r.wait_event, r.samples,
               r.seconds) for r in rows]
    for attempt in (1, 2):
        try:
            with conn.transaction(), conn.cursor() as cur:
                copy_wait_rows(cur, schema, values)
            return len(rows)
        except psycopg.errors.CheckViolation as exc:
            if attempt == 2 or "no partition" not in str(exc):
                raise
            ensure_partitions(conn, schema, days)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


@dataclass(frozen=True)
class StatementWindow:
    """A statement in the stored samples of one target: the last name and text it was
    stored with, and its totals and the database's over a window."""

    query_id: int
    datname: str | None
    username: str | None
    query_text: str
    calls: int
    total_ms: float
    #: Execution time of every statement of the target in the window (remainder included).
    db_total_ms: float
    #: Seconds the window's samples cover (first to last, plus one interval); 0 without samples.
    sampled_seconds: float


def statement_window(conn: psycopg.Connection[Any], schema: str, target: str, query_id: int, *,
                     since: datetime, until: datetime) -> StatementWindow | None:
    """What the store holds of statement *query_id* of *target* (None: never stored), with
    its totals in [since, until)."""
    table = _ident(schema, "query_performance_metrics")
    last = conn.execute(sql.SQL(
        "SELECT datname, username, query_text FROM {} WHERE query_id = %s AND target = %s"
        " ORDER BY recorded_at DESC LIMIT 1").format(table), (str(query_id), target)).fetchone()
    if last is None:
        return None
    row = conn.execute(sql.SQL(
        "SELECT coalesce(sum(calls) FILTER (WHERE query_id = %(q)s), 0),"
        "       coalesce(sum(total_time) FILTER (WHERE query_id = %(q)s), 0), coalesce(sum(total_time), 0),"
        "       coalesce(extract(epoch FROM max(recorded_at) - min(recorded_at)) + max(interval_seconds), 0)"
        " FROM {} WHERE target = %(t)s AND recorded_at >= %(since)s AND recorded_at < %(until)s"
    ).format(table), {"q": str(query_id), "t": target, "since": since, "until": until}).fetchone()
    assert row is not None  # an aggregate returns one row
    return StatementWindow(query_id, last[0], last[1], last[2] or "", int(row[0]), float(row[1]), float(row[2]),
                           float(row[3]))


def read_waits(conn: psycopg.Connection[Any], schema: str, target: str, query_id: int, *,
               since: datetime, until: datetime) -> list[WaitTotal]:
    """A statement's samples per wait event in [since, until), most time first."""
    rows = conn.execute(sql.SQL(
        "SELECT source, wait_event_type, wait_event, sum(samples)::bigint, sum(seconds)"
        " FROM {} WHERE target = %s AND query_id = %s AND recorded_at >= %s AND recorded_at < %s"
        " GROUP BY 1, 2, 3 ORDER BY 5 DESC, 1, 2, 3").format(_ident(schema, "statement_wait_profiles")),
        (target, str(query_id), since, until)).fetchall()
    return [WaitTotal(r[0], r[1], r[2], int(r[3]), float(r[4])) for r in rows]


def wait_seconds(conn: psycopg.Connection[Any], schema: str, target: str, query_ids: Sequence[int], *,
                 since: datetime, until: datetime) -> dict[int, dict[str, float]]:
    """Session seconds of each statement per wait event type (``CPU`` included) in
    [since, until): what ``costs.time_split`` divides a statement's time by."""
    if not query_ids:
        return {}
    rows = conn.execute(sql.SQL(
        "SELECT query_id, wait_event_type, sum(seconds) FROM {}"
        " WHERE target = %s AND query_id = ANY(%s) AND recorded_at >= %s AND recorded_at < %s"
        " GROUP BY 1, 2").format(_ident(schema, "statement_wait_profiles")),
        (target, [str(q) for q in query_ids], since, until)).fetchall()
    out: dict[int, dict[str, float]] = {}
    for qid, wait_type, seconds in rows:
        out.setdefault(int(qid), {})[wait_type] = float(seconds)
    return out


def record_plans(conn: psycopg.Connection[Any], schema: str, target: str, plans: Iterable[Plan], *,
                 at: datetime | None = None) -> list[PlanChange]:
    """Store *plans* seen at *at*: a known (statement, hash) gets its last_seen moved, a
    new one is inserted. Returns the statements whose newest stored plan had another hash."""
    at = at or datetime.now(UTC)
    table = _ident(schema, "statement_plans")
    changes = []
    with conn.transaction():
        for plan in plans:
            datname, qid = plan.datname or "", str(plan.query_id)
            newest = conn.execute(sql.SQL(
                "SELECT plan_hash FROM {} WHERE target = %s AND datname = %s AND query_id = %s"
                " ORDER BY last_seen DESC, first_seen DESC LIMIT 1").format(table), (target, datname, qid)).fetchone()
            conn.execute(sql.SQL(
                "INSERT INTO {} (target, datname, query_id, plan_hash, first_seen, last_seen, total_cost, method, plan)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (target, datname, query_id, plan_hash) DO UPDATE"
                " SET last_seen = greatest({}.last_seen, excluded.last_seen), total_cost = excluded.total_cost"
            ).format(table, sql.Identifier("statement_plans")),
                (target, datname, qid, plan.plan_hash, at, at, plan.total_cost, plan.method, Jsonb(dict(plan.plan))))
            if newest is not None and newest[0] != plan.plan_hash:
                changes.append(PlanChange(target, datname, plan.query_id, newest[0], plan.plan_hash, at))
    return changes


def read_plans(conn: psycopg.Connection[Any], schema: str, target: str, query_id: int) -> list[StoredPlan]:
    """A statement's plans, the newest first."""
    rows = conn.execute(sql.SQL(
        "SELECT datname, query_id, plan_hash, first_seen, last_seen, total_cost, method, plan FROM {}"
        " WHERE target = %s AND query_id = %s ORDER BY last_seen DESC, first_seen DESC"
    ).format(_ident(schema, "statement_plans")), (target, str(query_id))).fetchall()
    return [StoredPlan(r[0], int(r[1]), r[2], r[3], r[4], float(r[5]), r[6], r[7]) for r in rows]


def save_advice(conn: psycopg.Connection[Any], schema: str, target: str, advice: Iterable[IndexAdvice], *,
                at: datetime | None = None) -> int:
    """Insert or update *advice* (keyed by target, database, table and columns). An
    advice keeps its first applied_at once applied."""
    at = at or datetime.now(UTC)
    table = _ident(schema, "index_advice")
    count = 0
    with conn.transaction():
        for a in advice:
            conn.execute(sql.SQL(
                "INSERT INTO {} (target, datname, schema_name, table_name, columns, sql, query_ids, cost_before,"
                " cost_after, verified, status, writes_per_second, note, first_seen, last_seen, applied_at,"
                " observed_mean_ms_before, observed_mean_ms_after, saving_per_second, maintenance_per_second,"
                " write_verdict)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (target, datname, schema_name, table_name, columns) DO UPDATE SET"
                " sql = excluded.sql, query_ids = excluded.query_ids, cost_before = excluded.cost_before,"
                " cost_after = excluded.cost_after, verified = excluded.verified, status = excluded.status,"
                " writes_per_second = excluded.writes_per_second, note = excluded.note,"
                " saving_per_second = excluded.saving_per_second,"
                " maintenance_per_second = excluded.maintenance_per_second, write_verdict = excluded.write_verdict,"
                " last_seen = excluded.last_seen,"
                " applied_at = CASE WHEN excluded.status = 'applied'"
                "   THEN coalesce({t}.applied_at, excluded.applied_at) END,"
                " observed_mean_ms_before = coalesce(excluded.observed_mean_ms_before, {t}.observed_mean_ms_before),"
                " observed_mean_ms_after = coalesce(excluded.observed_mean_ms_after, {t}.observed_mean_ms_after)"
            ).format(table, t=sql.Identifier("index_advice")), (
                target, a.datname or "", a.schema, a.relname, list(a.columns), a.sql, [str(q) for q in a.query_ids],
                a.cost_before, a.cost_after, a.verified, a.status, a.writes_per_second, a.note, at, at,
                (a.applied_at or at) if a.status == "applied" else None,
                a.observed_mean_ms_before, a.observed_mean_ms_after, a.saving_per_second, a.maintenance_per_second,
                a.write_verdict))
            count += 1
    return count


def read_advice(conn: psycopg.Connection[Any], schema: str, target: str | None = None, *,
                query_id: int | None = None, status: str | None = None) -> list[IndexAdvice]:
    """Stored advice in the order of ``advice.rank`` (the advice that pays first, the
    write-heavy last); *query_id* keeps the advice that names that statement. A store not
    migrated to 008 yet reads as advice not weighed."""
    conditions: list[sql.Composable] = [sql.SQL("true")]
    params: list[Any] = []
    for column, value in (("target", target), ("status", status)):
        if value is not None:
            conditions.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if query_id is not None:
        conditions.append(sql.SQL("%s = ANY(query_ids)"))
        params.append(str(query_id))
    # The columns of 008 through to_jsonb: NULL, not an error, in a store not migrated yet
    # (pgperf advise reads the store without migrating it).
    rows = conn.execute(sql.SQL(
        "SELECT datname, schema_name, table_name, columns, query_ids, cost_before, cost_after, verified, status,"
        " writes_per_second, note, observed_mean_ms_before, observed_mean_ms_after, applied_at,"
        " (to_jsonb(a) ->> 'saving_per_second')::float8, (to_jsonb(a) ->> 'maintenance_per_second')::float8,"
        " coalesce(to_jsonb(a) ->> 'write_verdict', 'unknown')"
        " FROM {} a WHERE {} ORDER BY schema_name, table_name, columns"
    ).format(_ident(schema, "index_advice"), sql.SQL(" AND ").join(conditions)), params).fetchall()
    return sorted((IndexAdvice(
        schema=r[1], relname=r[2], columns=tuple(r[3]), query_ids=tuple(int(q) for q in r[4]),
        cost_before=float(r[5]), cost_after=None if r[6] is None else float(r[6]), verified=r[7], status=r[8],
        writes_per_second=r[9], note=r[10], datname=r[0] or None,
        observed_mean_ms_before=None if r[11] is None else float(r[11]),
        observed_mean_ms_after=None if r[12] is None else float(r[12]), applied_at=r[13],
        saving_per_second=r[14], maintenance_per_second=r[15], write_verdict=r[16],
    ) for r in rows), key=rank)


def observed_means(conn: psycopg.Connection[Any], schema: str, target: str, query_ids: Sequence[int],
                   at: datetime, *, window: timedelta = timedelta(days=1),
                   until: datetime | None = None) -> tuple[float | None, float | None]:
    """The statements' mean execution time (ms, all their calls) in the *window* before
    *at* and from *at* to *until* (default: now), from query_performance_metrics; None
    where they did not run."""
    until = until or datetime.now(UTC)
    row = conn.execute(sql.SQL(
        "SELECT sum(total_time) FILTER (WHERE recorded_at < %(at)s)"
        "         / nullif(sum(calls) FILTER (WHERE recorded_at < %(at)s), 0),"
        "       sum(total_time) FILTER (WHERE recorded_at >= %(at)s)"
        "         / nullif(sum(calls) FILTER (WHERE recorded_at >= %(at)s), 0)"
        " FROM {} WHERE target = %(target)s AND query_id = ANY(%(ids)s) AND NOT is_remainder"
        " AND recorded_at >= %(since)s AND recorded_at < %(until)s"
    ).format(_ident(schema, "query_performance_metrics")),
        {"at": at, "target": target, "ids": [str(q) for q in query_ids], "since": at - window, "until": until},
    ).fetchone()
    assert row is not None  # an aggregate returns one row
    return (None if row[0] is None else round(float(row[0]), 3), None if row[1] is None else round(float(row[1]), 3))


def delete_expired(conn: psycopg.Connection[Any], schema: str, *, days: int, now: datetime | None = None) -> int:
    """Delete plans and open advice not seen for *days* (applied advice stays: it is the
    record of what was done). Wait profiles go with their partitions (store retention)."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    with conn.transaction():
        plans = conn.execute(sql.SQL("DELETE FROM {} WHERE last_seen < %s").format(
            _ident(schema, "statement_plans")), (cutoff,)).rowcount
        advice = conn.execute(sql.SQL("DELETE FROM {} WHERE last_seen < %s AND status = 'open'").format(
            _ident(schema, "index_advice")), (cutoff,)).rowcount
    return plans + advice
