"""pg_index: invalid, unused, duplicate and overlapping indexes of every database.

A database-scoped collector (catalogs and statistics only show the database the session
is connected to), every ``interval`` (5 minutes by default: findings change slowly).

* **invalid**: ``indisvalid`` is false — a ``CREATE INDEX CONCURRENTLY`` or ``REINDEX
  CONCURRENTLY`` that failed left it behind; it is maintained on every write but never
  used. Indexes being built right now (listed in ``pg_stat_progress_create_index``) are
  not invalid yet and are left out.
* **unused**: no scan since the statistics were reset (``idx_scan = 0``), neither unique
  nor backing a constraint (primary key, unique, exclusion, or the target of a foreign
  key), which are needed even if never scanned. ``pg_index_stats_age_seconds`` says how
  long scans have been counted: since the last reset of the database's statistics, or the
  server's start when they never were (a lower bound: statistics survive clean restarts).
  A new index is "unused" until its first scan whatever its age.
* **duplicate**: same table, access method, columns or expressions, operator classes,
  collations, sort options and predicate as another index. One of each group is kept
  (the one backing a constraint, else a unique one, else the oldest); the others are
  served with ``duplicate_of``.
* **overlapping**: a b-tree index whose key columns are a leading prefix of another
  b-tree index's on the same table (same operator classes, collations, sort options and
  predicate, any INCLUDE columns covered): the longer one answers the same searches. Unique
  or constraint-backing indexes are never reported overlapping (they enforce something).

Per-index families are ``_bytes`` (the index's size), bounded by ``limit`` per kind and
database (the largest first); ``pg_indexes_*`` count them all and
``pgperf_indexes_truncated`` says whether the limit cut some off.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg.rows import dict_row
from pydantic import Field

from .._types import Duration
from ._base import CollectContext, CollectorOptions, CollectorResult, CollectorSpec, Family, MetricDef


class IndexesOptions(CollectorOptions):
    interval: Duration | None = 300.0
    #: Indexes served per kind (invalid, unused, duplicate, overlapping) and database, the
    #: largest first.
    limit: int = Field(50, ge=1, le=10000)


# indkey has every column (key and INCLUDE; 0 for an expression); indclass, indcollation
# and indoption the key columns only (PostgreSQL documentation, pg_index).
SQL = """
SELECT i.indexrelid AS oid, i.indrelid AS table_oid, n.nspname AS schemaname, t.relname,
       c.relname AS indexrelname, am.amname, i.indisvalid AND i.indisready AND i.indislive AS valid,
       i.indisunique OR i.indisexclusion
         OR EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) AS enforces,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) AS constraint_backed,
       i.indisunique AS is_unique, i.indnkeyatts AS key_columns, i.indkey::int2[] AS columns,
       i.indclass::oid[] AS classes, i.indcollation::oid[] AS collations, i.indoption::int2[] AS options,
       pg_get_expr(i.indexprs, i.indrelid) AS expressions, pg_get_expr(i.indpred, i.indrelid) AS predicate,
       pg_stat_get_numscans(i.indexrelid) AS scans, c.relpages::bigint AS pages,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid) AS building
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = c.relam
WHERE c.relkind = 'i' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
"""
# pg_relation_size() opens the index with AccessShareLock: one under an AccessExclusiveLock
# (DROP INDEX, REINDEX) would make the query wait; it gets its pages as last counted instead.
SIZES_SQL = """
SELECT o.oid,
       CASE WHEN o.oid IN (SELECT relation FROM pg_locks WHERE locktype = 'relation'
                             AND mode = 'AccessExclusiveLock' AND relation IS NOT NULL
                             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
            THEN NULL ELSE pg_relation_size(o.oid) END AS size
FROM unnest(%(oids)s::oid[]) AS o(oid)
"""
STATS_AGE_SQL = """
SELECT current_database() AS datname, current_setting('block_size')::int AS block_size,
       extract(epoch FROM now() - COALESCE(
         (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()),
         pg_postmaster_start_time()))::float8 AS stats_age
"""

_S = "pg_index"
_L = ("datname", "schemaname", "relname", "indexrelname")
_D = ("datname",)
KINDS = ("invalid", "unused", "duplicate", "overlapping")

INVALID = MetricDef("pg_index_invalid_bytes", "gauge",
                    "Size of this invalid index (a failed concurrent build, maintained but never used), in bytes.",
                    _L, source=_S)
UNUSED = MetricDef("pg_index_unused_bytes", "gauge",
                   "Size of this index never scanned since the statistics were reset, neither unique nor backing "
                   "a constraint, in bytes.", _L, source=f"{_S}, pg_stat_user_indexes")
DUPLICATE = MetricDef("pg_index_duplicate_bytes", "gauge",
                      "Size of this index, identical to index duplicate_of on the same table, in bytes.",
                      (*_L, "duplicate_of"), source=_S)
OVERLAPPING = MetricDef("pg_index_overlapping_bytes", "gauge",
                        "Size of this b-tree index whose key columns lead index covered_by on the same table, "
                        "in bytes.", (*_L, "covered_by"), source=_S)
COUNTS = {
    "invalid": MetricDef("pg_indexes_invalid", "gauge", "Invalid indexes in this database.", _D, source=_S),
    "unused": MetricDef("pg_indexes_unused", "gauge",
                        "Indexes of this database never scanned since the statistics were reset (unique and "
                        "constraint indexes excepted).", _D, source=f"{_S}, pg_stat_user_indexes"),
    "duplicate": MetricDef("pg_indexes_duplicate", "gauge",
                           "Indexes of this database identical to another index of the same table.", _D, source=_S),
    "overlapping": MetricDef("pg_indexes_overlapping", "gauge",
                             "B-tree indexes of this database whose key columns lead another index of the same "
                             "table.", _D, source=_S),
}
STATS_AGE = MetricDef("pg_index_stats_age_seconds", "gauge",
                      "How long index scans have been counted in this database (since its statistics were reset, "
                      "else since the server started), in seconds.", _D, source="pg_stat_database")
# Legacy alias: the index size family of a query file rule packs still query (the
# invalid-index rule looks for the "_ccnew" index a failed REINDEX CONCURRENTLY leaves).
GENERAL_SIZE = MetricDef("pg_general_index_info_pg_relation_size", "gauge",
                         "Size of this index, for every index served above (invalid, unused, duplicate or "
                         "overlapping), in bytes.", _L, source=_S,
                         alias_of="pg_index_invalid_bytes, _unused_bytes, _duplicate_bytes, _overlapping_bytes")
TRUNCATED = MetricDef("pgperf_indexes_truncated", "gauge",
                      "1 when this database has more indexes of this kind than collectors.indexes.limit and only the "
                      "largest are served, else 0.", ("datname", "kind"), source=_S)


@dataclass(frozen=True)
class Index:
    """One index as the catalog describes it."""

    oid: int
    table_oid: int
    schemaname: str
    relname: str
    indexrelname: str
    amname: str
    valid: bool
    enforces: bool  # unique, exclusion, or backing a constraint (foreign keys included)
    constraint_backed: bool
    is_unique: bool
    key_columns: int
    columns: tuple[int, ...]
    classes: tuple[int, ...]
    collations: tuple[int, ...]
    options: tuple[int, ...]
    expressions: str | None
    predicate: str | None
    scans: int
    pages: int
    building: bool

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Index:
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in row.items()}
        return cls(**values)

    @property
    def definition(self) -> tuple[Any, ...]:
        """What makes two indexes of a table answer exactly the same searches."""
        return (self.table_oid, self.amname, self.columns, self.classes, self.collations, self.options,
                self.expressions, self.predicate)

    def key(self, n: int) -> tuple[tuple[int, int, int, int], ...]:
        """The first *n* key columns with their operator class, collation and options."""
        return tuple(zip(self.columns[:n], self.classes[:n], self.collations[:n], self.options[:n], strict=True))


@dataclass
class Findings:
    """The indexes of one database reported by kind; ``peer`` names the index a duplicate
    or overlapping index is compared with."""

    invalid: list[Index] = field(default_factory=list)
    unused: list[Index] = field(default_factory=list)
    duplicate: list[tuple[Index, Index]] = field(default_factory=list)
    overlapping: list[tuple[Index, Index]] = field(default_factory=list)


def _keeper(group: Sequence[Index]) -> Index:
    return min(group, key=lambda i: (not i.constraint_backed, not i.is_unique, i.oid))


def analyse(indexes: Iterable[Index]) -> Findings:
    """Classify *indexes* (all those of one database)."""
    out = Findings()
    by_table: dict[int, list[Index]] = defaultdict(list)
    for index in indexes:
        if not index.valid:
            if not index.building:
                out.invalid.append(index)
            continue
        by_table[index.table_oid].append(index)
        if index.scans == 0 and not index.enforces:
            out.unused.append(index)
    for table in by_table.values():
        groups: dict[tuple[Any, ...], list[Index]] = defaultdict(list)
        for index in table:
            groups[index.definition].append(index)
        duplicates: set[int] = set()
        for group in groups.values():
            if len(group) > 1:
                keep = _keeper(group)
                for index in sorted(group, key=lambda i: i.oid):
                    if index is not keep:
                        out.duplicate.append((index, keep))
                        duplicates.add(index.oid)
        btrees = [i for i in table if i.amname == "btree" and i.expressions is None and i.oid not in duplicates]
        for short in btrees:
            if short.enforces:
                continue
            n = short.key_columns
            covering = [
                long for long in btrees
                if long is not short and long.key_columns > n and long.predicate == short.predicate
                and long.key(n) == short.key(n) and set(short.columns[n:]) <= set(long.columns)
            ]
            if covering:
                out.overlapping.append((short, min(covering, key=lambda i: (i.key_columns, i.oid))))
    return out


def families_for(datname: str, found: Findings, sizes: dict[int, float], stats_age: float | None,
                 limit: int) -> tuple[Family, ...]:
    """The families of one database. *sizes* maps index OIDs to bytes."""

    def largest(pairs: Iterable[tuple[Index, Index | None]]) -> list[tuple[Index, Index | None]]:
        return sorted(pairs, key=lambda pair: (-sizes.get(pair[0].oid, 0.0), pair[0].oid))[:limit]

    def labels(i: Index) -> tuple[str, ...]:
        return (datname, i.schemaname, i.relname, i.indexrelname)

    served = {
        "invalid": largest((i, None) for i in found.invalid),
        "unused": largest((i, None) for i in found.unused),
        "duplicate": largest(found.duplicate),
        "overlapping": largest(found.overlapping),
    }
    every = {i.oid: i for pairs in served.values() for i, _ in pairs}
    out = [
        INVALID.family((labels(i), sizes.get(i.oid)) for i, _ in served["invalid"]),
        UNUSED.family((labels(i), sizes.get(i.oid)) for i, _ in served["unused"]),
        DUPLICATE.family(((*labels(i), peer.indexrelname if peer else ""), sizes.get(i.oid))
                         for i, peer in served["duplicate"]),
        OVERLAPPING.family(((*labels(i), peer.indexrelname if peer else ""), sizes.get(i.oid))
                           for i, peer in served["overlapping"]),
        GENERAL_SIZE.family((labels(i), sizes.get(oid)) for oid, i in sorted(every.items())),
    ]
    counts = {kind: len(getattr(found, kind)) for kind in KINDS}
    out += [COUNTS[kind].family([((datname,), n)]) for kind, n in counts.items()]
    out.append(STATS_AGE.family([((datname,), stats_age)]))
    out.append(TRUNCATED.family(((datname, kind), 1 if n > limit else 0) for kind, n in counts.items()))
    return tuple(out)


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    options: IndexesOptions = ctx.options
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        found = analyse(Index.from_row(r) for r in cur.execute(SQL).fetchall())
        info: Any = cur.execute(STATS_AGE_SQL).fetchone()
        reported = {i.oid: i for i in (*found.invalid, *found.unused, *(p[0] for p in found.duplicate),
                                       *(p[0] for p in found.overlapping))}
        sizes: dict[int, float] = {}
        if reported:
            for r in cur.execute(SIZES_SQL, {"oids": list(reported)}).fetchall():
                pages = reported[r["oid"]].pages * info["block_size"]
                sizes[r["oid"]] = float(r["size"] if r["size"] is not None else pages)
    stats_age = None if info["stats_age"] is None else max(0.0, info["stats_age"])
    return CollectorResult(families_for(info["datname"], found, sizes, stats_age, options.limit))


SPEC = CollectorSpec(
    name="indexes",
    description="pg_index in every selected database, every `interval` (default 5 minutes): invalid "
    "indexes, indexes never scanned since the statistics were reset, duplicate indexes and b-tree "
    "indexes overlapped by a longer one, with their sizes (the largest `limit` of each kind).",
    collect=collect,
    metrics=(INVALID, UNUSED, DUPLICATE, OVERLAPPING, *COUNTS.values(), STATS_AGE, TRUNCATED, GENERAL_SIZE),
    options=IndexesOptions,
    per_database=True,
)
