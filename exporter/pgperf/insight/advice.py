"""Index advice taken from the plans and proven by the planner.

1. **Candidates** come from the generic plans (``plans``), not from the statement texts:
   each sequential scan of a table of at least ``min_table_rows`` rows proposes
   * its filter's columns — equality columns first, then the first range column;
   * the columns it is joined on (hash, merge and nested-loop conditions above it), with
     its filter's equality columns;
   * the keys of a sort that reads it directly, after its filter's equality columns;
   at most ``max_columns`` each. A candidate an existing index already starts with is
   dropped (the planner had it and chose otherwise).
2. **Verification.** With HypoPG created in the database, each candidate becomes a
   hypothetical index in pgperf's own session (``hypopg_create_index``), the statements
   that proposed it are planned again, and the advice is kept only when their summed
   cost falls to at most ``max_cost_ratio`` (half) of what it was; ``hypopg_reset()``
   follows every candidate. Without HypoPG every candidate is kept, ``verified:
   "heuristic"``, with a note saying how to verify it.
3. **Write cost.** Every advice carries its table's rows written per second
   (pg_stat_user_tables: the rows changed since the table's last analyze, so that a bulk
   load before it does not inflate the rate; since the statistics were reset for a table
   never analyzed) and says that each insert and update will also maintain the index.
4. **Applied.** ``mark_applied`` sets ``status: "applied"`` where a valid index whose
   leading columns are the advice's now exists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from ..db import SessionSettings
from .expressions import comparisons, sort_columns
from .options import AdviceOptions
from .plans import Plan, PlanSkipped, Statement, explain, search_paths
from .server import InsightServer
from .statement import quote_ident

__all__ = [
    "Candidate",
    "IndexAdvice",
    "TableFacts",
    "advise",
    "candidates_from_plan",
    "mark_applied",
    "table_facts",
]

log = logging.getLogger(__name__)

Verified = Literal["hypopg", "heuristic"]
Status = Literal["open", "applied"]
_NAME_MAX = 63  # NAMEDATALEN - 1
#: Catalogs take no user index: their scans propose nothing.
_SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_toast"})


@dataclass(frozen=True)
class Candidate:
    """An index a plan suggests: ``reason`` is filter, join or sort."""

    schema: str
    relname: str
    columns: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class TableFacts:
    schema: str
    relname: str
    reltuples: float
    #: Key columns of each valid, non-partial index (None for an expression column).
    indexes: tuple[tuple[str | None, ...], ...]
    #: Rows inserted, updated or deleted per second since the table's last (auto)analyze —
    #: a recent rate, which a bulk load before that analyze does not inflate — or, for a
    #: table never analyzed, since the statistics were reset; None if unknown.
    writes_per_second: float | None
    #: Whether ``writes_per_second`` is the rate since the last analyze.
    since_analyze: bool = False

    def has_index_on(self, columns: Sequence[str]) -> bool:
        """An index whose leading columns are *columns* exists."""
        n = len(columns)
        return any(tuple(index[:n]) == tuple(columns) for index in self.indexes)


@dataclass(frozen=True)
class IndexAdvice:
    """One index to create, with the evidence for it (the shape of ``pgperf advise``)."""

    schema: str
    relname: str
    columns: tuple[str, ...]
    query_ids: tuple[int, ...]
    cost_before: float
    cost_after: float | None
    verified: Verified
    status: Status = "open"
    writes_per_second: float | None = None
    note: str = ""
    datname: str | None = None
    observed_mean_ms_before: float | None = None
    observed_mean_ms_after: float | None = None
    applied_at: datetime | None = None
    kind: Literal["index"] = field(default="index", init=False)

    @property
    def table(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.relname)}"

    @property
    def index_name(self) -> str:
        """PostgreSQL's own choice for such an index (table_columns_idx), within 63 bytes."""
        base = "_".join((self.relname, *self.columns))
        while len(f"{base}_idx".encode()) > _NAME_MAX:
            base = base[:-1]
        return f"{base}_idx"

    @property
    def sql(self) -> str:
        columns = ", ".join(quote_ident(c) for c in self.columns)
        return f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote_ident(self.index_name)} ON {self.table} ({columns})"

    @property
    def hypothetical_sql(self) -> str:
        """The statement handed to hypopg_create_index (no name, no CONCURRENTLY)."""
        return f"CREATE INDEX ON {self.table} ({', '.join(quote_ident(c) for c in self.columns)})"

    @property
    def key(self) -> tuple[str, str, str, tuple[str, ...]]:
        return (self.datname or "", self.schema, self.relname, self.columns)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "table": self.table, "columns": list(self.columns), "sql": self.sql,
            "query_ids": [str(q) for q in self.query_ids], "cost_before": round(self.cost_before, 2),
            "cost_after": None if self.cost_after is None else round(self.cost_after, 2),
            "verified": self.verified, "status": self.status,
            "observed_mean_ms_before": self.observed_mean_ms_before,
            "observed_mean_ms_after": self.observed_mean_ms_after,
            "writes_per_second": None if self.writes_per_second is None else round(self.writes_per_second, 3),
            "note": self.note,
        }


