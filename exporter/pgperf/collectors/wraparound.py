"""Transaction ID wraparound: the age of each database's oldest unfrozen transaction ID
and multixact ID.

PostgreSQL stops assigning transaction IDs when the oldest unfrozen one is about 2^31
transactions old ("Preventing Transaction ID Wraparound Failures", PostgreSQL
documentation, Routine Vacuuming); ``pg_database_xid_wraparound_ratio`` is the age over
2^31 (0 to 1), which the bundled alert rules compare to
``pgperf_threshold_xid_age_max_ratio``. Every database is served, template0 and
databases refusing connections included: autovacuum must freeze them too.
postgres_exporter's ``pg_database_wraparound_age_*`` families carry the same ages.

The sample store keeps the oldest database's age (:class:`WraparoundAges`, the record of
``resource_metrics.xid_age``): reports forecast when it reaches the wraparound horizon.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, MetricDef, Record

SQL = """
SELECT datname, age(datfrozenxid)::float8 AS xid_age, mxid_age(datminmxid)::float8 AS mxid_age
FROM pg_database ORDER BY datname
"""
WRAPAROUND_XIDS = 2.0**31
_L = ("datname",)


@dataclass(frozen=True, slots=True)
class WraparoundAges(Record):
    """The store's resource_metrics.xid_age: the highest transaction ID age over the databases
    (the one wraparound comes first for), and the multixact ID's."""

    xid_age: int | None  # None when pg_database returned no age
    mxid_age: int | None

XID_AGE = MetricDef("pg_database_xid_age", "gauge",
                    "Age of the oldest unfrozen transaction ID of this database (age(datfrozenxid)), in transactions.",
                    _L, source="pg_database")
MXID_AGE = MetricDef("pg_database_mxid_age", "gauge",
                     "Age of the oldest unfrozen multixact ID of this database (mxid_age(datminmxid)).",
                     _L, source="pg_database")
RATIO = MetricDef("pg_database_xid_wraparound_ratio", "gauge",
                  "Transaction ID age over the 2^31 wraparound horizon (0 to 1).", _L, source="pg_database")
COMPAT_XID = MetricDef("pg_database_wraparound_age_datfrozenxid_seconds", "gauge",
                       "Age of the oldest transaction ID that has not been frozen (a number of transactions, "
                       "despite the name).", _L, source="pg_database", compat=True)
COMPAT_MXID = MetricDef("pg_database_wraparound_age_datminmxid_seconds", "gauge",
                        "Age of the oldest multixact ID that has not been frozen (a number of multixacts, "
                        "despite the name).", _L, source="pg_database", compat=True)


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        rows: list[dict[str, Any]] = cur.execute(SQL).fetchall()
    families = (
        XID_AGE.family(((r["datname"],), r["xid_age"]) for r in rows),
        MXID_AGE.family(((r["datname"],), r["mxid_age"]) for r in rows),
        RATIO.family(((r["datname"],), None if r["xid_age"] is None else r["xid_age"] / WRAPAROUND_XIDS) for r in rows),
        COMPAT_XID.family(((r["datname"],), r["xid_age"]) for r in rows),
        COMPAT_MXID.family(((r["datname"],), r["mxid_age"]) for r in rows),
    )
    return CollectorResult(families, record=WraparoundAges(_highest(r["xid_age"] for r in rows),
                                                           _highest(r["mxid_age"] for r in rows)))


def _highest(ages: Iterable[float | None]) -> int | None:
    known = [int(a) for a in ages if a is not None]
    return max(known) if known else None


SPEC = CollectorSpec(
    name="wraparound",
    description="Transaction ID and multixact ID age of every database and its share of the "
    "wraparound horizon.",
    collect=collect,
    metrics=(XID_AGE, MXID_AGE, RATIO, COMPAT_XID, COMPAT_MXID),
)
