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
3. **Write cost.** An index makes its statements' reads cheaper and every write of its
   table dearer. Both are weighed in the planner's cost units per second, at the rates of
   the moment (``weigh``):
   * *saving* = the sum over the advice's statements of (calls / window seconds) x (cost
     before - cost after), each statement's own generic-plan cost without and with the
     hypothetical index; the window is the time over which the calls were counted
     (``Statement.window_seconds``: in ``pgperf serve`` the sampling intervals since the
     previous refresh, in ``pgperf advise`` the time since pg_stat_statements' reset);
   * *maintenance* = rows written per second x the cost of entering one row in the index
     (``EntryCosts``): ``random_page_cost`` for the leaf page its entry lands in, plus
     ``cpu_index_tuple_cost`` for each level of a b-tree over the table's rows
     (``reltuples``, ``BTREE_FANOUT`` entries a page) -- the server's settings as pgperf's
     session sees them (``current_setting``: a database's or role's own values apply). The
     rows written per second are pg_stat_user_tables' rows changed since the table's last
     analyze (so that a bulk load before it does not inflate the rate; since the statistics
     were reset for a table never analyzed) -- a load committed in the analyze's own
     transaction still counts, until the next (auto)analyze. Each counts as one entry, an
     update that could have stayed HOT included: an upper bound.
   ``write_verdict`` is ``pays`` when the saving is at least the maintenance,
   ``write_heavy`` when the maintenance exceeds it (the advice is kept, its note says it
   would cost more to maintain than it saves at the current rates, and nothing presents it
   as a recommendation), ``unknown`` when either figure is: without HypoPG (no cost after is
   invented), without a window (PostgreSQL 13's pg_stat_statements does not record its
   reset) or without a write rate. Advice is ranked (``rank``): the advice that pays by net
   benefit (saving - maintenance), then the unknown by cost saved, then the write-heavy.
4. **Applied.** ``mark_applied`` sets ``status: "applied"`` where a valid index whose
   leading columns are the advice's now exists.
"""

from __future__ import annotations

import logging
import math
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
    "BTREE_FANOUT",
    "Candidate",
    "EntryCosts",
    "IndexAdvice",
    "ReadSaving",
    "TableFacts",
    "Weighing",
    "advise",
    "btree_depth",
    "candidates_from_plan",
    "entry_costs",
    "mark_applied",
    "rank",
    "table_facts",
    "weigh",
]

log = logging.getLogger(__name__)

Verified = Literal["hypopg", "heuristic"]
Status = Literal["open", "applied"]
WriteVerdict = Literal["pays", "write_heavy", "unknown"]
#: Entries of one b-tree page, to estimate a tree's depth from its rows: an 8 kB page holds
#: some 400 entries of a bigint or a timestamp, fewer of wider keys.
BTREE_FANOUT = 256
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
    #: Planner cost units per second the index saves its statements' reads, at the rate
    #: they were called (None: unknown; see the module docstring).
    saving_per_second: float | None = None
    #: Planner cost units per second its upkeep costs at the table's write rate (None: unknown).
    maintenance_per_second: float | None = None
    write_verdict: WriteVerdict = "unknown"
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

    @property
    def cost_saved(self) -> float:
        """The statements' summed planner cost the index saves (all of it when unverified)."""
        return self.cost_before - (self.cost_after or 0.0)

    @property
    def net_per_second(self) -> float | None:
        """Saving less maintenance, in planner cost units per second, where both are known."""
        if self.saving_per_second is None or self.maintenance_per_second is None:
            return None
        return self.saving_per_second - self.maintenance_per_second

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "table": self.table, "columns": list(self.columns), "sql": self.sql,
            "query_ids": [str(q) for q in self.query_ids], "cost_before": round(self.cost_before, 2),
            "cost_after": None if self.cost_after is None else round(self.cost_after, 2),
            "verified": self.verified, "status": self.status,
            "observed_mean_ms_before": self.observed_mean_ms_before,
            "observed_mean_ms_after": self.observed_mean_ms_after,
            "writes_per_second": None if self.writes_per_second is None else round(self.writes_per_second, 3),
            "saving_per_second": _round(self.saving_per_second),
            "maintenance_per_second": _round(self.maintenance_per_second),
            "write_verdict": self.write_verdict,
            "note": self.note,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


_VERDICT_ORDER = {"pays": 0, "unknown": 1, "write_heavy": 2}


def rank(advice: IndexAdvice) -> tuple[int, float, float, tuple[str, str, str, tuple[str, ...]]]:
    """The order advice is given in: the advice that pays first, the largest net benefit
    first; then the advice whose balance is unknown, the largest cost saved first; then
    the write-heavy, the smallest loss first."""
    net = advice.net_per_second if advice.write_verdict != "unknown" else None
    return (_VERDICT_ORDER[advice.write_verdict], -(net or 0.0), -advice.cost_saved, advice.key)


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


# -- write cost --------------------------------------------------------------------------


def btree_depth(rows: float) -> int:
    """Levels of a b-tree over *rows* entries, ``BTREE_FANOUT`` entries a page (1: the root
    is the leaf)."""
    return max(1, math.ceil(math.log(max(rows, 1.0)) / math.log(BTREE_FANOUT)))


@dataclass(frozen=True)
class EntryCosts:
    """The cost settings the planner would apply in pgperf's session."""

    random_page_cost: float = 4.0
    cpu_index_tuple_cost: float = 0.005

    def per_row(self, reltuples: float) -> float:
        """Planner cost of entering one row in a b-tree over *reltuples* rows: the leaf page
        its entry lands in, read and dirtied at random, and one index tuple handled on each
        level on the way down."""
        return self.random_page_cost + self.cpu_index_tuple_cost * btree_depth(reltuples)


def entry_costs(conn: psycopg.Connection[Any]) -> EntryCosts:
    """The cost settings of *conn*'s session (its database's and role's values apply)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT current_setting('random_page_cost')::float8,"
                          " current_setting('cpu_index_tuple_cost')::float8").fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    return EntryCosts(float(row[0]), float(row[1]))


@dataclass(frozen=True)
class ReadSaving:
    """One statement of an advice: its calls over *window_seconds*, and its generic plan's
    cost without and with the index (None: not verified)."""

    calls: int
    window_seconds: float | None
    cost_before: float
    cost_after: float | None


@dataclass(frozen=True)
class Weighing:
    """An index's read saving against its upkeep, in planner cost units per second."""

    saving_per_second: float | None
    maintenance_per_second: float | None
    verdict: WriteVerdict
    #: What the weighing says, for the advice's note ("" when there is nothing to weigh).
    note: str


def _amount(value: float) -> str:
    """A rate for a sentence: a few significant digits, thousands separated."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 0.95:  # not "1" for 0.99
        return f"{value:,.1f}"
    return f"{value:.2g}" if value else "0"


def weigh(reads: Sequence[ReadSaving], writes_per_second: float | None, per_row: float, since: str = "") -> Weighing:
    """The read saving of an index serving *reads* against its upkeep at *writes_per_second*
    rows written (counted *since*: "since the table's last analyze"), *per_row* planner cost
    each (``EntryCosts.per_row``). See the module docstring."""
    maintenance = None if writes_per_second is None else writes_per_second * per_row
    if not reads or any(r.cost_after is None for r in reads):
        # Not verified: no cost after, and none is invented. The note speaks of the writes.
        return Weighing(None, maintenance, "unknown", "")
    if any(r.window_seconds is None or r.window_seconds <= 0 for r in reads):
        return Weighing(None, maintenance, "unknown",
                        "Whether the index pays for its upkeep is unknown: the time over which its statements' calls "
                        "were counted is not known (pg_stat_statements records when it was reset from PostgreSQL 14 "
                        "on, in pg_stat_statements_info).")
    calls = sum(r.calls / r.window_seconds for r in reads if r.window_seconds)
    saving = sum(r.calls / r.window_seconds * (r.cost_before - (r.cost_after or 0.0)) for r in reads
                 if r.window_seconds)
    if maintenance is None or writes_per_second is None:
        return Weighing(saving, None, "unknown",
                        f"Whether the index pays for its upkeep is unknown: it saves its statements' reads about "
                        f"{_amount(saving)} planner cost units per second, but the table's write rate is not known.")
    rate = f"{_amount(calls)} calls per second"
    counted = f" {since}" if since else ""
    writes = f"{_amount(writes_per_second)} rows written per second{counted}, about {_amount(per_row)} each to enter in the index"
    if maintenance > saving:
        return Weighing(saving, maintenance, "write_heavy",
                        f"The index would cost more to maintain than it saves at the current rates: about "
                        f"{_amount(maintenance)} planner cost units per second to keep it up to date ({writes}), "
                        f"against about {_amount(saving)} per second saved on its statements' reads ({rate}). Not "
                        "worth creating unless the reads grow or the writes slow down.")
    return Weighing(saving, maintenance, "pays",
                    f"At the current rates the index pays for its upkeep: it saves its statements' reads about "
                    f"{_amount(saving)} planner cost units per second ({rate}), against about "
                    f"{_amount(maintenance)} per second to keep it up to date ({writes}).")


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
    """Index advice for the statements behind *plans*, on *conn* (their database), in the
    order of ``rank``. See the module docstring."""
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
    found: list[tuple[IndexAdvice, TableFacts, dict[int, float]]] = []
    for (schema, relname, columns), using in sorted(proposals.items()):
        table = facts.get((schema, relname))
        if schema in _SYSTEM_SCHEMAS or table is None or table.reltuples < options.min_table_rows \
                or table.has_index_on(columns):
            continue
        before = {qid: p.total_cost for qid, p in using.items()}
        found.append((IndexAdvice(
            schema=schema, relname=relname, columns=columns, query_ids=tuple(sorted(using)),
            cost_before=sum(before.values()), cost_after=None, verified="heuristic",
            writes_per_second=table.writes_per_second, note=write_note(table), datname=datname,
        ), table, before))
    if not found:
        return []
    costs = entry_costs(conn)
    if server.hypopg_schema is not None:
        paths = search_paths(conn, (s.username for s in statements if s.username))
        advice = []
        for a, table, before in found:
            after = _verify(conn, a, by_query, paths, server, settings)
            if after is None or sum(after.values()) > a.cost_before * options.max_cost_ratio:
                continue
            a = replace(a, cost_after=sum(after.values()), verified="hypopg")
            advice.append(_weighed(a, table, before, after, by_query, costs))
        advice = _drop_prefixes(advice)
    else:
        how = ("CREATE EXTENSION hypopg in this database" if server.hypopg_available
               else "install HypoPG (postgresql-NN-hypopg) and CREATE EXTENSION hypopg")
        advice = [_weighed(a, table, before, None, by_query, costs) for a, table, before in found]
        advice = [replace(a, note=f"Not verified by the planner ({how} to verify). {a.note}") for a in advice]
    return sorted(advice, key=rank)


def _weighed(advice: IndexAdvice, table: TableFacts, before: Mapping[int, float], after: Mapping[int, float] | None,
             statements: Mapping[int, Statement], costs: EntryCosts) -> IndexAdvice:
    """*advice* with its read saving weighed against its upkeep (``weigh``), said in its note."""
    reads = [ReadSaving(statements[q].calls, statements[q].window_seconds, before[q],
                        None if after is None else after[q]) for q in advice.query_ids]
    since = "since the table's last analyze" if table.since_analyze else "since the statistics were reset"
    weighing = weigh(reads, table.writes_per_second, costs.per_row(table.reltuples), since)
    # A verdict says the write rate itself; otherwise the note says what the writes will do.
    notes = (weighing.note,) if weighing.verdict != "unknown" else (weighing.note, write_note(table))
    return replace(advice, saving_per_second=weighing.saving_per_second,
                   maintenance_per_second=weighing.maintenance_per_second, write_verdict=weighing.verdict,
                   note=" ".join(n for n in notes if n))


def _verify(
    conn: psycopg.Connection[Any],
    advice: IndexAdvice,
    statements: Mapping[int, Statement],
    paths: Mapping[str, str],
    server: InsightServer,
    settings: SessionSettings,
) -> dict[int, float] | None:
    """The cost of each of *advice*'s statements under a hypothetical index, or None when
    one could not be planned again or HypoPG refused the index."""
    assert server.hypopg_schema is not None
    hypopg = sql.Identifier(server.hypopg_schema)
    reset = sql.SQL("SELECT {}.hypopg_reset()").format(hypopg)
    after: dict[int, float] = {}
    try:
        conn.execute(reset)
        # Outside the planning transactions: hypothetical indexes are not transactional,
        # they live in this session until hypopg_reset().
        conn.execute(sql.SQL("SELECT {}.hypopg_create_index({})").format(
            hypopg, sql.Literal(advice.hypothetical_sql)))
        for qid in advice.query_ids:
            statement = statements[qid]
            after[qid] = explain(conn, statement, server, settings,
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
    return after


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
