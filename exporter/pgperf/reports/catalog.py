"""Live catalog facts for the recommendations that the stored samples cannot give.

Index usage, dead tuples, sequential scans and a few settings are read from the monitored
database when a report is generated, through one short connection (autocommit,
``application_name=pgperf-report``, ``statement_timeout``). The counters of
``pg_stat_user_tables`` and ``pg_stat_user_indexes`` are cumulative since the database's
statistics were last reset, not limited to the report's window: the report says so and
gives the reset time. When the database cannot be reached the report says why and the
rules that need these facts are skipped; the report itself never fails for it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ..db import SessionSettings, classify_error
from ..redact import redact

__all__ = ["CatalogFacts", "DuplicateIndex", "IndexFact", "TableFact", "read_catalog"]

log = logging.getLogger(__name__)

# Settings the rules quote, in bytes where PostgreSQL counts in blocks or kB.
SETTINGS = ("shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem", "max_connections",
            "autovacuum", "autovacuum_vacuum_threshold", "autovacuum_vacuum_scale_factor", "autovacuum_naptime",
            "track_counts")

_SETTINGS_SQL = """
SELECT name, setting, unit,
       CASE unit WHEN '8kB' THEN setting::numeric * 8192 WHEN 'kB' THEN setting::numeric * 1024
                 WHEN 'MB' THEN setting::numeric * 1048576 ELSE NULL END AS bytes
FROM pg_settings WHERE name = ANY(%s)
"""

# The largest tables: the rules look at big tables only (seq scans, dead tuples).
_TABLES_SQL = """
SELECT s.schemaname, s.relname, s.n_live_tup, s.n_dead_tup, s.seq_scan, s.seq_tup_read,
       coalesce(s.idx_scan, 0) AS idx_scan, pg_table_size(s.relid) AS size_bytes,
       s.last_autovacuum, s.last_vacuum, s.autovacuum_count, s.n_mod_since_analyze,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = s.relid) AS has_indexes,
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = s.relid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS columns,
       array(SELECT DISTINCT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = s.relid) AS indexed_columns
FROM pg_stat_user_tables s
ORDER BY pg_table_size(s.relid) DESC, s.schemaname, s.relname
LIMIT 200
"""

# Indexes never scanned since the statistics reset. Indexes that enforce a constraint
# (primary key, unique, exclusion) are needed whatever their scans, so they are left out.
_UNUSED_SQL = """
SELECT s.schemaname, s.relname AS table_name, s.indexrelname AS index_name, s.idx_scan,
       pg_relation_size(s.indexrelid) AS size_bytes, pg_get_indexdef(s.indexrelid) AS definition
FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary AND NOT i.indisexclusion
  AND i.indisvalid
ORDER BY pg_relation_size(s.indexrelid) DESC, s.schemaname, s.indexrelname
LIMIT 50
"""

# Exact duplicates: same table, columns, operator classes, collations, expressions and predicate.
_DUPLICATES_SQL = """
SELECT n.nspname AS schemaname, t.relname AS table_name,
       array_agg(c.relname ORDER BY i.indisprimary DESC, i.indisunique DESC, c.relname) AS indexes,
       sum(pg_relation_size(i.indexrelid)) AS size_bytes
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
GROUP BY n.nspname, t.relname, i.indrelid, i.indkey::text, i.indclass::text, i.indcollation::text,
         coalesce(pg_get_expr(i.indexprs, i.indrelid), ''), coalesce(pg_get_expr(i.indpred, i.indrelid), '')
