"""Table and b-tree index bloat: estimates from the catalog statistics, exact figures on
demand with pgstattuple.

**Estimates** (the collector, in every selected database, every ``interval``: 10 minutes
by default). For each table, the average row width comes from ``pg_stats`` (``avg_width``
and ``null_frac`` of every column, as ANALYZE measured them); a row then takes its
header (23 bytes, plus the null bitmap when a column has NULLs, aligned to 8), its data,
alignment to 8 and a 4-byte line pointer. The pages the table's live rows need at its
fillfactor are ``reltuples`` divided by the rows that fit in a page (8192 bytes less the
24-byte page header); what ``relpages`` has beyond that is bloat. Both counts are those of
the last VACUUM or ANALYZE, so the estimate describes the table as it was then. A b-tree
index is estimated the same way from the statistics of its columns (or of its
expressions, which ANALYZE gathers under the index's name): 8-byte index tuple headers,
16 bytes of b-tree special space per page, leaf fillfactor 90 by default, and internal
pages filled to 70 %. A non-unique single-column index whose operator class allows
deduplication (PostgreSQL 13+: the key is stored once per group of equal keys, 6 bytes
per extra row) is estimated with ``n_distinct`` groups; other deduplicated indexes are
estimated without it, which can only understate their bloat.

Like the widely used estimation queries, this ignores padding between columns, TOAST
tables and per-page limits on tuple counts: expect a few percent off on ordinary tables.
Tables or indexes whose statistics are incomplete — never analyzed, or hidden from the
role — get no estimate and are counted in ``pgperf_bloat_unestimated``. ``pg_stats`` only
shows a role the columns it may SELECT, and pgperf's least-privileged role (pg_monitor)
may read no table: ``docs/setup-bloat.sql``, run by a superuser in each database, creates
``pgperf.column_stats()``, which gives it the widths, null fractions and distinct counts
of the statistics (no values) and which the collector uses when it finds it.

**Exact figures** (``pgperf bloat --exact TABLE``) read every page with the
``pgstattuple`` extension (``pgstattuple()`` for the table, ``pgstatindex()`` for its
b-tree indexes) when it is installed in the database (``CREATE EXTENSION pgstattuple``;
executing its functions needs ``pg_stat_scan_tables`` or a superuser). Table bloat is
then what a rewrite would give back: the table's size less the pages its live tuples
(their exact count and average length) need at its fillfactor; ``free_space`` and
``dead_tuple_len`` are shown as pgstattuple reports them. Index bloat is the index's size
less its metapage, internal pages and the leaf pages its leaf tuples would fill at the
index's fillfactor (``avg_leaf_density``). Without the extension the estimates are
shown and the exact figures are refused with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import Field

from .._types import Duration
from ._base import CollectContext, CollectorOptions, CollectorResult, CollectorSpec, Family, MetricDef

__all__ = [
    "SPEC", "BloatReport", "Estimate", "ExactUnavailable", "Inputs", "ObjectBloat", "RelationNotFound",
    "estimate", "estimates", "inspect",
]


class BloatOptions(CollectorOptions):
    interval: Duration | None = 600.0
    #: Tables, and indexes, served per database: the most bloated first.
    limit: int = Field(50, ge=1, le=10000)


_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"
_FILLFACTOR = ("COALESCE((SELECT substring(o FROM '^fillfactor=([0-9]+)$')::int FROM unnest({rel}.reloptions) AS o "
               "WHERE o LIKE 'fillfactor=%%'), {default})")

# The inputs of a table's estimate: its counts as of the last VACUUM/ANALYZE and the
# statistics of its columns. %(table)s: one table's OID, or NULL for all.
TABLES_SQL = f"""
WITH tbl AS (
  SELECT c.oid, n.nspname AS schemaname, c.relname, c.relpages::float8 AS pages, c.reltuples::float8 AS tuples,
         {_FILLFACTOR.format(rel="c", default=100)} AS fillfactor
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'm') AND c.relpages > 0 AND {_SCHEMAS}
    AND (%(table)s::oid IS NULL OR c.oid = %(table)s::oid)
), cols AS (
  SELECT t.oid, count(*) AS columns, count(s.avg_width) AS with_stats,
         sum((1 - COALESCE(s.null_frac, 0)) * COALESCE(s.avg_width, 0))::float8 AS width,
         bool_or(COALESCE(s.null_frac, 0) > 0) AS nullable
  FROM tbl t
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN {{stats}} s ON s.schemaname = t.schemaname AND s.tablename = t.relname AND s.attname = a.attname
                      AND NOT s.inherited
  GROUP BY t.oid
)
SELECT t.oid, t.schemaname, t.relname, '' AS indexrelname, t.pages, t.tuples, t.fillfactor,
       c.columns, c.with_stats, c.width, c.nullable, false AS dedup, NULL::float8 AS n_distinct
