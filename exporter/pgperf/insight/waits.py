"""Active session history: where the active sessions' time goes, per wait event and statement.

Two sources, said in the ``source`` label and column:

* ``pg_stat_activity`` — one cheap look at the active sessions (``state = 'active'``:
  client backends, parallel workers, autovacuum workers, busy walsenders) on the
  connection the caller already holds; each session counts one sample of its wait event,
  or of ``CPU`` when it waits on nothing. Sessions waiting on ``Activity`` events (idle
  main loops) and the sampling session itself are left out. The statement is
  ``query_id`` (PostgreSQL 14+, with ``compute_query_id`` on, or auto with
  pg_stat_statements loaded); on 13 the samples belong to no statement.
* ``pg_wait_sampling`` — where that extension is created and preloaded, its profile
  (every backend sampled every ``pg_wait_sampling.profile_period``, 10 ms by default) is
  read instead and its cumulative counts differenced between readings (pgperf never
  resets it). Idle waits (``Activity``, and ``ClientRead`` or ``Extension`` outside any
  statement) are left out. Versions without ``pg_wait_sampling.sample_cpu`` record waits
  only: a statement's CPU time is then its execution time less its waits (``costs``).

A sample stands for ``seconds_per_sample`` of one session's time (the look interval, or
the profile period), so ``seconds`` sums estimate session time per wait event.

``WaitSampler`` is owned by its caller (one per target): ``sample()`` takes a reading on a
connection it is given and adds it to the counts; ``families()`` serves bounded counters
(per source and wait event, never per statement); ``drain()`` hands over the
per-statement profiles of the interval since the previous drain, for the store.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from ..collectors import Family, MetricDef
from .server import InsightServer

__all__ = [
    "CPU",
    "WAIT_METRICS",
    "StatementWaitProfile",
    "WaitCount",
    "WaitReading",
    "WaitSampler",
    "WaitSourceUnavailable",
    "activity_sql",
    "wait_sampling_sql",
]

WaitSource = Literal["pg_stat_activity", "pg_wait_sampling"]
#: The wait event type and name of a session that waits on nothing: it runs on a CPU.
CPU = "CPU"
#: Series served in the families per source, at most; past it new events add up in "other".
MAX_EVENTS = 400
OTHER = "other"
#: (statement, wait event) pairs kept between two drains, at most; beyond, samples are
#: kept without their statement (a caller that never drains cannot grow memory).
MAX_INTERVAL_KEYS = 50_000

_S = "insight"
SAMPLES = MetricDef(
    "pgperf_wait_event_samples_total", "counter",
    "Active sessions seen in a wait event (wait_event_type and wait_event CPU: running, waiting on nothing), "
    "by sampling source.", ("source", "wait_event_type", "wait_event"), _S,
)
SECONDS = MetricDef(
    "pgperf_wait_event_seconds_total", "counter",
    "Session time spent in a wait event, estimated as samples times the sampling period, in seconds; its rate "
    "is the average number of active sessions in that event.", ("source", "wait_event_type", "wait_event"), _S,
)
READINGS = MetricDef(
    "pgperf_wait_sampling_readings_total", "counter",
    "Readings of the wait sampling source (looks at pg_stat_activity, or reads of pg_wait_sampling's profile).",
    ("source",), _S,
)
WAIT_METRICS = (SAMPLES, SECONDS, READINGS)


class WaitSourceUnavailable(Exception):
    """The configured source cannot be read on this server; the message says what to do."""


@dataclass(frozen=True, slots=True)
class WaitCount:
    """Samples of one statement (None: no statement known) in one wait event."""

    query_id: int | None
    wait_event_type: str
    wait_event: str
    samples: int


@dataclass(frozen=True)
class WaitReading:
    """What one reading saw (for pg_wait_sampling: the samples since the previous one)."""

    source: WaitSource
    at: float  # seconds since the epoch
    seconds_per_sample: float
    counts: tuple[WaitCount, ...]

    @property
    def samples(self) -> int:
        return sum(c.samples for c in self.counts)


@dataclass(frozen=True)
class StatementWaitProfile:
    """One statement's samples in one wait event during one interval (a store row)."""

    target: str
    recorded_at: datetime  # end of the interval
    interval_seconds: float
    source: WaitSource
    query_id: int | None
    wait_event_type: str
    wait_event: str
    samples: int
    seconds: float


