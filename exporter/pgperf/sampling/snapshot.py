"""The immutable snapshot of one sample, and the builder that accumulates it.

A ``SampleBuilder`` lives for one sample: every collector's status, families, state and
record are added to it as the collectors run, and ``snapshot()`` freezes the lot. The
previous snapshot's states are where a collector that did not run (disabled, failed,
database down, interval not elapsed) continues from, so its deltas resume from the last
good reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..collectors import Family, Record, Records
from ..db import ServerInfo

__all__ = ["CollectorStatus", "Counters", "SampleBuilder", "Snapshot"]


@dataclass(frozen=True)
class CollectorStatus:
    """How one collector fared in one sample."""

    name: str
    success: bool
    duration: float
    error: str | None = None  # short kind: statement_timeout, query_error, ...
    disabled: str | None = None  # reason, while the collector is disabled
    ran_at: float | None = None  # wall-clock time of the run whose families are served


@dataclass(frozen=True)
class Counters:
    """Cumulative counts of one target's sampler, copied into each snapshot."""

    samples: int = 0
    failed_samples: int = 0
    overruns: int = 0
    collector_errors: Mapping[str, int] = field(default_factory=dict)
    connection_errors: Mapping[str, int] = field(default_factory=dict)
    last_success: float | None = None  # wall-clock time of the last sample with pg_up 1


@dataclass(frozen=True)
class Snapshot:
    """Everything one sample of one target produced. Never modified after creation."""

    target: str
    seq: int
    taken_at: float  # wall-clock start of the sample
    duration: float
    interval: float  # configured sampling interval
    up: bool
    error_kind: str | None
    error_message: str | None
    server: ServerInfo | None
    families: tuple[Family, ...]
    statuses: tuple[CollectorStatus, ...]
    # collector name -> (wall-clock time, state) of its last successful run
    states: Mapping[str, tuple[float, Any]]
    records: Records  # the collectors' typed records, for the store
    counters: Counters
    # database visited by database-scoped collectors -> None, or why it could not be read
    databases: Mapping[str, str | None] = field(default_factory=dict)
    # seconds the sample started after its scheduled time (None: taken on demand)
    lateness: float | None = None

    def family(self, name: str) -> Family | None:
        for fam in self.families:
            if fam.name == name:
                return fam
        return None


class SampleBuilder:
    """The accumulators of one sample of one target.

    ``add`` records a collector whose state carries over from the previous sample (it did
    not run, or failed); ``add_run`` one that produced a new state. Both take the families
    and record to serve, if any.
    """

    def __init__(self, previous: Snapshot | None, now: float) -> None:
        self.now = now
        self._previous_states: Mapping[str, tuple[float, Any]] = previous.states if previous else {}
        self._families: list[Family] = []
        self._states: dict[str, tuple[float, Any]] = {}
        self._records: list[Record] = []
        self._statuses: list[CollectorStatus] = []
        self._databases: dict[str, str | None] = {}

    def previous(self, name: str) -> tuple[float | None, Any]:
        """(time, state) of collector *name*'s last successful run, (None, None) if none."""
        return self._previous_states.get(name, (None, None))

    def add(self, status: CollectorStatus, *, families: Iterable[Family] = (), record: Record | None = None) -> None:
        """A collector whose state stays that of its last successful run."""
        self._statuses.append(status)
        self._families.extend(families)
        if record is not None:
            self._records.append(record)
        if status.name in self._previous_states:
            self._states[status.name] = self._previous_states[status.name]

    def add_run(self, status: CollectorStatus, *, families: Iterable[Family], state: Any,
                record: Record | None = None) -> None:
        """A collector that ran in this sample and left *state* for the next one."""
        self._statuses.append(status)
        self._families.extend(families)
        if record is not None:
            self._records.append(record)
        self._states[status.name] = (self.now, state)

    def extend(self, families: Iterable[Family]) -> None:
        """Families of no collector: what the sampler's between-samples work serves."""
        self._families.extend(families)

    def visited(self, datname: str, error_kind: str | None) -> None:
        """A database the database-scoped collectors visited (or could not: *error_kind*)."""
        self._databases[datname] = error_kind

    def has(self, name: str) -> bool:
        """Whether collector *name* has a status in this sample."""
        return any(s.name == name for s in self._statuses)

    @property
    def statuses(self) -> tuple[CollectorStatus, ...]:
        return tuple(self._statuses)

    def snapshot(self, *, target: str, seq: int, duration: float, interval: float, up: bool,
                 error_kind: str | None, error_message: str | None, server: ServerInfo | None,
                 counters: Counters, lateness: float | None = None) -> Snapshot:
        """The immutable snapshot of everything added."""
        return Snapshot(
            target=target,
            seq=seq,
            taken_at=self.now,
            duration=duration,
            interval=interval,
            up=up,
            error_kind=error_kind,
            error_message=error_message,
            server=server,
            families=tuple(self._families),
            statuses=tuple(self._statuses),
            states=MappingProxyType(dict(self._states)),
            records=Records(self._records),
            counters=counters,
            databases=MappingProxyType(dict(self._databases)),
            lateness=lateness,
        )