FROM tbl t JOIN cols c ON c.oid = t.oid
"""

# The inputs of a b-tree index's estimate. indkey is 0-based; an expression column has
# indkey 0 and its statistics under the index's own name. Deduplication (13+) is possible
# for a non-unique index without INCLUDE columns whose operator classes all have an
# "equalimage" support function (number 4) and whose collations are deterministic, unless
# turned off with deduplicate_items (PostgreSQL documentation, B-Tree Indexes, Deduplication).
INDEXES_SQL = f"""
WITH idx AS (
  SELECT i.indexrelid AS oid, n.nspname AS schemaname, t.relname, c.relname AS indexrelname,
         c.relpages::float8 AS pages,
         (CASE WHEN c.reltuples >= 0 THEN c.reltuples ELSE t.reltuples END)::float8 AS tuples,
         {_FILLFACTOR.format(rel="c", default=90)} AS fillfactor,
         i.indrelid, i.indkey, i.indnatts,
         NOT i.indisunique AND i.indnatts = i.indnkeyatts
           AND NOT COALESCE('deduplicate_items=off' = ANY(c.reloptions), false)
           AND NOT EXISTS (
             SELECT 1 FROM unnest(i.indclass::oid[]) AS k(opclass)
             JOIN pg_opclass oc ON oc.oid = k.opclass
             WHERE NOT EXISTS (SELECT 1 FROM pg_amproc p WHERE p.amprocfamily = oc.opcfamily
                                 AND p.amproclefttype = oc.opcintype AND p.amprocnum = 4))
           AND NOT EXISTS (
             SELECT 1 FROM unnest(i.indcollation::oid[]) AS k(coll)
             JOIN pg_collation co ON co.oid = k.coll WHERE NOT co.collisdeterministic) AS dedup
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_am am ON am.oid = c.relam AND am.amname = 'btree'
  WHERE c.relpages > 1 AND t.reltuples >= 0 AND i.indisvalid AND {_SCHEMAS}
    AND (%(table)s::oid IS NULL OR i.indrelid = %(table)s::oid)
), cols AS (
  SELECT x.oid, count(*) AS columns, count(COALESCE(ts.avg_width, es.avg_width)) AS with_stats,
         sum((1 - COALESCE(ts.null_frac, es.null_frac, 0)) * COALESCE(ts.avg_width, es.avg_width, 0))::float8 AS width,
         bool_or(COALESCE(ts.null_frac, es.null_frac, 0) > 0) AS nullable,
         CASE WHEN count(*) = 1 THEN min(COALESCE(ts.n_distinct, es.n_distinct)) END::float8 AS n_distinct
  FROM idx x
  JOIN pg_attribute ia ON ia.attrelid = x.oid AND ia.attnum > 0
  LEFT JOIN pg_attribute ta ON ta.attrelid = x.indrelid AND ta.attnum = x.indkey[ia.attnum - 1] AND ta.attnum > 0
  LEFT JOIN {{stats}} ts ON ts.schemaname = x.schemaname AND ts.tablename = x.relname AND ts.attname = ta.attname
                       AND NOT ts.inherited
  LEFT JOIN {{stats}} es ON ta.attname IS NULL AND es.schemaname = x.schemaname AND es.tablename = x.indexrelname
                       AND es.attname = ia.attname
  GROUP BY x.oid
)
SELECT x.oid, x.schemaname, x.relname, x.indexrelname, x.pages, x.tuples, x.fillfactor,
       c.columns, c.with_stats, c.width, c.nullable, x.dedup, c.n_distinct