def activity_sql(server: InsightServer) -> sql.Composed:
    """The look at pg_stat_activity (query_id from 14 on)."""
    query_id = "nullif(query_id, 0)" if server.activity_query_id else "NULL::bigint"
    return sql.SQL(
        "SELECT coalesce(wait_event_type, {cpu}), coalesce(wait_event, {cpu}), " + query_id + ", count(*)"
        " FROM pg_stat_activity"
        " WHERE state = 'active' AND pid <> pg_backend_pid()"
        " AND wait_event_type IS DISTINCT FROM 'Activity'"
        " GROUP BY 1, 2, 3"
    ).format(cpu=sql.Literal(CPU))


def wait_sampling_sql(schema: str) -> sql.Composed:
    """pg_wait_sampling's profile summed per wait event and statement (over backends)."""
    return sql.SQL(
        "SELECT coalesce(event_type, {cpu}), coalesce(event, {cpu}), nullif(queryid, 0), sum(count)::bigint"
        " FROM {}.pg_wait_sampling_profile"
        " WHERE event_type IS DISTINCT FROM 'Activity'"
        " AND NOT (coalesce(queryid, 0) = 0 AND (event_type, event) IN"
        " (('Client', 'ClientRead'), ('Extension', 'Extension')))"
        " GROUP BY 1, 2, 3"
    ).format(sql.Identifier(schema), cpu=sql.Literal(CPU))


_Key = tuple[int | None, str, str]