# -- candidates ------------------------------------------------------------------------

_JOIN_KEYS = ("Hash Cond", "Merge Cond", "Join Filter")
# Nodes a sort may read a scan through and still be served by an index on the scan.
_PASS_THROUGH = {"Gather", "Gather Merge", "Materialize", "Memoize"}


def candidates_from_plan(plan: Mapping[str, Any], max_columns: int = 3) -> list[Candidate]:
    """The index candidates of one plan (EXPLAIN (VERBOSE, FORMAT JSON)'s object or its
    "Plan" node), before table sizes and existing indexes are looked at."""
    root = plan.get("Plan", plan)
    found: list[Candidate] = []
    _walk(root, [], found, max_columns)
    return list(dict.fromkeys(found))


def _walk(node: Mapping[str, Any], ancestors: list[Mapping[str, Any]], found: list[Candidate],
          max_columns: int) -> None:
    if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") and node.get("Schema"):
        found += _scan_candidates(node, ancestors, max_columns)
    for child in node.get("Plans") or ():
        _walk(child, [*ancestors, node], found, max_columns)


def _scan_candidates(scan: Mapping[str, Any], ancestors: list[Mapping[str, Any]], max_columns: int) -> list[Candidate]:
    alias = str(scan.get("Alias") or scan["Relation Name"])
    schema, relname = str(scan["Schema"]), str(scan["Relation Name"])
    eq: list[str] = []
    ranges: list[str] = []
    for c in comparisons(str(scan.get("Filter") or "")):
        if c.alias == alias:
            (eq if c.use == "eq" else ranges).append(c.column)
    for c in comparisons(str(scan.get("Join Filter") or "")):
        if c.alias == alias and c.use == "eq":
            eq.append(c.column)
    joined: list[str] = []
    for ancestor in ancestors:
        for key in _JOIN_KEYS:
            for c in comparisons(str(ancestor.get(key) or "")):
                if c.alias == alias and c.use == "eq" and c.other_aliases:
                    joined.append(c.column)
    eq, joined = list(dict.fromkeys(eq)), list(dict.fromkeys(joined))
    out: list[tuple[list[str], str]] = []
    if eq or ranges:
        out.append(([*eq, *[r for r in ranges[:1] if r not in eq]], "filter"))
    if joined:
        out.append((list(dict.fromkeys([*joined, *eq])), "join"))
    sort = _sort_above(scan, ancestors, alias)
    if sort:
        out.append((list(dict.fromkeys([*eq, *sort])), "sort"))
    return [Candidate(schema, relname, tuple(cols[:max_columns]), reason) for cols, reason in out if cols]


def _sort_above(scan: Mapping[str, Any], ancestors: list[Mapping[str, Any]], alias: str) -> list[str]:
    """The sort keys of a Sort that reads *scan* directly (through pass-through nodes)."""
    for ancestor in reversed(ancestors):
        node_type = ancestor.get("Node Type")
        if node_type in ("Sort", "Incremental Sort"):
            keys = sort_columns([str(k) for k in ancestor.get("Sort Key") or ()])
            if keys and all(k.alias == alias for k in keys):
                return [k.column for k in keys]
            return []
        if node_type not in _PASS_THROUGH or len(ancestor.get("Plans") or ()) != 1:
            return []
    return []


