"""What the overview shows of one target, built from the sampler's snapshots.

Everything comes from the snapshots the sampler already took: the typed records of the
collectors (connections, database counters, statements) and, for the collectors that
serve only metric families (wait events, the blocking tree), their families. Nothing here
touches the database. Rates (transactions per second, the cache hit ratio of the
interval) are the change between two snapshots of the same target, which is why a
``TargetTracker`` keeps the previous database counters of each target.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..collectors.activity import Connections
from ..collectors.database import DatabaseCounters, DatabaseStats
from ..collectors.statements import StatementRecords
from ..sampling import Snapshot
from ..store.rows import counter_deltas

__all__ = [
    "BLOCKING_FAMILIES", "WAIT_FAMILY", "BlockingLine", "CollectorLine", "HistoryPoint", "StatementLine",
    "TargetOverview", "TargetTracker", "WaitLine", "health",
]

#: Statements of the last interval the overview lists.
TOP_STATEMENTS = 10
#: Wait events the overview lists.
TOP_WAITS = 12
#: Samples of history the overview's chart keeps per target.
HISTORY = 120
#: Characters of a statement's text on the overview (the statement's page has all of it).
TEXT_CHARS = 240

# The families of the wait_events and blocking collectors (pgperf.collectors.wait_events
# and .blocking); read by name, so that the overview shows them whenever a collector
# serves them and says "not collected" otherwise.
WAIT_FAMILY = "pg_wait_event_sessions"
CPU_FAMILY = "pg_wait_event_cpu_sessions"
BLOCKING_FAMILIES = {
    "blocked": "pg_blocking_blocked_sessions",
    "roots": "pg_blocking_root_blockers",
    "idle_roots": "pg_blocking_idle_root_blockers",
    "oldest_root_age_seconds": "pg_blocking_root_blocker_age_seconds",
    "depth": "pg_blocking_chain_depth",
    "largest_tree": "pg_blocking_max_tree_sessions",
}

Health = Literal["ok", "degraded", "stale", "down", "waiting"]


@dataclass(frozen=True)
class StatementLine:
    """One statement's work in the last sampling interval."""

    query_id: str
    datname: str
    username: str
    calls: int
    total_ms: float
    mean_ms: float
    text: str | None  # None: texts are not shown (expose_query_text)


@dataclass(frozen=True)
class WaitLine:
    wait_event_type: str
    wait_event: str
    sessions: int


@dataclass(frozen=True)
class BlockingLine:
    """The blocking trees of one database."""

    datname: str
    blocked: int
    roots: int
    idle_roots: int
    oldest_root_age_seconds: float
    depth: int
    largest_tree: int


@dataclass(frozen=True)
class CollectorLine:
    """One collector of a target, in its latest sample, and its last error seen."""

    name: str
    state: Literal["ok", "failed", "disabled", "not run"]
    detail: str | None  # error kind, or why it is disabled
    duration_ms: float
    ran_at: float | None
    last_error: str | None
    last_error_at: float | None


@dataclass(frozen=True)
class HistoryPoint:
    t: float  # epoch seconds
    tps: float | None
    connections: int | None


@dataclass(frozen=True)
class TargetOverview:
    """The overview of one target at one sample."""

    target: str
    seq: int
    taken_at: float
    interval: float
    duration: float
    up: bool
    error: str | None
    server_version: str | None
    samples: int
    failed_samples: int
    overruns: int
    failing_collectors: tuple[str, ...]
    tps: float | None
    connections: int | None
    max_connections: int | None
    cache_hit_percent: float | None
    statements: tuple[StatementLine, ...] | None  # None: the statements collector gave nothing
    waits: tuple[WaitLine, ...] | None  # None: not collected
    cpu_sessions: int | None
    blocking: tuple[BlockingLine, ...] | None  # None: not collected
    texts_shown: bool = False

    @property
    def utilization_percent(self) -> float | None:
        if self.connections is None or not self.max_connections:
            return None
        return round(100.0 * self.connections / self.max_connections, 1)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["utilization_percent"] = self.utilization_percent
        return data


def health(overview: TargetOverview | None, now: float | None = None) -> Health:
    """The target's sampling health: ``waiting`` for a first sample, ``down`` when the
    database is unreachable, ``stale`` when the last sample is older than three intervals
    (as ``/readyz`` judges), ``degraded`` when collectors fail, else ``ok``."""
    if overview is None:
        return "waiting"
    if not overview.up:
        return "down"
    if (now or time.time()) - overview.taken_at > 3 * overview.interval + 5:
        return "stale"
    return "degraded" if overview.failing_collectors else "ok"


def _statements(snap: Snapshot, show_texts: bool) -> tuple[StatementLine, ...] | None:
    records = snap.records.get(StatementRecords)
    if records is None:
        return None
    top = sorted(records.deltas, key=lambda d: (-d.total_ms, d.queryid))[:TOP_STATEMENTS]
    lines = []
    for d in top:
        if d.calls <= 0 and d.total_ms <= 0:
            continue
        text = records.texts.get(d.queryid, "") if show_texts else None
        if text is not None:
            text = " ".join(text.split())[:TEXT_CHARS]
        lines.append(StatementLine(str(d.queryid), d.datname, d.username, d.calls, round(d.total_ms, 3),
                                   round(d.mean_ms, 3), text))
    return tuple(lines)


