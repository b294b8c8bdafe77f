"""The collector contract: metric definitions, the context a collector runs in, its result.

A collector is a module with a constant SQL query, the minimum server version it needs and
one ``collect(ctx)`` function returning fresh metric families. It keeps no state between
samples: whatever it needs from the previous sample (cumulative counters, for deltas)
comes in ``ctx.previous`` and leaves in ``CollectorResult.state``, inside the immutable
snapshot the sampler builds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from pydantic import Field

from .._types import Duration, Model

if TYPE_CHECKING:
    import psycopg

    from ..db import ServerInfo

__all__ = [
    "CollectContext",
    "CollectorDisabled",
    "CollectorOptions",
    "CollectorResult",
    "CollectorSpec",
    "CollectorThresholds",
    "Family",
    "MetricDef",
    "Record",
    "Records",
    "TextCache",
    "merge_families",
]

MetricType = Literal["gauge", "counter", "info"]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family with its samples, ready to be rendered. Immutable."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...]
    samples: tuple[tuple[tuple[str, ...], float], ...]

    def value(self, **labels: str) -> float | None:
        """Return the value of the sample whose labels match *labels* (tests and rules)."""
        for values, value in self.samples:
            if all(values[self.labels.index(k)] == v for k, v in labels.items()):
                return value
        return None


@dataclass(frozen=True, slots=True)
class MetricDef:
    """A metric family a collector can produce: the single place its name, type, help,
    labels, source and version range are written. ``docs/metrics.md`` is generated from
    these definitions."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    source: str = ""
    min_version: int = 0  # server_version_num, 0 = every supported version
    max_version: int = 0  # exclusive upper bound, 0 = none
    compat: bool = False  # name kept identical to postgres_exporter's
    #: A name older postgres_exporter releases or their example query files made common,
    #: served again for the dashboards and rules that still query it: the family it repeats
    #: (or is derived from). Served only while ``compat.legacy_aliases`` is on.
    alias_of: str = ""

    def family(self, samples: Iterable[tuple[Sequence[Any], Any]]) -> Family:
        """Build the family from ``(label values, value)`` pairs.

        A ``None`` value is no sample (a NULL in a statistics view means "unknown", not 0);
        label values are converted to strings, ``None`` to the empty string.
        """
        out: list[tuple[tuple[str, ...], float]] = []
        append = out.append
        width = len(self.labels)
        for label_values, value in samples:
            if value is None:
                continue
            # A list comprehension and a type check: this runs for every sample of every
            # family (tens of thousands per sample on a server with many tables).
            labels = tuple([v if v.__class__ is str else "" if v is None else str(v) for v in label_values])
            if len(labels) != width:
                raise ValueError(f"{self.name}: expected labels {self.labels}, got {labels}")
            append((labels, float(value)))
        return Family(self.name, self.type, self.help, self.labels, tuple(out))

    def single(self, value: Any) -> Family:
        """Build a family without labels holding one sample (none if *value* is None)."""
        return self.family([((), value)])

    def exists_on(self, version: int) -> bool:
        return version >= self.min_version and (not self.max_version or version < self.max_version)


class CollectorOptions(Model):
    """Options every collector has; collectors with more options subclass it."""

    enabled: bool = True
    #: Run the collector at most this often (seconds); the samples in between serve the
    #: families of its last successful run again. Default: every sample.
    interval: Duration | None = Field(None)


def merge_families(families: Iterable[Family]) -> tuple[Family, ...]:
    """One family per name: samples of families with the same name (the results of one
    database-scoped collector in several databases) are concatenated, in order."""
    merged: dict[str, Family] = {}
    for fam in families:
        seen = merged.get(fam.name)
        if seen is None:
            merged[fam.name] = fam
        else:
            merged[fam.name] = Family(seen.name, seen.type, seen.help, seen.labels, seen.samples + fam.samples)
    return tuple(merged.values())