# -- catalog ---------------------------------------------------------------------------

_FACTS_SQL = """
SELECT n.nspname, c.relname, c.reltuples::float8,
       coalesce((SELECT array_agg(array_to_string(ARRAY(
                   SELECT coalesce(a.attname::text, '')
                   FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, ord)
                   LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
                   ORDER BY k.ord), chr(31)))
                 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisvalid AND i.indpred IS NULL), '{}'),
       CASE WHEN greatest(s.last_analyze, s.last_autoanalyze) IS NOT NULL
            THEN s.n_mod_since_analyze
                 / greatest(extract(epoch FROM now() - greatest(s.last_analyze, s.last_autoanalyze)), 1)
            ELSE (coalesce(s.n_tup_ins, 0) + coalesce(s.n_tup_upd, 0) + coalesce(s.n_tup_del, 0))
                 / nullif(extract(epoch FROM now() - coalesce(
                     (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()),
                     pg_postmaster_start_time())), 0)
       END,
       greatest(s.last_analyze, s.last_autoanalyze) IS NOT NULL
FROM unnest(%s::text[], %s::text[]) AS t(nspname, relname)
JOIN pg_namespace n ON n.nspname = t.nspname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.relname
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
"""


def table_facts(conn: psycopg.Connection[Any], tables: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TableFacts]:
    """Size, indexes and write rate of each (schema, table) in *conn*'s database."""
    wanted = sorted(set(tables))
    if not wanted:
        return {}
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(_FACTS_SQL, ([s for s, _ in wanted], [t for _, t in wanted])).fetchall()
    out = {}
    for schema, relname, reltuples, indexes, writes, since_analyze in rows:
        keys = tuple(tuple(col or None for col in index.split(chr(31))) for index in indexes)
        out[(schema, relname)] = TableFacts(schema, relname, max(0.0, float(reltuples)), keys,
                                            None if writes is None else float(writes), bool(since_analyze))
    return out


# -- advice ----------------------------------------------------------------------------


def write_note(facts: TableFacts | None) -> str:
    if facts is None or facts.writes_per_second is None:
        return "Write rate unknown: each insert and update of the table will also maintain the index."
    since = "since its last analyze" if facts.since_analyze else "since its statistics were reset"
    return (f"{facts.writes_per_second:,.2f} rows inserted, updated or deleted per second on this table ({since}): "
            "each insert and update will also maintain the index.")


def advise(
    conn: psycopg.Connection[Any],
    plans: Sequence[Plan],
    statements: Sequence[Statement],
    server: InsightServer,
    settings: SessionSettings,
    options: AdviceOptions | None = None,
) -> list[IndexAdvice]:
    """Index advice for the statements behind *plans*, on *conn* (their database); the
    largest cost saving first. See the module docstring."""
    options = options or AdviceOptions()
    by_query = {s.query_id: s for s in statements}
    proposals: dict[tuple[str, str, tuple[str, ...]], dict[int, Plan]] = {}
    for plan in plans:
        if plan.query_id not in by_query:
            continue
        for c in candidates_from_plan(plan.plan, options.max_columns):
            proposals.setdefault((c.schema, c.relname, c.columns), {})[plan.query_id] = plan
    facts = table_facts(conn, ((s, t) for s, t, _ in proposals))
    datname = next((p.datname for p in plans if p.datname), None)
    advice: list[IndexAdvice] = []
    for (schema, relname, columns), using in sorted(proposals.items()):
        table = facts.get((schema, relname))
        if schema in _SYSTEM_SCHEMAS or table is None or table.reltuples < options.min_table_rows \
                or table.has_index_on(columns):
            continue
        advice.append(IndexAdvice(
            schema=schema, relname=relname, columns=columns, query_ids=tuple(sorted(using)),
            cost_before=sum(p.total_cost for p in using.values()), cost_after=None, verified="heuristic",
            writes_per_second=table.writes_per_second, note=write_note(table), datname=datname,
        ))
    if server.hypopg_schema is not None:
        paths = search_paths(conn, (s.username for s in statements if s.username))
        advice = [a for a in (_verify(conn, a, by_query, paths, server, settings, options) for a in advice) if a]
        advice = _drop_prefixes(advice)
    else:
        how = ("CREATE EXTENSION hypopg in this database" if server.hypopg_available
               else "install HypoPG (postgresql-NN-hypopg) and CREATE EXTENSION hypopg")
        advice = [replace(a, note=f"Not verified by the planner ({how} to verify). {a.note}") for a in advice]
    return sorted(advice, key=lambda a: (-(a.cost_before - (a.cost_after or 0.0)), a.key))


