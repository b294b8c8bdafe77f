"""From a snapshot to the rows of one sample: what the store writes in one transaction.

One row type per table: a :class:`ResourceRow` per sample (``resource_metrics``) and a
:class:`QueryRow` per statement that ran in the interval (``query_performance_metrics``,
the view over the compact tables of migration 005). A :class:`SampleBatch` holds one
sample's rows.

The conversion happens when the sample is taken (it needs the previous sample of the same
target for the database counters' deltas); the result is plain data that can wait in the
spool, serialised as JSON, and be written later with its original timestamps. The JSON
form has not changed since the first spool: a spool written by an earlier pgperf is read
back as it was written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, astuple, dataclass, field, fields
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ..collectors.activity import Connections
from ..collectors.database import DatabaseCounters, DatabaseStats
from ..collectors.database_size import DatabaseSizes
from ..collectors.host import HostUsage
from ..collectors.statements import StatementDelta, StatementRecords
from ..collectors.wraparound import WraparoundAges
from ..models import QueryPerformanceMetric, ResourceMetric
from ..sampling import Snapshot

__all__ = ["QUERY_COLUMNS", "REMAINDER_ID", "RESOURCE_COLUMNS", "BatchBuilder", "QueryRow", "ResourceRow",
           "SampleBatch", "counter_deltas"]

REMAINDER_ID = "other"


def _at(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True, slots=True)
class QueryRow:
    """What one statement did during one sampling interval: a row of
    ``query_performance_metrics``. Times in milliseconds, ``recorded_at`` in epoch seconds."""

    target: str
    recorded_at: float
    interval_seconds: float
    query_id: str
    datname: str | None
    username: str | None
    query_text: str
    calls: int
    total_time: float
    mean_time: float
    min_time: float
    max_time: float
    stddev_time: float
    rows_affected: int
    cache_hits: int
    cache_misses: int
    temp_blocks_written: int = 0
    plan_time: float = 0.0
    spans_reset: bool = False
    is_remainder: bool = False

    def to_list(self) -> list[Any]:
        """The spool's form: the values in column order."""
        return list(astuple(self))

    @classmethod
    def from_list(cls, values: list[Any]) -> QueryRow:
        return cls(*values)

    def metric(self) -> QueryPerformanceMetric:
        """The Python API's form of the row."""
        return QueryPerformanceMetric(
            target=self.target, query_id=self.query_id, query_text=self.query_text, datname=self.datname,
            username=self.username, calls=self.calls, total_time=self.total_time, mean_time=self.mean_time,
            min_time=self.min_time, max_time=self.max_time, stddev_time=self.stddev_time,
            rows_affected=self.rows_affected, cache_hits=self.cache_hits, cache_misses=self.cache_misses,
            recorded_at=datetime.fromtimestamp(self.recorded_at, UTC), interval_seconds=self.interval_seconds,
            spans_reset=self.spans_reset, is_remainder=self.is_remainder,
        )


