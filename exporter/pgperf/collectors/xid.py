"""Transaction ID consumption: the next 64-bit transaction ID as a counter.

``pg_transaction_ids_assigned_total`` is the next full transaction ID (``xid8``, epoch
included), which only grows: its ``rate()`` is the number of transaction IDs the cluster
consumes per second, and with ``pg_database_xid_age`` (wraparound collector) it tells how
long until autovacuum must freeze, or writes stop.

The value is read from the current snapshot (``pg_snapshot_xmax(pg_current_snapshot())``,
"the first as yet unassigned transaction ID"; PostgreSQL documentation, Transaction ID and
Snapshot Information Functions) rather than from ``pg_current_xact_id()``: the latter
assigns a transaction ID to the calling transaction, so pgperf would itself consume one
per sample, and on a standby it fails ("cannot assign TransactionIds during recovery").
The snapshot works on a standby too, where it follows the primary's consumption as far as
it has been replayed.
"""

from __future__ import annotations

from typing import Any

from ._base import CollectContext, CollectorResult, CollectorSpec, MetricDef

SQL = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::numeric AS next_xid"

ASSIGNED = MetricDef(
    "pg_transaction_ids_assigned_total", "counter",
    "Transaction IDs assigned since the cluster was created (the next 64-bit transaction ID, epoch "
    "included); its rate is the transaction ID consumption.",
    source="pg_current_snapshot()", min_version=130000,
)

# Legacy alias: the transaction ID query of postgres_exporter query files (txid_current(),
# which consumes an ID; this value does not), still queried by rule packs.
TXID_CURRENT = MetricDef("pg_txid_current", "gauge",
                         "The next transaction ID (64-bit, epoch included); its rate is the transaction ID consumption.",
                         source=ASSIGNED.source, min_version=130000, alias_of=ASSIGNED.name)


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    row: Any = ctx.conn.execute(SQL).fetchone()
    value = None if row is None else row[0]
    return CollectorResult((ASSIGNED.single(value), TXID_CURRENT.single(value)))


SPEC = CollectorSpec(
    name="xid",
    description="Transaction ID consumption: the next 64-bit transaction ID as a counter "
    "(`rate()` is transaction IDs consumed per second), read without consuming one.",
    collect=collect,
    metrics=(ASSIGNED, TXID_CURRENT),
    min_version=130000,
)
