"""What the console's pages read from the sample store, each with one short query.

* a statement's history (calls and mean time per time bucket) and what is known of it;
* the audit trail of one subject (an alert: who acknowledged and resolved it, when, from where);
* query insight's plans and index advice of a statement (``statement_plans`` and
  ``index_advice``, made by the insight work of the sampler), read only when the tables
  exist, so that a store without them shows "none recorded" rather than an error.

Every function takes a psycopg connection to the store and the store's schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

__all__ = [
    "AdviceRow", "AuditEntry", "HistoryBucket", "PlanRow", "StatementInfo", "StatementInsight", "audit_trail",
    "statement_history", "statement_info", "statement_insight",
]

#: Plans and advice shown at most per statement.
MAX_INSIGHT_ROWS = 20


@dataclass(frozen=True)
class HistoryBucket:
    """A statement's work over one time bucket, on one target."""

    target: str
    start: datetime
    calls: int
    total_ms: float
    rows: int

    @property
    def mean_ms(self) -> float | None:
        return round(self.total_ms / self.calls, 3) if self.calls else None


@dataclass(frozen=True)
class StatementInfo:
    """What the store knows of a statement over a window."""

    query_id: str
    text: str
    datnames: tuple[str, ...]
    usernames: tuple[str, ...]
    targets: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    calls: int
    total_ms: float
    max_ms: float | None

    @property
    def mean_ms(self) -> float | None:
        return round(self.total_ms / self.calls, 3) if self.calls else None


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    role: str | None
    action: str
    detail: dict[str, Any]
    source: str | None


@dataclass(frozen=True)
class PlanRow:
    target: str
    datname: str
    plan_hash: str
    first_seen: datetime
    last_seen: datetime
    total_cost: float
    method: str
    plan: dict[str, Any]


@dataclass(frozen=True)
class AdviceRow:
    target: str
    datname: str
    table: str
    columns: tuple[str, ...]
    sql: str
    cost_before: float
    cost_after: float | None
    verified: str
    status: str
    note: str
    last_seen: datetime
    #: Planner cost units per second saved on reads and spent on upkeep (None: unknown), and
    #: the verdict: pays, write_heavy or unknown (advice stored before migration 008: unknown).
    saving_per_second: float | None = None
    maintenance_per_second: float | None = None
    write_verdict: str = "unknown"


@dataclass(frozen=True)
class StatementInsight:
    """Plans and advice of a statement; a table missing from the store is None."""

    plans: tuple[PlanRow, ...] | None
    advice: tuple[AdviceRow, ...] | None