@dataclass(frozen=True, slots=True)
class ResourceRow:
    """The database host and server at one sample: a row of ``resource_metrics``. Times
    in epoch seconds; a column pgperf could not measure is None (NULL)."""

    target: str
    timestamp: float
    interval_seconds: float | None = None
    pg_up: bool = False
    cpu_usage_percent: float | None = None
    memory_usage_bytes: int | None = None
    memory_usage_percent: float | None = None
    disk_usage_bytes: int | None = None
    disk_usage_percent: float | None = None
    disk_total_bytes: int | None = None
    network_bytes_sent: int | None = None
    network_bytes_received: int | None = None
    connection_count: int | None = None
    connection_utilization: float | None = None
    max_connections: int | None = None
    database_size_bytes: int | None = None
    xact_commit: int | None = None
    xact_rollback: int | None = None
    deadlocks: int | None = None
    blks_hit: int | None = None
    blks_read: int | None = None
    temp_bytes: int | None = None
    xid_age: int | None = None
    statements_reset: bool = False
    server_start_time: float | None = None

    def copy_values(self) -> list[Any]:
        """The values in column order, times as timestamps (for COPY)."""
        values = list(astuple(self))
        values[1] = _at(self.timestamp)
        values[-1] = _at(self.server_start_time)
        return values

    def metric(self) -> ResourceMetric:
        """The Python API's form of the row."""
        return ResourceMetric(
            target=self.target, timestamp=datetime.fromtimestamp(self.timestamp, UTC), pg_up=self.pg_up,
            cpu_usage_percent=self.cpu_usage_percent, memory_usage_bytes=self.memory_usage_bytes,
            memory_usage_percent=self.memory_usage_percent, disk_usage_bytes=self.disk_usage_bytes,
            disk_usage_percent=self.disk_usage_percent, network_bytes_sent=self.network_bytes_sent,
            network_bytes_received=self.network_bytes_received, connection_count=self.connection_count,
            connection_utilization=self.connection_utilization, interval_seconds=self.interval_seconds,
        )


QUERY_COLUMNS = tuple(f.name for f in fields(QueryRow))
RESOURCE_COLUMNS = tuple(f.name for f in fields(ResourceRow))
# Cumulative per-database counters whose change per interval goes into resource_metrics
# (each field of DatabaseCounters is a column of the same name).
_DB_COUNTERS = tuple(f.name for f in fields(DatabaseCounters))


@dataclass(frozen=True)
class SampleBatch:
    """Everything stored for one sample of one target. Times are epoch seconds (UTC)."""

    target: str
    seq: int
    taken_at: float
    resource: ResourceRow
    queries: list[QueryRow] = field(default_factory=list)
    #: Rows of statement_wait_profiles (``store.waits.WAIT_COLUMNS``), added by query insight.
    waits: list[list[Any]] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps({"target": self.target, "seq": self.seq, "taken_at": self.taken_at,
                           "resource": asdict(self.resource), "queries": [q.to_list() for q in self.queries],
                           "waits": self.waits},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SampleBatch:
        """Raises ValueError, KeyError or TypeError when *data* is not a sample (the spool
        moves such a file aside)."""
        raw = json.loads(data)
        return cls(raw["target"], raw["seq"], raw["taken_at"], ResourceRow(**raw["resource"]),
                   [QueryRow.from_list(q) for q in raw["queries"]],
                   raw.get("waits", []))  # spooled by a pgperf without insight: none


def _ms(value: float) -> float:
    return round(value, 3)


def _mean(total_ms: float, calls: int) -> float:
    """total / calls as PostgreSQL computes ``round(total_time / calls, 3)`` on the stored
    numeric total (half away from zero), so that the stored columns agree exactly."""
    if not calls:
        return 0.0
    mean = Decimal(repr(_ms(total_ms))) / calls
    return float(mean.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP))


def _query_row(target: str, at: float, interval: float, d: StatementDelta, text: str, reset: bool) -> QueryRow:
    return QueryRow(
        target, at, interval, str(d.queryid), d.datname, d.username, text,
        d.calls, _ms(d.total_ms), _mean(d.total_ms, d.calls), _ms(d.min_ms), _ms(d.max_ms), _ms(d.stddev_ms),
        d.rows, d.hit, d.read, d.temp_written, _ms(d.plan_ms), reset or d.restarted, False,
    )


def _remainder(target: str, at: float, interval: float, rest: list[StatementDelta], reset: bool) -> QueryRow:
    calls = sum(d.calls for d in rest)
    total = sum(d.total_ms for d in rest)
    sum_squares = sum(d.sum_squares for d in rest)
    mean = total / calls if calls else 0.0
    stddev = math.sqrt(max(0.0, sum_squares / calls - mean * mean)) if calls else 0.0
    return QueryRow(
        target, at, interval, REMAINDER_ID, None, None, f"({len(rest)} other statements)",
        calls, _ms(total), _mean(total, calls), _ms(min(d.min_ms for d in rest)), _ms(max(d.max_ms for d in rest)),
        _ms(stddev), sum(d.rows for d in rest), sum(d.hit for d in rest), sum(d.read for d in rest),
        sum(d.temp_written for d in rest), _ms(sum(d.plan_ms for d in rest)),
        reset or any(d.restarted for d in rest), True,
    )