def _waits(snap: Snapshot) -> tuple[tuple[WaitLine, ...] | None, int | None]:
    family = snap.family(WAIT_FAMILY)
    if family is None:
        return None, None
    index = {name: i for i, name in enumerate(family.labels)}
    totals: dict[tuple[str, str], float] = {}
    for labels, value in family.samples:
        key = (labels[index["wait_event_type"]], labels[index["wait_event"]])
        totals[key] = totals.get(key, 0.0) + value
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:TOP_WAITS]
    cpu = snap.family(CPU_FAMILY)
    cpu_sessions = int(sum(v for _, v in cpu.samples)) if cpu is not None else None
    return tuple(WaitLine(t, e, int(n)) for (t, e), n in ranked if n > 0), cpu_sessions


def _blocking(snap: Snapshot) -> tuple[BlockingLine, ...] | None:
    per: dict[str, dict[str, float]] = {}
    found = False
    for key, name in BLOCKING_FAMILIES.items():
        family = snap.family(name)
        if family is None:
            continue
        found = True
        where = family.labels.index("datname") if "datname" in family.labels else None
        for labels, value in family.samples:
            datname = labels[where] if where is not None else ""
            per.setdefault(datname, {})[key] = value
    if not found:
        return None
    lines = [
        BlockingLine(datname, int(v.get("blocked", 0)), int(v.get("roots", 0)), int(v.get("idle_roots", 0)),
                     round(v.get("oldest_root_age_seconds", 0.0), 1), int(v.get("depth", 0)),
                     int(v.get("largest_tree", 0)))
        for datname, v in sorted(per.items())
    ]
    return tuple(line for line in lines if line.blocked or line.roots)


@dataclass
class _LastError:
    kind: str
    at: float


@dataclass
class TargetTracker:
    """What the overview remembers of one target between its samples: the previous
    database counters (for rates), the last error of each collector, a short history."""

    previous: tuple[float, Mapping[str, DatabaseCounters]] | None = None
    errors: dict[str, _LastError] = field(default_factory=dict)
    history: deque[HistoryPoint] = field(default_factory=lambda: deque(maxlen=HISTORY))
    latest: TargetOverview | None = None
    collectors: tuple[CollectorLine, ...] = ()

    def update(self, snap: Snapshot, show_texts: bool) -> TargetOverview:
        """The overview of *snap*, which follows the snapshots given before."""
        tps = hit = None
        database = snap.records.get(DatabaseStats)
        if database is not None:
            if self.previous is not None and snap.taken_at > self.previous[0]:
                delta = counter_deltas(database.by_datid, self.previous[1])
                tps = round((delta.xact_commit + delta.xact_rollback) / (snap.taken_at - self.previous[0]), 2)
                blocks = delta.blks_hit + delta.blks_read
                hit = round(100.0 * delta.blks_hit / blocks, 2) if blocks else None
            self.previous = (snap.taken_at, database.by_datid)
        connections = snap.records.get(Connections)
        waits, cpu = _waits(snap)
        failing = []
        lines = []
        for status in snap.statuses:
            if status.disabled:
                state: Literal["ok", "failed", "disabled", "not run"] = "disabled"
                detail: str | None = status.disabled
            elif status.success:
                state, detail = "ok", None
            elif status.error == "database_down":
                state, detail = "not run", "database unreachable"
            else:
                state, detail = "failed", status.error or "failed"
                failing.append(status.name)
                self.errors[status.name] = _LastError(detail, snap.taken_at)
            last = self.errors.get(status.name)
            lines.append(CollectorLine(status.name, state, detail, round(status.duration * 1000, 1), status.ran_at,
                                       last.kind if last else None, last.at if last else None))
        self.collectors = tuple(lines)
        error = None
        if not snap.up:
            error = f"{snap.error_kind}: {snap.error_message}" if snap.error_message else snap.error_kind
        server = snap.server
        overview = TargetOverview(
            target=snap.target, seq=snap.seq, taken_at=snap.taken_at, interval=snap.interval,
            duration=round(snap.duration, 3), up=snap.up, error=error,
            server_version=server.short_version if server is not None else None,
            samples=snap.counters.samples, failed_samples=snap.counters.failed_samples,
            overruns=snap.counters.overruns, failing_collectors=tuple(failing), tps=tps,
            connections=connections.count if connections is not None else None,
            max_connections=connections.max_connections if connections is not None else None,
            cache_hit_percent=hit, statements=_statements(snap, show_texts), waits=waits, cpu_sessions=cpu,
            blocking=_blocking(snap), texts_shown=show_texts,
        )
        self.history.append(HistoryPoint(snap.taken_at, tps, overview.connections))
        self.latest = overview
        return overview