class WaitSampler:
    """Takes readings and keeps their counts; thread-safe (one sampling thread, readers)."""

    def __init__(self, target: str, *, source: Literal["auto", "pg_stat_activity", "pg_wait_sampling"] = "auto",
                 interval: float = 1.0, max_events: int = MAX_EVENTS) -> None:
        self.target = target
        self.source = source
        self.interval = interval
        self.max_events = max_events
        self._lock = threading.Lock()
        self._profile: dict[_Key, int] | None = None  # pg_wait_sampling's last cumulative sums
        self._totals: dict[tuple[str, str, str], list[float]] = {}  # (source, type, event) -> [samples, seconds]
        self._events: Counter[str] = Counter()  # distinct events in _totals, per source
        self._readings: Counter[str] = Counter()
        self._interval: dict[tuple[WaitSource, _Key], list[float]] = {}
        self._interval_start: float | None = None

    def source_for(self, server: InsightServer) -> WaitSource:
        """The source a reading on *server* uses (see the module docstring)."""
        if self.source == "pg_stat_activity":
            return "pg_stat_activity"
        if server.wait_sampling:
            return "pg_wait_sampling"
        if self.source == "pg_wait_sampling":
            what = ("is not created in this database: CREATE EXTENSION pg_wait_sampling"
                    if server.wait_sampling_schema is None else
                    "is created but not loaded: add pg_wait_sampling to shared_preload_libraries and restart")
            raise WaitSourceUnavailable(f"insight.waits.source is pg_wait_sampling, but the extension {what} "
                                        "(or set insight.waits.source: auto)")
        return "pg_stat_activity"

    def sample(self, conn: psycopg.Connection[Any], server: InsightServer, *, now: float | None = None) -> WaitReading:
        """Take one reading on *conn* (one query) and add it to the counts."""
        at = time.time() if now is None else now
        source = self.source_for(server)
        if source == "pg_stat_activity":
            rows = _fetch(conn, activity_sql(server))
            reading = WaitReading(source, at, self.interval, tuple(
                WaitCount(qid, etype, event, int(n)) for etype, event, qid, n in rows))
        else:
            assert server.wait_sampling_schema is not None
            rows = _fetch(conn, wait_sampling_sql(server.wait_sampling_schema))
            current = {(qid, etype, event): int(n) for etype, event, qid, n in rows}
            period = (server.wait_sampling_period_ms or 10.0) / 1000.0
            with self._lock:
                previous, self._profile = self._profile, current
            reading = WaitReading(source, at, period, tuple(_differences(previous, current)))
        self.add(reading)
        return reading

    def add(self, reading: WaitReading) -> None:
        """Add a reading's counts (``sample`` does; also for readings made elsewhere)."""
        with self._lock:
            self._readings[reading.source] += 1
            if self._interval_start is None:
                self._interval_start = reading.at - self.interval if reading.source == "pg_stat_activity" else reading.at
            for c in reading.counts:
                key = (reading.source, c.wait_event_type, c.wait_event)
                if key not in self._totals:
                    if self._events[reading.source] >= self.max_events - 1:  # "other" is one of them
                        key = (reading.source, OTHER, OTHER)
                    if key not in self._totals:
                        self._events[reading.source] += 1
                total = self._totals.setdefault(key, [0.0, 0.0])
                total[0] += c.samples
                total[1] += c.samples * reading.seconds_per_sample
                ikey = (reading.source, (c.query_id, c.wait_event_type, c.wait_event))
                if ikey not in self._interval and len(self._interval) >= MAX_INTERVAL_KEYS:
                    ikey = (reading.source, (None, c.wait_event_type, c.wait_event))
                acc = self._interval.setdefault(ikey, [0, 0.0])
                acc[0] += c.samples
                acc[1] += c.samples * reading.seconds_per_sample

    def families(self) -> tuple[Family, ...]:
        """The bounded counters since this sampler was made (no statement label)."""
        with self._lock:
            totals = sorted(self._totals.items())
            readings = sorted(self._readings.items())
        return (
            SAMPLES.family((key, v[0]) for key, v in totals),
            SECONDS.family((key, v[1]) for key, v in totals),
            READINGS.family(((source,), n) for source, n in readings),
        )

    def drain(self, *, now: float | None = None) -> tuple[StatementWaitProfile, ...]:
        """The per-statement profiles since the previous drain (then forgotten here)."""
        end = time.time() if now is None else now
        with self._lock:
            counts, self._interval = self._interval, {}
            start, self._interval_start = self._interval_start, None
        if not counts:
            return ()
        at = datetime.fromtimestamp(end, UTC)
        interval = max(0.0, end - start) if start is not None else 0.0
        return tuple(
            StatementWaitProfile(self.target, at, interval, source, qid, etype, event, int(v[0]), float(v[1]))
            for (source, (qid, etype, event)), v in sorted(counts.items(), key=_sort_key)
        )


def _sort_key(item: tuple[tuple[WaitSource, _Key], list[float]]) -> tuple[str, int, str, str]:
    (source, (qid, etype, event)), _ = item
    return (source, qid if qid is not None else -(2**63) - 1, etype, event)


def _fetch(conn: psycopg.Connection[Any], query: sql.Composed) -> list[tuple[Any, ...]]:
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(query).fetchall()


def _differences(previous: Mapping[_Key, int] | None, current: Mapping[_Key, int]) -> Iterable[WaitCount]:
    """Samples taken between two readings of a cumulative profile. The first reading is
    a baseline; a count that went down was reset (pg_wait_sampling_reset_profile) and
    counts again from zero."""
    if previous is None:
        return
    for (qid, etype, event), n in current.items():
        before = previous.get((qid, etype, event), 0)
        delta = n - before if n >= before else n
        if delta > 0:
            yield WaitCount(qid, etype, event, delta)
