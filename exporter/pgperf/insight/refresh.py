"""One plans refresh of one database: plans, advice, and the stored advice checked again.

What ``pgperf serve`` does every ``insight.plans.interval`` and ``pgperf advise`` once, for
the statements of one database, in a session of pgperf's own (``refresh_on`` a connection
given, ``refresh_database`` one opened for it); each planning transaction carries
``application_name`` ``pgperf-insight`` and the configured statement and lock timeouts:

1. the generic plans of the statements (``plans.refresh_plans``; nothing is executed);
2. index advice from those plans (``advice.advise``, verified by HypoPG where it is
   created in the database);
3. the advice already known for the database looked at again (``advice.mark_applied``):
   applied once an index starting with its columns exists.

``top_statements`` reads what to plan straight from pg_stat_statements (the CLI has no
sampler to collect it from), with the time since its last reset as the window of their calls
(``pg_stat_statements_info``, PostgreSQL 14+; unknown on 13).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from ..config.insight import InsightOptions
from ..db import ConnectionFailed, SessionSettings, close_and_wait, connect, database_dsn
from ..redact import redact
from .advice import IndexAdvice, advise, mark_applied
from .plans import Plan, Statement, choose_statements, refresh_plans
from .server import detect_insight

__all__ = ["DatabaseRefresh", "by_database", "insight_settings", "pgss_window", "refresh_database", "refresh_on",
           "top_statements"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseRefresh:
    """What one refresh of one database found; ``error`` when it could not be done."""

    datname: str
    plans: tuple[Plan, ...] = ()
    skipped: Mapping[str, int] = field(default_factory=dict)
    #: New advice from this refresh's plans (status open).
    advice: tuple[IndexAdvice, ...] = ()
    #: The known advice of this database, its status checked against the indexes now there.
    checked: tuple[IndexAdvice, ...] = ()
    hypopg: bool = False
    error: str | None = None


def insight_settings(settings: SessionSettings) -> SessionSettings:
    """The session settings of insight's own sessions: the target's, under its own name."""
    return SessionSettings(application_name="pgperf-insight", connect_timeout=settings.connect_timeout,
                           statement_timeout=settings.statement_timeout, lock_timeout=settings.lock_timeout,
                           idle_in_transaction_session_timeout=settings.idle_in_transaction_session_timeout)


def by_database(statements: Iterable[Statement]) -> dict[str, list[Statement]]:
    """*statements* grouped by their database (those without one are left out)."""
    out: dict[str, list[Statement]] = {}
    for s in statements:
        if s.datname:
            out.setdefault(s.datname, []).append(s)
    return dict(sorted(out.items()))


def refresh_database(dsn: str, datname: str, statements: Sequence[Statement], settings: SessionSettings,
                     options: InsightOptions, known: Sequence[IndexAdvice] = ()) -> DatabaseRefresh:
    """Plan *statements* (all of database *datname*) and advise, in a session of its own on
    *datname* at *dsn*; check *known* advice of that database against its indexes. Never
    raises for a database fault: ``error`` says what went wrong."""
    try:
        conn = connect(database_dsn(dsn, datname), settings)
    except ConnectionFailed as exc:
        return DatabaseRefresh(datname, error=f"cannot connect to database {datname} ({exc.kind}): {exc}")
    try:
        return refresh_on(conn, datname, statements, settings, options, known)
    finally:
        close_and_wait(conn)


def refresh_on(conn: psycopg.Connection[Any], datname: str, statements: Sequence[Statement],
               settings: SessionSettings, options: InsightOptions, known: Sequence[IndexAdvice] = ()
               ) -> DatabaseRefresh:
    """``refresh_database`` on *conn*, a connection to *datname* (left as it was found:
    every planning transaction is rolled back, hypothetical indexes are reset)."""
    try:
        server = detect_insight(conn)
        result = refresh_plans(conn, statements, server, settings)
        advice: list[IndexAdvice] = []
        if options.advice.enabled and result.plans:
            advice = advise(conn, result.plans, statements, server, settings, options.advice)
        checked = mark_applied(conn, known) if known else []
        return DatabaseRefresh(datname, result.plans, dict(result.skipped), tuple(advice), tuple(checked),
                               hypopg=server.hypopg_schema is not None)
    except psycopg.Error as exc:
        text = redact(str(exc)).strip()
        return DatabaseRefresh(datname, error=f"database {datname}: {text.splitlines()[0] if text else type(exc).__name__}")


# Statements worth planning, read with their texts: the most time first, and every slow
# one. The texts are read for these rows only (pg_stat_statements reads its text file).
_TOP_SQL = """
WITH s AS (
    SELECT queryid, dbid, userid, sum(calls)::bigint AS calls, sum(total_exec_time) AS total_ms
    FROM {pgss}(false) WHERE queryid IS NOT NULL GROUP BY 1, 2, 3
), chosen AS (
    (SELECT * FROM s ORDER BY total_ms DESC LIMIT %(limit)s)
    UNION
    (SELECT * FROM s WHERE calls > 0 AND total_ms / calls > %(slow_ms)s ORDER BY total_ms DESC LIMIT %(limit)s)
)
SELECT c.queryid, t.query, d.datname, r.rolname, c.calls, c.total_ms
FROM chosen c
JOIN pg_database d ON d.oid = c.dbid
LEFT JOIN pg_roles r ON r.oid = c.userid
JOIN LATERAL (SELECT query FROM {pgss}(true) p
              WHERE p.queryid = c.queryid AND p.dbid = c.dbid AND p.userid = c.userid LIMIT 1) t ON true
"""
# Seconds since pg_stat_statements was last reset (its entries count from then), where
# pg_stat_statements_info exists (extension 1.9, PostgreSQL 14+).
_WINDOW_SQL = "SELECT extract(epoch FROM now() - stats_reset)::float8 FROM {info}"


def top_statements(conn: psycopg.Connection[Any], pgss_schema: str, max_statements: int,
                   slow_query_ms: float) -> list[Statement]:
    """The statements a refresh plans (``plans.choose_statements``), from pg_stat_statements
    in schema *pgss_schema*, by their totals since its last reset (their ``window_seconds``:
    None where pg_stat_statements does not say when that was)."""
    query = sql.SQL(_TOP_SQL).format(pgss=sql.SQL("{}.pg_stat_statements").format(sql.Identifier(pgss_schema)))
    # Unplannable entries (utility statements, pgperf's own EXPLAINs) are passed over by
    # choose_statements: read some more than wanted.
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(query, {"limit": 4 * max_statements, "slow_ms": slow_query_ms}).fetchall()
    window = pgss_window(conn, pgss_schema)
    found = [Statement(int(r[0]), str(r[1] or ""), r[2], r[3], int(r[4]), float(r[5]), window) for r in rows]
    return choose_statements(found, max_statements, slow_query_ms)


def pgss_window(conn: psycopg.Connection[Any], pgss_schema: str) -> float | None:
    """Seconds since pg_stat_statements in *pgss_schema* was reset, None where it does not
    record it (PostgreSQL 13, or an extension not updated to 1.9)."""
    info = sql.Identifier(pgss_schema, "pg_stat_statements_info")
    with conn.cursor(row_factory=tuple_row) as cur:
        exists = cur.execute("SELECT to_regclass(%s) IS NOT NULL", (info.as_string(conn),)).fetchone()
        if not exists or not exists[0]:
            return None
        row = cur.execute(sql.SQL(_WINDOW_SQL).format(info=info)).fetchone()
    return None if row is None or row[0] is None or row[0] <= 0 else float(row[0])