def _verify(
    conn: psycopg.Connection[Any],
    advice: IndexAdvice,
    statements: Mapping[int, Statement],
    paths: Mapping[str, str],
    server: InsightServer,
    settings: SessionSettings,
    options: AdviceOptions,
) -> IndexAdvice | None:
    """*advice* with its cost under a hypothetical index, or None when it does not halve."""
    assert server.hypopg_schema is not None
    hypopg = sql.Identifier(server.hypopg_schema)
    reset = sql.SQL("SELECT {}.hypopg_reset()").format(hypopg)
    after = 0.0
    try:
        conn.execute(reset)
        # Outside the planning transactions: hypothetical indexes are not transactional,
        # they live in this session until hypopg_reset().
        conn.execute(sql.SQL("SELECT {}.hypopg_create_index({})").format(
            hypopg, sql.Literal(advice.hypothetical_sql)))
        for qid in advice.query_ids:
            statement = statements[qid]
            after += explain(conn, statement, server, settings,
                             search_path=paths.get(statement.username or "")).total_cost
    except PlanSkipped as exc:
        log.info("insight: candidate %s (%s) not verified: query %s could not be planned again (%s)",
                 advice.table, ", ".join(advice.columns), exc, exc.reason)
        return None
    except psycopg.Error as exc:
        if conn.broken or conn.closed:
            raise
        log.info("insight: HypoPG refused the candidate %s: %s", advice.hypothetical_sql, str(exc).strip())
        return None
    finally:
        if not conn.closed and not conn.broken:
            conn.execute(reset)
    if after > advice.cost_before * options.max_cost_ratio:
        return None
    return replace(advice, cost_after=after, verified="hypopg")


def _drop_prefixes(advice: list[IndexAdvice]) -> list[IndexAdvice]:
    """Drop an advice whose columns begin another one on the same table that serves its
    statements at least as well (one index instead of two)."""
    kept = []
    for a in advice:
        covered = any(
            b is not a and (b.schema, b.relname) == (a.schema, a.relname) and len(b.columns) > len(a.columns)
            and b.columns[: len(a.columns)] == a.columns and set(a.query_ids) <= set(b.query_ids)
            and (b.cost_after or 0.0) <= (a.cost_after or 0.0)
            for b in advice
        )
        if not covered:
            kept.append(a)
    return kept


def mark_applied(conn: psycopg.Connection[Any], advice: Sequence[IndexAdvice], *,
                 now: datetime | None = None) -> list[IndexAdvice]:
    """*advice* with ``status`` from the indexes that exist now on *conn*'s database:
    applied when a valid index starts with the advice's columns (``applied_at`` is set
    to *now* when it becomes so), open otherwise."""
    facts = table_facts(conn, ((a.schema, a.relname) for a in advice))
    out = []
    for a in advice:
        table = facts.get((a.schema, a.relname))
        applied = table is not None and table.has_index_on(a.columns)
        if applied and a.status != "applied":
            out.append(replace(a, status="applied", applied_at=now or datetime.now(UTC)))
        elif not applied and a.status != "open":
            out.append(replace(a, status="open", applied_at=None))
        else:
            out.append(a)
    return out
