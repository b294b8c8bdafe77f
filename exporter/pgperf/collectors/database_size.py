"""pg_database_size(): the disk space of every selected database, on a slower interval.

``pg_database_size()`` walks the database's directory and stats every file: with many
databases, or databases with tens of thousands of tables, it is the most expensive call
pgperf makes. The collector therefore runs every ``interval`` (5 minutes by default) and
the samples in between serve its last values. The databases measured are those selected
by ``databases.include``/``exclude``. The function needs CONNECT on the database or
``pg_read_all_stats`` (in ``pg_monitor``); a database the role may not measure gets no
sample instead of failing the collector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row

from .._types import Duration
from ._base import CollectContext, CollectorOptions, CollectorResult, CollectorSpec, MetricDef, Record

SQL = """
SELECT datname,
       CASE WHEN has_database_privilege(oid, 'CONNECT') OR pg_has_role('pg_read_all_stats', 'USAGE')
            THEN pg_database_size(oid) END AS size
FROM pg_database
WHERE datallowconn AND NOT datistemplate AND datname = ANY(%(databases)s)
ORDER BY datname
"""


class DatabaseSizeOptions(CollectorOptions):
    interval: Duration | None = 300.0


@dataclass(frozen=True, slots=True)
class DatabaseSizes(Record):
    """The store's resource_metrics.database_size_bytes: the total over the databases measured."""

    total_bytes: int | None  # None when no database could be measured
    databases: int  # how many were


SIZE = MetricDef("pg_database_size_bytes", "gauge", "Disk space used by the database, in bytes.",
                 ("datname",), source="pg_database_size()", compat=True)


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    databases = list(ctx.databases) if ctx.databases is not None else [ctx.conn.info.dbname]
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        rows: list[dict[str, Any]] = cur.execute(SQL, {"databases": databases}).fetchall()
    measured = [int(r["size"]) for r in rows if r["size"] is not None]
    record = DatabaseSizes(sum(measured) if measured else None, len(measured))
    return CollectorResult((SIZE.family(((r["datname"],), r["size"]) for r in rows),), record=record)


SPEC = CollectorSpec(
    name="database_size",
    description="Size of every selected database (pg_database_size), every `interval` (default 5 minutes); "
    "the last values are served in between.",
    collect=collect,
    metrics=(SIZE,),
    options=DatabaseSizeOptions,
)
