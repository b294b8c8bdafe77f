"""The sampler: runs the collectors of each target on a fixed interval into immutable
snapshots.

One thread per target, so two samplings of one target never overlap; a sampling that
overruns its interval makes the loop skip the missed ticks and count them. Nothing else
touches the database: ``/metrics`` renders the latest snapshot, the store writes the
snapshot's records.

Failure handling, per collector (never around the whole sample):
* a missing privilege, function or extension disables the collector until the next
  reconnect, with one log line and ``pgperf_collector_disabled``;
* a timeout or query error fails that collector for this sample
  (``pg_scrape_collector_success 0``); the others still run;
* a lost connection ends the sample with ``pg_up 0`` and the kind of error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import psycopg
import psycopg.errors

from . import collectors
from .collectors import CollectContext, CollectorDisabled, CollectorSpec, Family
from .collectors.statements import TextCache
from .config import Config, Target
from .db import (
    ConnectionFailed,
    ServerInfo,
    SessionSettings,
    TargetDatabase,
    classify_error,
    is_local,
)

__all__ = ["CollectorStatus", "Sampler", "Snapshot", "TargetSampler"]

log = logging.getLogger(__name__)

# Errors that mean "this collector cannot work here", not "this sample failed".
_UNSUPPORTED = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedObject,
    psycopg.errors.FeatureNotSupported,
    psycopg.errors.ObjectNotInPrerequisiteState,
)


@dataclass(frozen=True)
class CollectorStatus:
    """How one collector fared in one sample."""

    name: str
    success: bool
    duration: float
    error: str | None = None  # short kind: statement_timeout, query_error, ...
    disabled: str | None = None  # reason, while the collector is disabled


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
    records: Mapping[str, Any]
    counters: Counters

    def family(self, name: str) -> Family | None:
        for fam in self.families:
            if fam.name == name:
                return fam
        return None


Listener = Callable[[Snapshot], None]


class TargetSampler:
    """Samples one target. ``sample()`` may be called directly (tests, the Python API)."""

    def __init__(
        self,
        target: Target,
        config: Config,
        *,
        listeners: tuple[Listener, ...] = (),
    ) -> None:
        self.target = target
        self.config = config
        self.interval = config.sampling_interval
        conn = config.connection
        self.db = TargetDatabase(
            target.name,
            target.dsn,
            SessionSettings(
                connect_timeout=conn.connect_timeout,
                statement_timeout=conn.statement_timeout,
                lock_timeout=conn.lock_timeout,
                idle_in_transaction_session_timeout=conn.idle_in_transaction_session_timeout,
            ),
            pool_size=conn.pool_size,
            reconnect_timeout=max(5.0, 2 * self.interval),
        )
        self.listeners = listeners
        self.specs = self._enabled_specs()
        self.text_cache = TextCache()
        self._thresholds = config.thresholds.model_dump()
        self._latest: Snapshot | None = None
        self._busy = threading.Lock()
        self._counters = Counters()
        self._disabled: dict[str, tuple[str, str, int]] = {}  # name -> (reason, detail, generation)
        self._failing: dict[str, str] = {}  # name -> error kind, to log changes only
        self._down_kind: str | None = None

    def _enabled_specs(self) -> tuple[CollectorSpec, ...]:
        chosen = []
        for spec in collectors.REGISTRY:
            enabled = getattr(self.config.collectors, spec.name).enabled
            if enabled == "auto":
                enabled = is_local(self.target.dsn)
            if enabled:
                chosen.append(spec)
        return tuple(chosen)

    @property
    def latest(self) -> Snapshot | None:
        return self._latest

    def open(self) -> None:
        self.db.open()

    def close(self) -> None:
        self.db.close()

    # -- one sample -----------------------------------------------------------------

    def sample(self, wait: bool = False) -> Snapshot | None:
        """Take one sample now. If a sampling of this target is under way, return None
        (counted as an overrun) or, with *wait*, take the sample after it."""
        if not self._busy.acquire(blocking=wait):
            self._count(overruns=1)
            return None
        try:
            snapshot = self._sample()
        finally:
            self._busy.release()
        self._latest = snapshot
        for listener in self.listeners:
            try:
                listener(snapshot)
            except Exception:  # a listener bug must not stop sampling
                log.exception("target %s: snapshot listener %r failed", self.target.name, listener)
        return snapshot

    def _sample(self) -> Snapshot:
        started, now = time.monotonic(), time.time()
        previous = self._latest
        prev_states = previous.states if previous else {}
        families: list[Family] = []
        statuses: list[CollectorStatus] = []
        states: dict[str, tuple[float, Any]] = {}
        records: dict[str, Any] = {}
        up, error_kind, error_message = False, None, None
        server: ServerInfo | None = None

        db_specs = [s for s in self.specs if s.needs_database]
        other_specs = [s for s in self.specs if not s.needs_database]
        timeout = max(0.2, min(self.config.connection.connect_timeout, self.interval / 2))
        try:
            with self.db.connection(timeout=timeout) as conn:
                server = self.db.server
                up = True
                for spec in db_specs:
                    status = self._run(spec, conn, server, now, prev_states, families, states, records)
                    statuses.append(status)
                    if conn.broken:
                        up, error_kind = False, "connection_lost"
                        error_message = f"connection lost during the {spec.name} collector"
                        break
        except ConnectionFailed as exc:
            error_kind, error_message = exc.kind, str(exc)
        except psycopg.OperationalError as exc:  # raised by the pool's connection check
            error_kind, error_message = classify_error(exc), str(exc)

        ran = {s.name for s in statuses}
        for spec in db_specs:
            if spec.name not in ran:
                statuses.append(CollectorStatus(spec.name, False, 0.0, error="database_down"))
                if spec.name in prev_states:
                    states[spec.name] = prev_states[spec.name]
        for spec in other_specs:
            statuses.append(
                self._run(spec, None, server or self.db.server, now, prev_states, families, states, records)
            )

        self._log_connection(up, error_kind, error_message)
        duration = time.monotonic() - started
        counters = self._count(
            samples=1,
            failed=0 if up else 1,
            connection_error=error_kind if not up else None,
            collector_errors=[s.name for s in statuses if not s.success and not s.disabled and s.error != "database_down"],
            success_at=now if up else None,
        )
        return Snapshot(
            target=self.target.name,
            seq=counters.samples,
            taken_at=now,
            duration=duration,
            interval=self.interval,
            up=up,
            error_kind=error_kind,
            error_message=error_message,
            server=server or self.db.server,
            families=tuple(families),
            statuses=tuple(statuses),
            states=MappingProxyType(states),
            records=MappingProxyType(records),
            counters=counters,
        )

    def _run(
        self,
        spec: CollectorSpec,
        conn: psycopg.Connection[Any] | None,
        server: ServerInfo | None,
        now: float,
        prev_states: Mapping[str, tuple[float, Any]],
        families: list[Family],
        states: dict[str, tuple[float, Any]],
        records: dict[str, Any],
    ) -> CollectorStatus:
        name = spec.name
        disabled = self._disabled.get(name)
        if disabled is not None:
            if disabled[2] == self.db.generation:
                if name in prev_states:
                    states[name] = prev_states[name]
                return CollectorStatus(name, False, 0.0, disabled=disabled[0])
            del self._disabled[name]  # reconnected: capabilities may have changed, try again
        if server is not None and server.version_num < spec.min_version:
            return self._disable(spec, "unsupported_version",
                                 f"needs PostgreSQL {spec.min_version // 10000} or later", prev_states, states)
        prev_at, prev_state = prev_states.get(name, (None, None))
        ctx = CollectContext(
            target=self.target.name,
            conn=conn,
            server=server,
            options=getattr(self.config.collectors, name, None) or spec.options(),
            previous=prev_state,
            previous_at=prev_at,
            now=now,
            database=self.db,
            settings=self._context_settings(),
        )
        started = time.monotonic()
        error: str | None = None
        detail = ""
        try:
            result = spec.collect(ctx)
        except CollectorDisabled as exc:
            return self._disable(spec, exc.reason, exc.detail, prev_states, states)
        except psycopg.errors.InsufficientPrivilege as exc:
            return self._disable(spec, "insufficient_privilege", _first_line(exc), prev_states, states)
        except _UNSUPPORTED as exc:
            return self._disable(spec, "unsupported", _first_line(exc), prev_states, states)
        except psycopg.errors.QueryCanceled as exc:
            error, detail = "statement_timeout", _first_line(exc)
        except psycopg.errors.LockNotAvailable as exc:
            error, detail = "lock_timeout", _first_line(exc)
        except psycopg.OperationalError as exc:
            error, detail = classify_error(exc), _first_line(exc)
        except psycopg.Error as exc:
            error, detail = "query_error", _first_line(exc)
        except Exception as exc:  # a bug in one collector must not take the others down
            error, detail = "internal_error", f"{type(exc).__name__}: {exc}"
            log.exception("target %s: collector %s failed unexpectedly", self.target.name, name)
        duration = time.monotonic() - started
        if error is not None:
            if name in prev_states:
                states[name] = prev_states[name]  # deltas continue from the last good reading
            if self._failing.get(name) != error:
                log.warning("target %s: collector %s failed (%s): %s", self.target.name, name, error, detail)
                self._failing[name] = error
            return CollectorStatus(name, False, duration, error=error)
        if name in self._failing:
            log.info("target %s: collector %s works again", self.target.name, name)
            del self._failing[name]
        families.extend(result.families)
        states[name] = (now, result.state)
        if result.records is not None:
            records[name] = result.records
        return CollectorStatus(name, True, duration)

    def _context_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = dict(self._thresholds)
        settings["statement_text_cache"] = self.text_cache if self.config.store.enabled else None
        return settings

    def _disable(
        self,
        spec: CollectorSpec,
        reason: str,
        detail: str,
        prev_states: Mapping[str, tuple[float, Any]],
        states: dict[str, tuple[float, Any]],
    ) -> CollectorStatus:
        self._disabled[spec.name] = (reason, detail, self.db.generation)
        if spec.name in prev_states:
            states[spec.name] = prev_states[spec.name]
        log.warning(
            "target %s: collector %s disabled (%s): %s", self.target.name, spec.name, reason, detail
        )
        return CollectorStatus(spec.name, False, 0.0, disabled=reason)

    def _log_connection(self, up: bool, kind: str | None, message: str | None) -> None:
        if up and self._down_kind is not None:
            log.info("target %s: database reachable again", self.target.name)
            self._down_kind = None
        elif not up and kind != self._down_kind:
            log.error("target %s: database unreachable (%s): %s", self.target.name, kind, message)
            self._down_kind = kind

    def _count(
        self,
        *,
        samples: int = 0,
        failed: int = 0,
        overruns: int = 0,
        connection_error: str | None = None,
        collector_errors: list[str] | None = None,
        success_at: float | None = None,
    ) -> Counters:
        c = self._counters
        collector_errs = dict(c.collector_errors)
        for name in collector_errors or ():
            collector_errs[name] = collector_errs.get(name, 0) + 1
        conn_errs = dict(c.connection_errors)
        if connection_error:
            conn_errs[connection_error] = conn_errs.get(connection_error, 0) + 1
        self._counters = Counters(
            samples=c.samples + samples,
            failed_samples=c.failed_samples + failed,
            overruns=c.overruns + overruns,
            collector_errors=MappingProxyType(collector_errs),
            connection_errors=MappingProxyType(conn_errs),
            last_success=success_at if success_at is not None else c.last_success,
        )
        return self._counters

    @property
    def counters(self) -> Counters:
        return self._counters

    def disabled_collectors(self) -> dict[str, tuple[str, str]]:
        return {name: (reason, detail) for name, (reason, detail, _) in self._disabled.items()}

    # -- the loop ---------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Sample every ``interval`` seconds until *stop* is set."""
        next_at = time.monotonic()
        while not stop.is_set():
            self.sample()
            next_at += self.interval
            now = time.monotonic()
            if now >= next_at:
                missed = int((now - next_at) // self.interval) + 1
                next_at += missed * self.interval
                self._count(overruns=missed)
                log.warning(
                    "target %s: sampling took longer than the %.1fs interval; %d tick(s) skipped",
                    self.target.name, self.interval, missed,
                )
            stop.wait(max(0.0, next_at - time.monotonic()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Sampler:
    """All targets of one process, each sampled in its own thread."""

    def __init__(self, config: Config, *, listeners: tuple[Listener, ...] = ()) -> None:
        self.config = config
        self.targets = {
            t.name: TargetSampler(t, config, listeners=listeners) for t in config.resolved_targets()
        }
        self._stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}

    def start(self) -> None:
        for name, sampler in self.targets.items():
            sampler.open()
            thread = threading.Thread(
                target=sampler.run, args=(self._stop,), name=f"sampler-{name}", daemon=True
            )
            thread.start()
            self._threads[name] = thread

    def threads_alive(self) -> dict[str, bool]:
        return {name: thread.is_alive() for name, thread in self._threads.items()}

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        for sampler in self.targets.values():
            sampler.close()

    def snapshots(self) -> list[Snapshot]:
        return [s.latest for s in self.targets.values() if s.latest is not None]