class CollectorDisabled(Exception):
    """Raised by a collector that cannot run on this server (privilege, version, extension).

    The sampler stops running it until the next reconnect and reports the reason in
    ``pgperf_collector_disabled``; it is not an error on every sample.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail or reason


class CollectorThresholds(Protocol):
    """The alert thresholds collectors count against; the configuration's ``thresholds``
    (``pgperf.config.Thresholds``) is one."""

    @property
    def slow_query_time_ms(self) -> float: ...

    @property
    def long_running_query_seconds(self) -> float: ...

    @property
    def idle_in_transaction_seconds(self) -> float: ...


#: Query texts kept at most (the statements collector's cache).
TEXT_CACHE_SIZE = 20000


@dataclass
class TextCache:
    """Query texts by queryid, least recently used first out. One per target, kept across
    samples, so that a statement's text is read from pg_stat_statements' text file once."""

    size: int = TEXT_CACHE_SIZE
    texts: OrderedDict[int, str] = field(default_factory=OrderedDict)

    def get(self, queryid: int) -> str | None:
        text = self.texts.get(queryid)
        if text is not None:
            self.texts.move_to_end(queryid)
        return text

    def put(self, queryid: int, text: str) -> None:
        self.texts[queryid] = text
        self.texts.move_to_end(queryid)
        while len(self.texts) > self.size:
            self.texts.popitem(last=False)


@dataclass(frozen=True, kw_only=True)
class CollectContext:
    """What a collector sees for one sample of one target."""

    target: str
    conn: psycopg.Connection[Any] | None
    server: ServerInfo | None
    options: Any  # the collector's options model (CollectorSpec.options)
    previous: Any  # the state the collector returned in the previous sample, if any
    previous_at: float | None  # wall-clock time of the previous sample, if any
    now: float  # wall-clock time of this sample
    thresholds: CollectorThresholds
    text_cache: TextCache
    #: The databases the configuration selects (``databases.include``/``exclude``) among
    #: those accepting connections, discovered once per sample; None outside the sampler.
    databases: tuple[str, ...] | None = None

    @property
    def interval(self) -> float | None:
        """Seconds since the previous sample of this collector, if there was one."""
        return None if self.previous_at is None else self.now - self.previous_at


class Record:
    """Base of the typed records collectors hand to the sample store.

    A collector whose figures the store keeps returns one instance of its own frozen
    dataclass derived from this; the store imports that dataclass and finds the instance
    in the snapshot's ``Records`` by its type.
    """

    __slots__ = ()


R = TypeVar("R", bound=Record)


class Records:
    """The records of one sample: at most one per record type, looked up by type."""

    __slots__ = ("_by_type",)

    def __init__(self, records: Iterable[Record] = ()) -> None:
        by_type: dict[type[Record], Record] = {}
        for record in records:
            if type(record) in by_type:
                raise ValueError(f"two collectors returned a {type(record).__name__} record in one sample")
            by_type[type(record)] = record
        self._by_type = MappingProxyType(by_type)

    def get(self, kind: type[R]) -> R | None:
        """The record of type *kind* in this sample, or None when no collector produced one."""
        record = self._by_type.get(kind)
        return record if isinstance(record, kind) else None

    def __iter__(self) -> Iterator[Record]:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)

    def __repr__(self) -> str:
        return f"Records({list(self._by_type.values())!r})"


@dataclass(frozen=True)
class CollectorResult:
    """Families to expose, state for the next sample, a record for the sample store."""

    families: tuple[Family, ...]
    state: Any = None
    record: Record | None = None


@dataclass(frozen=True)
class CollectorSpec:
    """One row of the collector registry table."""

    name: str
    description: str
    collect: Callable[[CollectContext], CollectorResult]
    metrics: tuple[MetricDef, ...]
    options: type[CollectorOptions] = CollectorOptions
    needs_database: bool = True
    min_version: int = 0
    #: Database-scoped: run once in every selected database (``ctx.conn`` is connected to
    #: it), under the process-wide cap ``connection.max_database_connections``; the
    #: families of all databases are merged (their records are not kept: what the store
    #: needs is instance-wide). Instance-wide collectors (the default) run once per sample
    #: on the target's own connection.
    per_database: bool = False
    # Families whose names are only known at run time (pg_settings_<name>) are documented
    # by a pattern instead of a MetricDef.
    dynamic_metrics: tuple[str, ...] = ()