FROM idx x JOIN cols c ON c.oid = x.oid
"""
BLOCK_SQL = """
SELECT current_database() AS datname, current_setting('block_size')::int AS block_size,
       EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = 'pgperf' AND p.proname = 'column_stats' AND p.pronargs = 0
                 AND has_schema_privilege(n.oid, 'USAGE') AND has_function_privilege(p.oid, 'EXECUTE')) AS helper
"""
# docs/setup-bloat.sql: the column statistics' sizes (no values) for a role that may not
# read the tables, as the superuser who created it. Looked up in the catalog: naming it
# (to_regprocedure) fails for a role without USAGE on the schema.
HELPER = "pgperf.column_stats()"

_MAXALIGN = 8
_LINE_POINTER = 4
_PAGE_HEADER = 24
_HEAP_TUPLE_HEADER = 23
_INDEX_TUPLE_HEADER = 8
_INDEX_NULL_BITMAP = 4  # INDEX_MAX_KEYS (32) bits
_BTREE_SPECIAL = 16
_BTREE_INTERNAL_FILL = 70  # BTREE_NONLEAF_FILLFACTOR
_HEAP_TID = 6  # an extra row in a deduplicated posting list


def _align(n: float) -> float:
    return math.ceil(n / _MAXALIGN) * _MAXALIGN


@dataclass(frozen=True)
class Inputs:
    """What an estimate is computed from: one row of TABLES_SQL or INDEXES_SQL."""

    oid: int
    schemaname: str
    relname: str
    indexrelname: str  # "" for a table
    pages: float
    tuples: float
    fillfactor: int
    columns: int
    with_stats: int
    width: float | None
    nullable: bool | None
    dedup: bool
    n_distinct: float | None

    @property
    def is_index(self) -> bool:
        return self.indexrelname != ""


@dataclass(frozen=True)
class Estimate:
    """The estimated bloat of one table or index."""

    oid: int
    schemaname: str
    relname: str
    indexrelname: str  # "" for a table
    size_bytes: float  # relpages as of the last VACUUM/ANALYZE
    needed_bytes: float  # what its live rows need at its fillfactor
    bloat_bytes: float
    ratio: float


def estimate(row: Inputs, block_size: int) -> Estimate | None:
    """The bloat estimate of *row*, or None when its statistics are incomplete."""
    if row.with_stats < row.columns or row.width is None:
        return None
    if row.is_index:
        header = _align(_INDEX_TUPLE_HEADER + (_INDEX_NULL_BITMAP if row.nullable else 0))
        tuple_bytes = _align(header + row.width) + _LINE_POINTER
        usable = block_size - _PAGE_HEADER - _BTREE_SPECIAL
        if row.dedup and row.n_distinct is not None and row.tuples > 0:
            groups = min(row.tuples, row.n_distinct if row.n_distinct > 0 else -row.n_distinct * row.tuples)
            groups = max(1.0, groups)
            leaf_bytes = groups * tuple_bytes + (row.tuples - groups) * _HEAP_TID
        else:
            leaf_bytes = row.tuples * tuple_bytes
        leaf = math.ceil(leaf_bytes / (usable * row.fillfactor / 100))
        internal = math.ceil(leaf * tuple_bytes / (usable * _BTREE_INTERNAL_FILL / 100)) if leaf > 1 else 0
        needed_pages = 1 + leaf + internal  # the metapage
    else:
        header = _align(_HEAP_TUPLE_HEADER + (math.ceil(row.columns / 8) if row.nullable else 0))
        tuple_bytes = _align(header + row.width) + _LINE_POINTER
        per_page = max(1, math.floor((block_size - _PAGE_HEADER) * row.fillfactor / 100 / tuple_bytes))
        needed_pages = math.ceil(row.tuples / per_page)
    bloat_pages = max(0.0, row.pages - needed_pages)
    return Estimate(row.oid, row.schemaname, row.relname, row.indexrelname, row.pages * block_size,
                    min(row.pages, needed_pages) * block_size, bloat_pages * block_size,
                    bloat_pages / row.pages if row.pages else 0.0)


def estimates(conn: psycopg.Connection[Any], table: int | None = None
              ) -> tuple[str, list[Estimate], list[Estimate], dict[str, int]]:
    """Estimate every table and b-tree index of the database of *conn* (or of one table):
    (database, tables, indexes, objects without statistics by kind)."""
    with conn.cursor(row_factory=dict_row) as cur:
        info: Any = cur.execute(BLOCK_SQL).fetchone()
        stats = HELPER if info["helper"] else "pg_catalog.pg_stats"
        out: dict[str, list[Estimate]] = {"table": [], "index": []}
        missing = {"table": 0, "index": 0}
        for kind, query in (("table", TABLES_SQL), ("index", INDEXES_SQL)):
            for r in cur.execute(query.format(stats=stats), {"table": table}).fetchall():
                found = estimate(Inputs(**r), info["block_size"])
                if found is None:
                    missing[kind] += 1
                else:
                    out[kind].append(found)
    return info["datname"], out["table"], out["index"], missing


# -- the collector ---------------------------------------------------------------------------

_S = "pg_stats, pg_class"
_TL = ("datname", "schemaname", "relname")
_IL = (*_TL, "indexrelname")
TABLE_BYTES = MetricDef("pg_table_bloat_bytes", "gauge",
                        "Estimated space in this table beyond what its live rows need at its fillfactor, in bytes "
                        "(from the statistics of the last ANALYZE).", _TL, source=_S)
TABLE_RATIO = MetricDef("pg_table_bloat_ratio", "gauge",
                        "Estimated share of this table's pages that its live rows do not need (0 to 1).", _TL,
                        source=_S)
INDEX_BYTES = MetricDef("pg_index_bloat_bytes", "gauge",
                        "Estimated space in this b-tree index beyond what its entries need at its fillfactor, in "
                        "bytes.", _IL, source=_S)
INDEX_RATIO = MetricDef("pg_index_bloat_ratio", "gauge",
                        "Estimated share of this b-tree index's pages that its entries do not need (0 to 1).", _IL,
                        source=_S)
ESTIMATED = MetricDef("pgperf_bloat_estimated", "gauge",
                      "Tables (kind=table) or b-tree indexes (kind=index) of this database whose bloat was estimated.",
                      ("datname", "kind"), source=_S)
UNESTIMATED = MetricDef("pgperf_bloat_unestimated", "gauge",
                        "Tables or b-tree indexes of this database without complete statistics (never analyzed, or "
                        "columns the role may not read): no estimate.", ("datname", "kind"), source=_S)
# Legacy aliases: the names of the bloat queries users added to postgres_exporter's query
# files, still queried by rule packs; percentages and the relation's size as estimated.
_BL = (*_TL, "idxname")
TABLE_PCT = MetricDef("pg_bloat_table_bloat_pct", "gauge", "Estimated bloat of this table, in percent.", _TL,
                      source=_S, alias_of="pg_table_bloat_ratio × 100")
TABLE_REAL = MetricDef("pg_bloat_table_real_size", "gauge",
                       "Size of this table as of its last VACUUM or ANALYZE, in bytes.", _TL, source=_S,
                       alias_of="relpages × block_size of the tables in pg_table_bloat_ratio")
BTREE_PCT = MetricDef("pg_bloat_btree_bloat_pct", "gauge", "Estimated bloat of this b-tree index, in percent.",
                      _BL, source=_S, alias_of="pg_index_bloat_ratio × 100")
BTREE_REAL = MetricDef("pg_bloat_btree_real_size", "gauge",
                       "Size of this b-tree index as of its table's last VACUUM or ANALYZE, in bytes.", _BL,
                       source=_S, alias_of="relpages × block_size of the indexes in pg_index_bloat_ratio")
TRUNCATED = MetricDef("pgperf_bloat_truncated", "gauge",
                      "1 when more tables (or indexes) of this database were estimated than collectors.bloat.limit "
                      "and only the most bloated are served, else 0.", ("datname", "kind"), source=_S)


def families_for(datname: str, tables: Sequence[Estimate], indexes: Sequence[Estimate], missing: dict[str, int],
                 limit: int) -> tuple[Family, ...]:
    """The families of one database: the *limit* most bloated tables and indexes."""

    def top(items: Iterable[Estimate]) -> list[Estimate]:
        return sorted(items, key=lambda e: (-e.bloat_bytes, -e.size_bytes, e.oid))[:limit]

    served_tables, served_indexes = top(tables), top(indexes)

    def tl(e: Estimate) -> tuple[str, ...]:
        return (datname, e.schemaname, e.relname)

    def il(e: Estimate) -> tuple[str, ...]:
        return (datname, e.schemaname, e.relname, e.indexrelname)

    counts = {"table": len(tables), "index": len(indexes)}
    return (
        TABLE_BYTES.family((tl(e), e.bloat_bytes) for e in served_tables),
        TABLE_RATIO.family((tl(e), e.ratio) for e in served_tables),
        INDEX_BYTES.family((il(e), e.bloat_bytes) for e in served_indexes),
        INDEX_RATIO.family((il(e), e.ratio) for e in served_indexes),
        ESTIMATED.family(((datname, kind), n) for kind, n in counts.items()),
        UNESTIMATED.family(((datname, kind), n) for kind, n in missing.items()),
        TRUNCATED.family(((datname, kind), 1 if n > limit else 0) for kind, n in counts.items()),
        TABLE_PCT.family((tl(e), e.ratio * 100) for e in served_tables),
        TABLE_REAL.family((tl(e), e.size_bytes) for e in served_tables),
        BTREE_PCT.family((il(e), e.ratio * 100) for e in served_indexes),
        BTREE_REAL.family((il(e), e.size_bytes) for e in served_indexes),
    )


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    options: BloatOptions = ctx.options
    datname, tables, indexes, missing = estimates(ctx.conn)
    return CollectorResult(families_for(datname, tables, indexes, missing, options.limit))


SPEC = CollectorSpec(
    name="bloat",
    description="Table and b-tree index bloat estimated from the catalog statistics (pg_stats, pg_class) in "
    "every selected database, every `interval` (default 10 minutes): the `limit` most bloated tables and "
    "indexes. A role that may not read the tables (pg_monitor) sees no statistics: run docs/setup-bloat.sql "
    "in each database. Exact figures on demand: `pgperf bloat --exact TABLE` (pgstattuple).",
    collect=collect,
    metrics=(TABLE_BYTES, TABLE_RATIO, INDEX_BYTES, INDEX_RATIO, ESTIMATED, UNESTIMATED, TRUNCATED,
             TABLE_PCT, TABLE_REAL, BTREE_PCT, BTREE_REAL),
    options=BloatOptions,
    per_database=True,
)


# -- pgperf bloat TABLE [--exact] ------------------------------------------------------------

class RelationNotFound(ValueError):
    """The table named on the command line does not exist (or is not a table)."""


class ExactUnavailable(Exception):
    """pgstattuple cannot give exact figures here; the message says why and what to do."""


@dataclass(frozen=True)
class ObjectBloat:
    """One table or index of a report: its estimate and, when asked for, its exact figures."""

    kind: Literal["table", "index"]
    name: str  # schema-qualified
    size_bytes: float  # its size now (pg_relation_size)
    estimate: Estimate | None
    exact_bloat_bytes: float | None = None
    exact_ratio: float | None = None
    #: What pgstattuple (or pgstatindex) returned, unchanged.
    pgstattuple: dict[str, Any] | None = None


@dataclass(frozen=True)
class BloatReport:
    """``pgperf bloat TABLE``: the table and its b-tree indexes."""

    database: str
    table: str
    objects: tuple[ObjectBloat, ...]
    exact_requested: bool
    exact_unavailable: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        """The report as a table for a terminal."""
        lines = [f"Bloat of {self.table} in database {self.database}", ""]
        header = f"{'':6} {'name':40} {'size':>10}  {'estimate':>20}"
        if self.exact_requested and self.exact_unavailable is None:
            header += f"  {'exact (pgstattuple)':>20}"
        lines.append(header)
        for o in self.objects:
            est = ("no statistics" if o.estimate is None
                   else f"{_size(o.estimate.bloat_bytes)} {o.estimate.ratio:6.1%}")
            line = f"{o.kind:6} {o.name:40} {_size(o.size_bytes):>10}  {est:>20}"
            if self.exact_requested and self.exact_unavailable is None:
                exact = ("-" if o.exact_bloat_bytes is None or o.exact_ratio is None
                         else f"{_size(o.exact_bloat_bytes)} {o.exact_ratio:6.1%}")
                line += f"  {exact:>20}"
            lines.append(line)
        lines += ["", "Estimates use the statistics of the last ANALYZE (run ANALYZE for current figures)."]
        if self.exact_unavailable is not None:
            lines.append(f"Exact figures unavailable: {self.exact_unavailable}")
        return "\n".join(lines) + "\n"


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


# pgperf's sessions pin search_path to pg_catalog: a name without a schema is looked up in
# every schema, and must be found in exactly one.
_RESOLVE_SQL = """
SELECT c.oid, format('%%I.%%I', n.nspname, c.relname) AS name, c.relkind,
       {_FILLFACTOR} AS fillfactor, current_setting('block_size')::int AS block_size
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE CASE WHEN cardinality(parse_ident(%(name)s)) = 1
           THEN c.relname = (parse_ident(%(name)s))[1] AND c.relkind IN ('r', 'm', 'p')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
           ELSE c.oid = to_regclass(%(name)s) END
