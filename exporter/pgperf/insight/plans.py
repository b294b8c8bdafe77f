"""Generic plans of normalized statements, and a hash of each plan's shape.

pg_stat_statements keeps statements with their constants replaced by ``$1, $2 ...``.
PostgreSQL plans such a text without values in two ways:

* 16+: ``EXPLAIN (GENERIC_PLAN)`` plans the text as it is;
* 13-15: the text is prepared in pgperf's own session under
  ``plan_cache_mode = force_generic_plan`` and ``EXPLAIN EXECUTE`` runs with one NULL per
  parameter (the generic plan does not look at the values); the prepared statement is
  deallocated afterwards, whatever happened.

Either way a statement whose parameter types PostgreSQL cannot infer (``$1 IS NULL``) is
skipped and counted. Nothing is ever executed: only the five plannable kinds pass
``statement.parse_statement`` (checked before anything reaches the server); the text goes
over the extended query protocol, which refuses a second statement; there is never
``ANALYZE``; and each statement is planned in its own READ ONLY transaction that is rolled
back, with ``statement_timeout`` and ``lock_timeout`` set for it (planning takes
AccessShareLock on the tables, released at the end of each statement's transaction). The
search path is the one the statement's user would have (their role's and database's
``search_path``, else the server default), so unqualified names resolve as they did.

The plan hash identifies a plan's *shape* — node types, join types and order, relations,
indexes, scan directions, strategies, parallelism — and leaves out estimates (costs, rows,
widths) and expressions, so it changes when the planner picks a different plan, not when
the statistics move.

pg_stat_statements tracks EXPLAIN as a utility statement: each planned text adds an entry
``EXPLAIN (GENERIC_PLAN, ...) ...`` on 16+ (``EXPLAIN ... EXECUTE pgperf_insight_plan``
per parameter count on 13-15). Such entries are refused for planning (not plannable).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql

from ..db import SessionSettings
from .server import InsightServer
from .statement import StatementRefused, parse_statement, quote_ident

__all__ = [
    "Plan",
    "choose_statements",
    "PlanRefresh",
    "PlanSkipped",
    "Statement",
    "explain",
    "plan_hash",
    "plan_shape",
    "plan_without_expressions",
    "refresh_plans",
    "search_paths",
]

log = logging.getLogger(__name__)

#: The prepared statement's name on 13-15 (deallocated after every use).
PREPARED_NAME = "pgperf_insight_plan"

PlanMethod = Literal["generic_plan", "prepared_generic"]


@dataclass(frozen=True)
class Statement:
    """A statement to plan: pg_stat_statements' query id and normalized text, and where
    and by whom it ran (its user's search path resolves unqualified names); its calls and
    time over the last ``window_seconds`` (None: over a time not known)."""

    query_id: int
    text: str
    datname: str | None = None
    username: str | None = None
    calls: int = 0
    total_ms: float = 0.0
    #: The seconds over which ``calls`` and ``total_ms`` were counted: in ``pgperf serve``
    #: the sampling intervals since the previous refresh, in ``pgperf advise`` the time
    #: since pg_stat_statements was reset (14+); None when unknown.
    window_seconds: float | None = None


@dataclass(frozen=True)
class Plan:
    """One statement's generic plan."""

    query_id: int
    plan_hash: str
    #: EXPLAIN (FORMAT JSON, VERBOSE)'s object for the statement: {"Plan": {...}, ...}.
    plan: Mapping[str, Any]
    total_cost: float
    method: PlanMethod
    datname: str | None = None

    @property
    def root(self) -> Mapping[str, Any]:
        node: Mapping[str, Any] = self.plan["Plan"]
        return node


class PlanSkipped(Exception):
    """A statement was not planned; ``reason`` is one word for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class PlanRefresh:
    """The outcome of planning a batch of statements."""

    plans: tuple[Plan, ...]
    #: Statements not planned, by reason (unparsable, not_plannable, parameter_types,
    #: permission_denied, undefined_object, statement_timeout, lock_timeout, error ...).
    skipped: Mapping[str, int] = field(default_factory=dict)
    seconds: float = 0.0


# Keys of a plan node that make up its shape. Costs, rows, widths, outputs and conditions
# are left out: they move with the statistics without the plan changing.
SHAPE_KEYS = (
    "Node Type", "Parent Relationship", "Subplan Name", "Join Type", "Strategy", "Partial Mode",
    "Operation", "Parallel Aware", "Scan Direction", "Schema", "Relation Name", "Index Name",
    "CTE Name", "Function Name", "Command", "Custom Plan Provider",
)


def choose_statements(statements: Iterable[Statement], max_statements: int, slow_query_ms: float) -> list[Statement]:
    """The statements a refresh plans: every slow one (mean time above *slow_query_ms*)
    first, then the others by total time, *max_statements* at most; statements that
    cannot be planned (utility commands, pgperf's own EXPLAINs) are passed over here so
    that they do not take the places of plannable ones."""
    plannable = []
    for s in statements:
        try:
            parse_statement(s.text)
        except StatementRefused:
            continue
        plannable.append(s)

    def rank(s: Statement) -> tuple[bool, float, int]:
        mean = s.total_ms / s.calls if s.calls else 0.0
        return (mean <= slow_query_ms, -s.total_ms, s.query_id)

    return sorted(plannable, key=rank)[:max_statements]


def plan_shape(node: Mapping[str, Any]) -> dict[str, Any]:
    """The shape of a plan node and its children (see SHAPE_KEYS)."""
    shape: dict[str, Any] = {key: node[key] for key in SHAPE_KEYS if key in node}
    children = node.get("Plans")
    if children:
        shape["Plans"] = [plan_shape(child) for child in children]
    return shape


#: Estimates kept by ``plan_without_expressions``: numbers, never statement text.
ESTIMATE_KEYS = ("Startup Cost", "Total Cost", "Plan Rows", "Plan Width", "Workers Planned")


def plan_without_expressions(plan: Mapping[str, Any]) -> dict[str, Any]:
    """*plan* (EXPLAIN's object or a node) with its shape and estimates only: conditions,
    outputs and sort keys are the statement's expressions, shown only where the
    statement text may be (``expose_query_text``)."""
    if "Plan" in plan:
        return {"Plan": plan_without_expressions(plan["Plan"])}
    node: dict[str, Any] = {key: plan[key] for key in (*SHAPE_KEYS, *ESTIMATE_KEYS) if key in plan}
    if plan.get("Plans"):
        node["Plans"] = [plan_without_expressions(child) for child in plan["Plans"]]
    return node


def plan_hash(plan: Mapping[str, Any]) -> str:
    """A stable 64-bit hex digest of a plan's shape (EXPLAIN's object or its "Plan")."""
    root = plan.get("Plan", plan)
    canonical = json.dumps(plan_shape(root), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


_SEARCH_PATH_SQL = """
SELECT u.name,
       coalesce(
         (SELECT substr(c, 13) FROM pg_db_role_setting s, unnest(s.setconfig) c
           WHERE s.setdatabase = d.oid AND s.setrole = r.oid AND c LIKE 'search\\_path=%%'),
         (SELECT substr(c, 13) FROM pg_db_role_setting s, unnest(s.setconfig) c
           WHERE s.setdatabase = 0 AND s.setrole = r.oid AND c LIKE 'search\\_path=%%'),
         (SELECT substr(c, 13) FROM pg_db_role_setting s, unnest(s.setconfig) c
           WHERE s.setdatabase = d.oid AND s.setrole = 0 AND c LIKE 'search\\_path=%%'),
         (SELECT boot_val FROM pg_settings WHERE name = 'search_path'))
FROM unnest(%s::text[]) AS u(name)
LEFT JOIN pg_roles r ON r.rolname = u.name
CROSS JOIN (SELECT oid FROM pg_database WHERE datname = current_database()) d
"""
DEFAULT_SEARCH_PATH = '"$user", public'


def search_paths(conn: psycopg.Connection[Any], usernames: Iterable[str]) -> dict[str, str]:
    """The search_path each user has in *conn*'s database, ``$user`` spelled out.

    pgperf's own sessions pin ``search_path`` to ``pg_catalog, pg_temp``; a statement from
    pg_stat_statements names tables as its user saw them. The role-in-database setting
    wins over the role's, over the database's, over the server's built-in default (a value
    set only in postgresql.conf is not visible to other roles and is not used).
    """
    names = sorted({u for u in usernames if u})
    if not names:
        return {}
    rows = conn.execute(_SEARCH_PATH_SQL, (names,)).fetchall()
    return {name: str(path or DEFAULT_SEARCH_PATH).replace('"$user"', quote_ident(name))
            .replace("$user", quote_ident(name)) for name, path in rows}


def _classify(exc: psycopg.Error) -> str:
    errors = psycopg.errors
    for kind, reason in (
        (errors.IndeterminateDatatype, "parameter_types"),
        # A normalized text the server's grammar refuses: pg_stat_statements also replaces
        # some keywords by $n (extract(epoch FROM x) is kept as extract($1 FROM x)).
        (errors.SyntaxError, "unparsable"),
        (errors.QueryCanceled, "statement_timeout"),
        (errors.LockNotAvailable, "lock_timeout"),
        (errors.InsufficientPrivilege, "permission_denied"),
        ((errors.UndefinedTable, errors.UndefinedColumn, errors.UndefinedFunction, errors.UndefinedObject,
          errors.InvalidSchemaName), "undefined_object"),
    ):
        if isinstance(exc, kind):
            return reason
    return "error"


def explain(
    conn: psycopg.Connection[Any],
    statement: Statement,
    server: InsightServer,
    settings: SessionSettings,
    *,
    search_path: str | None = None,
) -> Plan:
    """The generic plan of *statement* on *conn* (see the module docstring), planned
    with *search_path* (its user's, from ``search_paths``). Hypothetical indexes of the
    session (``advice``) are seen. Raises PlanSkipped when the statement cannot be
    planned, the psycopg error when the connection itself failed."""
    try:
        parsed = parse_statement(statement.text)
    except StatementRefused as exc:
        raise PlanSkipped(exc.reason, str(exc)) from None
    method: PlanMethod = "generic_plan" if server.generic_plan else "prepared_generic"
    prepared = False
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION READ ONLY")
            _configure(conn, settings, search_path)
            if method == "generic_plan":
                # The simple query protocol: the extended one would take $1 for a
                # parameter of the EXPLAIN itself and ask for its value. One statement
                # only was checked by PostgreSQL's parser above, under the same lexing
                # rules (standard_conforming_strings is on in this transaction).
                query = sql.SQL("EXPLAIN (GENERIC_PLAN, VERBOSE, FORMAT JSON) ") + sql.SQL(statement.text)
                row = conn.execute(query).fetchone()
            else:
                # PREPARE outlives the transaction: DEALLOCATE below, whatever happens.
                # The extended query protocol (binary=True) refuses a second statement.
                conn.execute(sql.SQL("PREPARE {} AS ").format(sql.Identifier(PREPARED_NAME))
                             + sql.SQL(statement.text), binary=True)
                prepared = True
                args = sql.SQL("({})").format(sql.SQL(", ").join([sql.NULL] * parsed.parameters)) \
                    if parsed.parameters else sql.SQL("")
                row = conn.execute(sql.SQL("EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE {}{}").format(
                    sql.Identifier(PREPARED_NAME), args), binary=True).fetchone()
    except psycopg.Error as exc:
        if conn.broken or conn.closed:
            raise  # the connection failed: not this statement's doing
        # Timeouts (QueryCanceled, LockNotAvailable) are OperationalErrors too.
        raise PlanSkipped(_classify(exc), str(exc).strip()) from None
    finally:
        if prepared and not conn.closed and not conn.broken:
            try:
                conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(PREPARED_NAME)))
            except psycopg.errors.InvalidSqlStatementName:
                # Already gone (seen once on a server just restarted): what matters is that
                # the name is free for the next statement, and it is.
                log.debug("insight: %s was already deallocated", PREPARED_NAME)
    assert row is not None  # EXPLAIN returns one row
    document = row[0]
    if isinstance(document, str):  # json arrives as text where no loader applies
        document = json.loads(document)
    top: Mapping[str, Any] = document[0]
    return Plan(query_id=statement.query_id, plan_hash=plan_hash(top), plan=top,
                total_cost=float(top["Plan"]["Total Cost"]), method=method, datname=statement.datname)


def _configure(conn: psycopg.Connection[Any], settings: SessionSettings, search_path: str | None) -> None:
    """The transaction's settings: timeouts, generic plans, the user's search path."""
    values = [
        # Said in pg_stat_activity while planning, on whatever session this is.
        ("application_name", settings.application_name),
        ("statement_timeout", f"{int(settings.statement_timeout * 1000)}"),
        ("lock_timeout", f"{int(settings.lock_timeout * 1000)}"),
        ("plan_cache_mode", "force_generic_plan"),
        # The server must split the text into statements as parse_statement did.
        ("standard_conforming_strings", "on"),
        ("search_path", search_path or DEFAULT_SEARCH_PATH),
    ]
    conn.execute(sql.SQL("SELECT ") + sql.SQL(", ").join(
        sql.SQL("set_config({}, {}, true)").format(sql.Literal(name), sql.Literal(value)) for name, value in values))


def refresh_plans(
    conn: psycopg.Connection[Any],
    statements: Iterable[Statement],
    server: InsightServer,
    settings: SessionSettings,
) -> PlanRefresh:
    """Plan each statement on *conn* (connected to the statements' database); the ones
    that cannot be planned are counted by reason in ``skipped``. A connection failure
    raises its psycopg error (the plans already made are lost with it)."""
    started = time.monotonic()
    todo = list(statements)
    paths = search_paths(conn, (s.username for s in todo if s.username))
    plans: list[Plan] = []
    skipped: Counter[str] = Counter()
    for statement in todo:
        try:
            plans.append(explain(conn, statement, server, settings,
                                 search_path=paths.get(statement.username or "")))
        except PlanSkipped as exc:
            skipped[exc.reason] += 1
            log.debug("insight: query %s not planned (%s): %s", statement.query_id, exc.reason, exc)
    return PlanRefresh(tuple(plans), dict(skipped), time.monotonic() - started)