def _table(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def statement_history(conn: psycopg.Connection[Any], schema: str, query_id: str, since: datetime, until: datetime,
                      bucket_seconds: int) -> list[HistoryBucket]:
    """The statement's calls, time and rows per bucket of *bucket_seconds* in [since, until),
    per target, oldest first."""
    rows = conn.execute(sql.SQL(
        "SELECT target, to_timestamp(floor(extract(epoch FROM recorded_at) / %(b)s) * %(b)s) AS bucket,"
        " sum(calls)::bigint, sum(total_time)::float8, sum(rows_affected)::bigint"
        " FROM {} WHERE query_id = %(q)s AND recorded_at >= %(since)s AND recorded_at < %(until)s"
        " AND NOT is_remainder GROUP BY 1, 2 ORDER BY 2, 1").format(_table(schema, "query_performance_metrics")),
        {"b": bucket_seconds, "q": query_id, "since": since, "until": until}).fetchall()
    return [HistoryBucket(r[0], r[1], int(r[2] or 0), float(r[3] or 0.0), int(r[4] or 0)) for r in rows]


def statement_info(conn: psycopg.Connection[Any], schema: str, query_id: str, since: datetime,
                   until: datetime) -> StatementInfo | None:
    """The statement's text (the latest stored), databases, users, targets and totals over
    [since, until); None when it did not run then."""
    row = conn.execute(sql.SQL(
        "SELECT (array_agg(query_text ORDER BY recorded_at DESC) FILTER (WHERE query_text <> ''))[1],"
        " array_agg(DISTINCT datname) FILTER (WHERE datname IS NOT NULL),"
        " array_agg(DISTINCT username) FILTER (WHERE username IS NOT NULL), array_agg(DISTINCT target),"
        " min(recorded_at), max(recorded_at), sum(calls)::bigint, sum(total_time)::float8, max(max_time)::float8"
        " FROM {} WHERE query_id = %s AND recorded_at >= %s AND recorded_at < %s AND NOT is_remainder"
    ).format(_table(schema, "query_performance_metrics")), (query_id, since, until)).fetchone()
    if row is None or row[4] is None:
        return None
    return StatementInfo(query_id, row[0] or "", tuple(row[1] or ()), tuple(row[2] or ()), tuple(row[3] or ()),
                         row[4], row[5], int(row[6] or 0), float(row[7] or 0.0), row[8])


def audit_trail(conn: psycopg.Connection[Any], schema: str, subject: str, limit: int = 200) -> list[AuditEntry]:
    """What was done to *subject* (an alert id), oldest first."""
    rows = conn.execute(sql.SQL(
        "SELECT at, actor, role, action, detail, source FROM {} WHERE subject = %s ORDER BY at, id LIMIT %s"
    ).format(_table(schema, "audit_log")), (subject, limit)).fetchall()
    return [AuditEntry(r[0], r[1], r[2], r[3], dict(r[4] or {}), r[5]) for r in rows]


def _exists(conn: psycopg.Connection[Any], schema: str, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                       (sql.Identifier(schema, table).as_string(conn),)).fetchone()
    return bool(row and row[0])


def statement_insight(conn: psycopg.Connection[Any], schema: str, query_id: str) -> StatementInsight:
    """The statement's stored plans (newest first) and the index advice naming it (in the
    order of ``insight.advice.rank``: what pays first, by net benefit; the write-heavy
    last), when the store has insight's tables."""
    plans: tuple[PlanRow, ...] | None = None
    advice: tuple[AdviceRow, ...] | None = None
    if _exists(conn, schema, "statement_plans"):
        rows = conn.execute(sql.SQL(
            "SELECT target, datname, plan_hash, first_seen, last_seen, total_cost, method, plan FROM {}"
            " WHERE query_id = %s ORDER BY last_seen DESC, first_seen DESC LIMIT %s"
        ).format(_table(schema, "statement_plans")), (query_id, MAX_INSIGHT_ROWS)).fetchall()
        plans = tuple(PlanRow(r[0], r[1], r[2], r[3], r[4], float(r[5]), r[6], r[7] if isinstance(r[7], dict) else {})
                      for r in rows)
    if _exists(conn, schema, "index_advice"):
        # The weighing (migration 008) through to_jsonb: unknown in a store not migrated yet.
        rows = conn.execute(sql.SQL(
            "SELECT target, datname, schema_name || '.' || table_name, columns, sql, cost_before, cost_after,"
            " verified, status, note, last_seen, saving, maintenance, verdict"
            " FROM {} a, LATERAL (SELECT (to_jsonb(a) ->> 'saving_per_second')::float8 AS saving,"
            "   (to_jsonb(a) ->> 'maintenance_per_second')::float8 AS maintenance,"
            "   coalesce(to_jsonb(a) ->> 'write_verdict', 'unknown') AS verdict) w"
            " WHERE %s = ANY(query_ids)"
            " ORDER BY CASE verdict WHEN 'pays' THEN 0 WHEN 'unknown' THEN 1 ELSE 2 END,"
            " CASE WHEN verdict <> 'unknown' THEN saving - maintenance END DESC NULLS LAST,"
            " cost_before - coalesce(cost_after, 0) DESC, 3 LIMIT %s"
        ).format(_table(schema, "index_advice")), (query_id, MAX_INSIGHT_ROWS)).fetchall()
        advice = tuple(AdviceRow(r[0], r[1], r[2], tuple(r[3]), r[4], float(r[5]),
                                 None if r[6] is None else float(r[6]), r[7], r[8], r[9], r[10],
                                 r[11], r[12], r[13]) for r in rows)
    return StatementInsight(plans, advice)