ORDER BY n.nspname
""".format(_FILLFACTOR=_FILLFACTOR.format(rel="c", default=100))
_INDEXES_OF_SQL = """
SELECT i.indexrelid AS oid, format('%%I.%%I', n.nspname, c.relname) AS name,
       {_FILLFACTOR} AS fillfactor
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = c.relam AND am.amname = 'btree'
WHERE i.indrelid = %(table)s AND i.indisvalid
ORDER BY c.relname
""".format(_FILLFACTOR=_FILLFACTOR.format(rel="c", default=90))
_EXTENSION_SQL = """
SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pgstattuple'
"""
_AVAILABLE_SQL = "SELECT count(*) AS n FROM pg_available_extensions WHERE name = 'pgstattuple'"


def _pgstattuple_schema(conn: psycopg.Connection[Any], database: str) -> str:
    """The schema of the pgstattuple extension, or ExactUnavailable with the fix."""
    with conn.cursor(row_factory=dict_row) as cur:
        row: Any = cur.execute(_EXTENSION_SQL).fetchone()
        if row is not None:
            return str(row["schema"])
        available: Any = cur.execute(_AVAILABLE_SQL).fetchone()
    if available is not None and available["n"]:
        raise ExactUnavailable(f"the pgstattuple extension is not installed in database {database}: run "
                               "CREATE EXTENSION pgstattuple; there as a superuser (or the database owner)")
    raise ExactUnavailable("the pgstattuple extension is not available on this server: install the PostgreSQL "
                           "contrib modules (Debian: postgresql-contrib), then CREATE EXTENSION pgstattuple;")


def _exact_table(cur: psycopg.Cursor[Any], schema: str, oid: int, fillfactor: int, block_size: int
                 ) -> tuple[float, float, dict[str, Any]]:
    query = sql.SQL("SELECT * FROM {}.pgstattuple(%s::oid::regclass)").format(sql.Identifier(schema))
    row: dict[str, Any] = dict(cur.execute(query, (oid,)).fetchone() or {})
    length, count, tuple_len = float(row["table_len"]), float(row["tuple_count"]), float(row["tuple_len"])
    if count:
        tuple_bytes = _align(tuple_len / count) + _LINE_POINTER
        per_page = max(1, math.floor((block_size - _PAGE_HEADER) * fillfactor / 100 / tuple_bytes))
        needed = math.ceil(count / per_page) * block_size
    else:
        needed = 0
    bloat = max(0.0, length - needed)
    return bloat, bloat / length if length else 0.0, row


def _exact_index(cur: psycopg.Cursor[Any], schema: str, oid: int, fillfactor: int, block_size: int
                 ) -> tuple[float, float, dict[str, Any]]:
    query = sql.SQL("SELECT * FROM {}.pgstatindex(%s::oid::regclass)").format(sql.Identifier(schema))
    row: dict[str, Any] = dict(cur.execute(query, (oid,)).fetchone() or {})
    size = float(row["index_size"])
    density = float(row["avg_leaf_density"]) if row["avg_leaf_density"] == row["avg_leaf_density"] else 0.0  # NaN
    needed_leaf = math.ceil(float(row["leaf_pages"]) * density / fillfactor)
    needed = (1 + float(row["internal_pages"]) + needed_leaf) * block_size
    bloat = max(0.0, size - needed)
    return bloat, bloat / size if size else 0.0, row


def inspect(conn: psycopg.Connection[Any], relation: str, *, exact: bool) -> BloatReport:
    """The bloat of table *relation* (a name as SQL reads it, ``schema.table`` or ``table``)
    and of its b-tree indexes: estimates, and exact figures when *exact* and pgstattuple
    is installed. Raises RelationNotFound."""
    with conn.cursor(row_factory=dict_row) as cur:
        try:
            matches: list[dict[str, Any]] = cur.execute(_RESOLVE_SQL, {"name": relation}).fetchall()
        except (psycopg.errors.InvalidName, psycopg.errors.InvalidParameterValue) as exc:  # malformed names
            raise RelationNotFound(f"{relation!r} is not a valid table name: {str(exc).strip()}") from None
        if not matches:
            raise RelationNotFound(f"table {relation!r} not found in database {conn.info.dbname} "
                                   "(give it as schema.table; names are case-sensitive in double quotes)")
        if len(matches) > 1:
            raise RelationNotFound(f"{relation!r} names several tables in database {conn.info.dbname} ("
                                   f"{', '.join(m['name'] for m in matches)}): give it as schema.table")
        found = matches[0]
        if found["relkind"] not in ("r", "m"):
            raise RelationNotFound(f"{found['name']} is not a table or materialized view")
        indexes: list[dict[str, Any]] = cur.execute(_INDEXES_OF_SQL, {"table": found["oid"]}).fetchall()
        oids = [found["oid"], *(i["oid"] for i in indexes)]
        sizes = {r["oid"]: float(r["size"]) for r in cur.execute(
            "SELECT o.oid, pg_relation_size(o.oid) AS size FROM unnest(%(oids)s::oid[]) AS o(oid)",
            {"oids": oids}).fetchall()}
    database, tables, index_estimates, _ = estimates(conn, table=found["oid"])
    by_oid = {e.oid: e for e in (*tables, *index_estimates)}
    block = int(found["block_size"])
    unavailable = None
    figures: dict[int, tuple[float, float, dict[str, Any]]] = {}
    if exact:
        try:
            schema = _pgstattuple_schema(conn, database)
            with conn.cursor(row_factory=dict_row) as cur:
                figures[found["oid"]] = _exact_table(cur, schema, found["oid"], found["fillfactor"], block)
                for i in indexes:
                    figures[i["oid"]] = _exact_index(cur, schema, i["oid"], i["fillfactor"], block)
        except ExactUnavailable as exc:
            unavailable = str(exc)
        except psycopg.errors.InsufficientPrivilege as exc:
            unavailable = (f"{str(exc).strip().splitlines()[0]}: GRANT pg_stat_scan_tables TO "
                           f"{conn.info.user}; (or run as a superuser)")

    def item(kind: Literal["table", "index"], oid: int, name: str) -> ObjectBloat:
        bloat, ratio, row = figures.get(oid, (None, None, None))
        return ObjectBloat(kind, name, sizes.get(oid, 0.0), by_oid.get(oid), bloat, ratio, row)

    objects = (item("table", found["oid"], found["name"]), *(item("index", i["oid"], i["name"]) for i in indexes))
    return BloatReport(database, found["name"], objects, exact, unavailable)