def counter_deltas(now: Mapping[str, DatabaseCounters], before: Mapping[str, DatabaseCounters]) -> DatabaseCounters:
    """The change of each counter summed over the databases of *now* (datid -> counters).
    A database whose counter went down was reset (pg_stat_reset() in it): its
    change counts from zero, i.e. its current value. A database absent before (created, or
    first seen) contributes 0: its whole count is not activity of this interval, and taking
    it would bring back the jump per-database deltas avoid. A dropped database simply
    drops out instead of lowering a sum."""
    out = dict.fromkeys(_DB_COUNTERS, 0)
    for datid, counters in now.items():
        previous = before.get(datid)
        if previous is None:
            continue
        for key in _DB_COUNTERS:
            value, last = getattr(counters, key), getattr(previous, key)
            out[key] += value - last if value >= last else value
    return DatabaseCounters(**out)


class BatchBuilder:
    """Turns snapshots into batches; remembers each target's previous database counters."""

    def __init__(self, max_query_rows: int = 1000) -> None:
        self.max_query_rows = max_query_rows
        # target -> (time, DatabaseCounters by datid) of its last sample that read them
        self._previous: dict[str, tuple[float, Mapping[str, DatabaseCounters]]] = {}

    def build(self, snap: Snapshot) -> SampleBatch:
        records = snap.records
        statements = records.get(StatementRecords)
        queries: list[QueryRow] = []
        if statements is not None and statements.deltas:
            ranked = sorted(statements.deltas, key=lambda d: (-d.total_ms, d.queryid))
            keep, rest = ranked[: self.max_query_rows], ranked[self.max_query_rows:]
            interval = statements.interval_seconds
            for d in keep:
                text = statements.texts.get(d.queryid, "")
                queries.append(_query_row(snap.target, snap.taken_at, interval, d, text, statements.stats_reset))
            if rest:
                queries.append(_remainder(snap.target, snap.taken_at, interval, rest, statements.stats_reset))

        resource: dict[str, Any] = {"pg_up": snap.up, "statements_reset": bool(statements and statements.stats_reset)}
        previous = self._previous.get(snap.target)
        if previous is not None:
            resource["interval_seconds"] = round(snap.taken_at - previous[0], 3)
        host = records.get(HostUsage)
        if host is not None:
            resource.update(asdict(host))
        connections = records.get(Connections)
        if connections is not None:
            resource["connection_count"] = connections.count
            resource["max_connections"] = connections.max_connections
            if connections.utilization is not None:
                resource["connection_utilization"] = round(connections.utilization * 100, 2)
        size = records.get(DatabaseSizes)
        if size is not None:
            resource["database_size_bytes"] = size.total_bytes
        ages = records.get(WraparoundAges)
        if ages is not None:
            resource["xid_age"] = ages.xid_age
        if snap.server is not None and snap.server.postmaster_start_time is not None:
            resource["server_start_time"] = snap.server.postmaster_start_time.timestamp()

        database = records.get(DatabaseStats)
        if database is not None and previous is not None and previous[1]:
            resource.update(asdict(counter_deltas(database.by_datid, previous[1])))
        # Keep the last counters read: after an outage the change covers the whole gap.
        counters = database.by_datid if database is not None else (previous[1] if previous else {})
        self._previous[snap.target] = (snap.taken_at, counters)
        return SampleBatch(snap.target, snap.seq, snap.taken_at, ResourceRow(snap.target, snap.taken_at, **resource),
                           queries)