HAVING count(*) > 1
ORDER BY n.nspname, t.relname
LIMIT 50
"""


@dataclass(frozen=True)
class TableFact:
    schemaname: str
    relname: str
    n_live_tup: int
    n_dead_tup: int
    seq_scan: int
    seq_tup_read: int
    idx_scan: int
    size_bytes: int
    last_autovacuum: datetime | None = None
    last_vacuum: datetime | None = None
    autovacuum_count: int = 0
    has_indexes: bool = True
    columns: tuple[str, ...] = ()
    indexed_columns: tuple[str, ...] = ()  # the first column of each of its indexes

    @property
    def name(self) -> str:
        return f"{self.schemaname}.{self.relname}"


@dataclass(frozen=True)
class IndexFact:
    schemaname: str
    table_name: str
    index_name: str
    idx_scan: int
    size_bytes: int
    definition: str


@dataclass(frozen=True)
class DuplicateIndex:
    schemaname: str
    table_name: str
    indexes: tuple[str, ...]
    size_bytes: int


@dataclass(frozen=True)
class CatalogFacts:
    """What the recommendations need from the monitored database; tests build one by hand."""

    database: str
    read_at: datetime
    stats_reset: datetime | None = None
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {setting, unit, bytes}
    tables: tuple[TableFact, ...] = ()
    unused_indexes: tuple[IndexFact, ...] = ()
    duplicate_indexes: tuple[DuplicateIndex, ...] = ()

    def setting(self, name: str) -> str | None:
        entry = self.settings.get(name)
        return None if entry is None else str(entry["setting"])

    def setting_bytes(self, name: str) -> int | None:
        entry = self.settings.get(name)
        return None if entry is None or entry.get("bytes") is None else int(entry["bytes"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _table_fact(row: dict[str, Any]) -> TableFact:
    fields: dict[str, Any] = {k: v for k, v in row.items() if k != "n_mod_since_analyze"}
    fields["columns"], fields["indexed_columns"] = tuple(row["columns"]), tuple(row["indexed_columns"])
    return TableFact(**fields)


def read_catalog(dsn: str, *, connect_timeout: float = 5.0, statement_timeout: float = 10.0) -> CatalogFacts:
    """Read the facts from *dsn*; raises psycopg.Error (the caller reports it)."""
    settings = SessionSettings(application_name="pgperf-report", connect_timeout=connect_timeout,
                               statement_timeout=statement_timeout, lock_timeout=1.0,
                               idle_in_transaction_session_timeout=30.0)
    with psycopg.connect(dsn, autocommit=True, **settings.connect_kwargs(dsn)) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        with conn.cursor(row_factory=dict_row) as cur:
            head = cur.execute("SELECT current_database() AS db, now() AS now, (SELECT stats_reset FROM"
                               " pg_stat_database WHERE datname = current_database()) AS stats_reset").fetchone()
            assert head is not None
            found = {r["name"]: {"setting": r["setting"], "unit": r["unit"],
                                 "bytes": int(r["bytes"]) if r["bytes"] is not None else None}
                     for r in cur.execute(_SETTINGS_SQL, (list(SETTINGS),)).fetchall()}
            tables = tuple(_table_fact(r) for r in cur.execute(_TABLES_SQL).fetchall())
            unused = tuple(IndexFact(**r) for r in cur.execute(_UNUSED_SQL).fetchall())
            duplicates = tuple(DuplicateIndex(r["schemaname"], r["table_name"], tuple(r["indexes"]), int(r["size_bytes"]))
                               for r in cur.execute(_DUPLICATES_SQL).fetchall())
    return CatalogFacts(database=head["db"], read_at=head["now"], stats_reset=head["stats_reset"], settings=found,
                        tables=tables, unused_indexes=unused, duplicate_indexes=duplicates)


def try_read_catalog(dsn: str | None, **kwargs: Any) -> tuple[CatalogFacts | None, str | None]:
    """(facts, None), or (None, why not) when the database cannot be read."""
    if dsn is None:
        return None, "no DSN is configured for this target, so live catalog facts were not read"
    try:
        return read_catalog(dsn, **kwargs), None
    except psycopg.Error as exc:
        kind = classify_error(exc)
        first = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else kind
        log.warning("report: cannot read catalog facts from the monitored database (%s): %s", kind, first)
        return None, f"the monitored database could not be read ({kind}): {first}"
