"""The store writer's own metrics (``pgperf_store_*``) and the counters behind them.

One :class:`StoreStats` is shared by the writer, its backlog and its maintenance; every
change goes through its lock and bumps ``version``, the key of the exposition's cache for
these families.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..collectors import Family, MetricDef

__all__ = ["STORE_METRICS", "Counters", "SpoolFigures", "StoreStats", "families"]


def _def(name: str, kind: str, help_text: str, labels: tuple[str, ...] = ()) -> MetricDef:
    return MetricDef(name, kind, help_text, labels, source="pgperf store")  # type: ignore[arg-type]


STORE_UP = _def("pgperf_store_up", "gauge", "Whether the last write to the sample store succeeded (1) or the store is unreachable (0).")
ACCEPTED = _def("pgperf_store_samples_accepted_total", "counter", "Samples handed to the store writer.")
WRITTEN = _def("pgperf_store_samples_written_total", "counter", "Samples written to the store.")
ROWS = _def("pgperf_store_rows_written_total", "counter", "Rows written to the store, by table.", ("table",))
SPOOLED = _def("pgperf_store_samples_spooled_total", "counter", "Samples that went to the on-disk spool because the store was unreachable or behind.")
SPOOL_SAMPLES = _def("pgperf_store_spool_samples", "gauge", "Samples waiting in the on-disk spool.")
SPOOL_BYTES = _def("pgperf_store_spool_bytes", "gauge", "Size of the on-disk spool, in bytes.")
DROPPED = _def("pgperf_store_spool_dropped_samples_total", "counter", "Samples lost: dropped because the spool reached store.spool_max_bytes (oldest first), could not be written to the spool (disk full), or removed from rejected/ at store.rejected_max_bytes.")
REJECTED = _def("pgperf_store_rejected_samples_total", "counter", "Samples the store refused for their content, and spool files that could not be read, kept in the spool's rejected/ directory.")
ERRORS = _def("pgperf_store_errors_total", "counter", "Failed attempts to reach or write the store, by kind of error.", ("kind",))
WRITE_SECONDS = _def("pgperf_store_write_duration_seconds", "gauge", "Time the last sample took to write (one transaction), in seconds.")
LAST_WRITE = _def("pgperf_store_last_write_timestamp_seconds", "gauge", "Time of the last successful write, in seconds since the epoch.")

STORE_METRICS = (STORE_UP, ACCEPTED, WRITTEN, ROWS, SPOOLED, SPOOL_SAMPLES, SPOOL_BYTES, DROPPED, REJECTED,
                 ERRORS, WRITE_SECONDS, LAST_WRITE)


@dataclass
class Counters:
    accepted: int = 0
    written: int = 0
    spooled: int = 0
    rejected: int = 0
    dropped: int = 0  # lost before reaching the spool (spool not writable)
    query_rows: int = 0
    resource_rows: int = 0
    last_write_seconds: float | None = None
    last_write_at: float | None = None


class StoreStats:
    """Counters, errors by kind and the messages already logged; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters = Counters()
        self._errors: dict[str, int] = {}
        self._logged: set[str] = set()
        self.version = 0  # changes whenever a metric changes (exposition cache key)

    def count(self, name: str, n: int = 1) -> int:
        """Add *n* to the counter *name*; return its new value."""
        with self._lock:
            value: int = getattr(self.counters, name) + n
            setattr(self.counters, name, value)
            self.version += 1
        return value

    def written(self, query_rows: int, seconds: float, at: float) -> None:
        with self._lock:
            c = self.counters
            c.written += 1
            c.resource_rows += 1
            c.query_rows += query_rows
            c.last_write_seconds, c.last_write_at = seconds, at
            self.version += 1

    def error(self, kind: str) -> None:
        with self._lock:
            self._errors[kind] = self._errors.get(kind, 0) + 1
            self.version += 1

    def touch(self) -> None:
        with self._lock:
            self.version += 1

    def log_once(self, key: str, level: int, message: str, *args: Any, exc_info: BaseException | None = None,
                 logger: logging.Logger | None = None) -> None:
        """Log at *level* the first time *key* is seen, at DEBUG after that."""
        with self._lock:
            first = key not in self._logged
            self._logged.add(key)
        (logger or logging.getLogger(__name__)).log(level if first else logging.DEBUG, message, *args,
                                                    exc_info=exc_info if first else None)

    def snapshot(self) -> tuple[Counters, dict[str, int]]:
        with self._lock:
            return replace(self.counters), dict(self._errors)


class SpoolFigures(Protocol):
    """What the metrics read of the spool."""

    dropped: int
    unreadable: int

    def __len__(self) -> int: ...

    @property
    def bytes(self) -> int: ...


def families(stats: StoreStats, spool: SpoolFigures, up: bool) -> Iterable[Family]:
    counters, errors = stats.snapshot()
    yield STORE_UP.single(1 if up else 0)
    yield ACCEPTED.single(counters.accepted)
    yield WRITTEN.single(counters.written)
    yield ROWS.family([(("query_performance_metrics",), counters.query_rows),
                       (("resource_metrics",), counters.resource_rows)])
    yield SPOOLED.single(counters.spooled)
    yield SPOOL_SAMPLES.single(len(spool))
    yield SPOOL_BYTES.single(spool.bytes)
    yield DROPPED.single(spool.dropped + counters.dropped)
    yield REJECTED.single(counters.rejected + spool.unreadable)
    yield ERRORS.family(((k,), v) for k, v in sorted(errors.items()))
    yield WRITE_SECONDS.single(counters.last_write_seconds)
    yield LAST_WRITE.single(counters.last_write_at)
