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

Instance-wide collectors run once per sample on the target's own connection. Database-
scoped collectors (``CollectorSpec.per_database``) then run in every database the
configuration selects, each visited through a short-lived connection; the connections
held at once, the target's own included, never exceed ``connection.max_database_connections``
across all targets of the process (``ConnectionBudget``). A collector with an ``interval``
option runs at most that often; the samples in between serve its last families again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import psycopg
import psycopg.errors

from . import collectors
from .collectors import (
    CollectContext,
    CollectorDisabled,
    CollectorResult,
    CollectorSpec,
    Family,
    Record,
    Records,
    TextCache,
    merge_families,
)
from .config import Config, Target
from .db import (
    STALL_GUARD,
    ConnectionFailed,
    ServerInfo,
    SessionSettings,
    TargetDatabase,
    classify_error,
    close_and_wait,
    connect,
    database_dsn,
    is_local,
)

__all__ = ["CollectorStatus", "ConnectionBudget", "Sampler", "Snapshot", "TargetSampler"]

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

    def family(self, name: str) -> Family | None:
        for fam in self.families:
            if fam.name == name:
                return fam
        return None


Listener = Callable[[Snapshot], None]

# Catalog query for database discovery: templates and databases refusing connections are
# never visited (see pg_database.datallowconn in the PostgreSQL documentation).
DISCOVER_SQL = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"


class ConnectionBudget:
    """How many connections the samplers of one process may hold while visiting databases.

    One budget is shared by every target. A target visiting databases takes at least two
    permits at once (its own connection, already open, and one for the database being
    visited) and at most one per database; taking them in one step means two targets can
    never each hold one and wait for the other's.
    """

    def __init__(self, limit: int) -> None:
        if limit < 2:
            raise ValueError("a connection budget needs at least 2 connections")
        self.limit = limit
        self._free = limit
        self._cond = threading.Condition()

    def acquire(self, wanted: int, minimum: int = 2, timeout: float | None = None) -> int:
        """Take between *minimum* and *wanted* permits; 0 if *minimum* were not free in time."""
        minimum = min(minimum, self.limit)
        wanted = max(minimum, min(wanted, self.limit))
        with self._cond:
            if not self._cond.wait_for(lambda: self._free >= minimum, timeout):
                return 0
            taken = min(wanted, self._free)
            self._free -= taken
            return taken

    def release(self, permits: int) -> None:
        with self._cond:
            self._free = min(self.limit, self._free + permits)
            self._cond.notify_all()

    @property
    def in_use(self) -> int:
        return self.limit - self._free


@dataclass(frozen=True)
class _Outcome:
    """What one call of a collector's ``collect`` gave: a result, a reason to disable the
    collector, or an error kind."""

    duration: float
    result: CollectorResult | None = None
    disabled: tuple[str, str] | None = None  # (reason, detail)
    error: tuple[str, str] | None = None  # (kind, detail)


@dataclass(frozen=True)
class _LastRun:
    """The last successful run of a collector with an ``interval``, served in between."""

    monotonic: float
    families: tuple[Family, ...]
    status: CollectorStatus
    record: Record | None = None  # served again too (the store's database_size_bytes)


class TargetSampler:
    """Samples one target. ``sample()`` may be called directly (tests, the Python API)."""

    def __init__(
        self,
        target: Target,
        config: Config,
        *,
        listeners: tuple[Listener, ...] = (),
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.target = target
        self.config = config
        self.interval = config.sampling_interval
        conn = config.connection
        self.budget = budget or ConnectionBudget(conn.max_database_connections)
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
        self._latest: Snapshot | None = None
        self._busy = threading.Lock()
        self._counters = Counters()
        self._disabled: dict[str, tuple[str, str, int]] = {}  # name -> (reason, detail, generation)
        self._failing: dict[str, str] = {}  # name -> error kind, to log changes only
        self._down_kind: str | None = None
        self._last_runs: dict[str, _LastRun] = {}  # collectors with an interval
        self._database_errors: dict[str, str] = {}  # datname -> error kind, to log changes only

    def _enabled_specs(self) -> tuple[CollectorSpec, ...]:
        chosen = []
        for spec in collectors.REGISTRY:
            enabled = getattr(self.config.collectors, spec.name).enabled
            if enabled == "auto":
                enabled = is_local(self.target.dsn)
            if enabled:
                chosen.append(spec)
        return tuple(chosen)

    def apply_config(self, config: Config) -> None:
        """Take a reloaded configuration (only keys that need no new connection change)."""
        self.config = config
        self.interval = config.sampling_interval
        self.specs = self._enabled_specs()

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
            # Published and handed on before the next sample may start: the next one
            # computes its deltas from this one, and the store receives them in order.
            self._latest = snapshot
            for listener in self.listeners:
                try:
                    listener(snapshot)
                except Exception:  # a listener bug must not stop sampling
                    log.exception("target %s: snapshot listener %r failed", self.target.name, listener)
        finally:
            self._busy.release()
        return snapshot

    def _sample(self) -> Snapshot:
        started, now = time.monotonic(), time.time()
        previous = self._latest
        prev_states = previous.states if previous else {}
        families: list[Family] = []
        statuses: list[CollectorStatus] = []
        states: dict[str, tuple[float, Any]] = {}
        records: list[Record] = []
        visited: dict[str, str | None] = {}
        up, error_kind, error_message = False, None, None
        server: ServerInfo | None = None

        instance_specs = [s for s in self.specs if s.needs_database and not s.per_database]
        database_specs = [s for s in self.specs if s.needs_database and s.per_database]
        other_specs = [s for s in self.specs if not s.needs_database]
        timeout = max(0.2, min(self.config.connection.connect_timeout, self.interval / 2))
        try:
            with self.db.connection(timeout=timeout) as conn:
                server = self.db.server
                up = True
                databases = self._discover(conn)
                for spec in instance_specs:
                    status = self._run(spec, conn, server, now, prev_states, families, states, records, databases)
                    statuses.append(status)
                    if conn.broken:
                        up, error_kind = False, "connection_lost"
                        error_message = f"connection lost during the {spec.name} collector"
                        if status.error == "no_answer":
                            error_kind = "no_answer"
                            error_message = f"no answer during the {spec.name} collector: connection closed"
                        break
                if up and database_specs:
                    statuses += self._visit(database_specs, conn, server, databases, now, prev_states,
                                            families, states, records, visited)
                    if conn.broken:
                        up, error_kind = False, "connection_lost"
                        error_message = "connection lost while visiting databases"
        except ConnectionFailed as exc:
            error_kind, error_message = exc.kind, str(exc)
        except psycopg.OperationalError as exc:  # raised by the pool's connection check
            error_kind, error_message = classify_error(exc), str(exc)

        ran = {s.name for s in statuses}
        for spec in (*instance_specs, *database_specs):
            if spec.name not in ran:
                statuses.append(CollectorStatus(spec.name, False, 0.0, error="database_down"))
                if spec.name in prev_states:
                    states[spec.name] = prev_states[spec.name]
        for spec in other_specs:
            statuses.append(
                self._run(spec, None, server or self.db.server, now, prev_states, families, states, records, None)
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
            records=Records(records),
            counters=counters,
            databases=MappingProxyType(visited),
        )

    def _discover(self, conn: psycopg.Connection[Any]) -> tuple[str, ...] | None:
        """The databases the configuration selects, or None if the catalog could not be read."""
        try:
            with STALL_GUARD.guard(conn, self.db.settings.no_answer_after):
                rows = conn.execute(DISCOVER_SQL).fetchall()
        except psycopg.Error as exc:
            if conn.broken:
                raise
            log.warning("target %s: cannot list databases: %s", self.target.name, _first_line(exc))
            return None
        selection = self.target.databases or self.config.databases
        return tuple(r[0] for r in rows if selection.matches(r[0]))

    # -- running collectors ------------------------------------------------------------

    def _options(self, spec: CollectorSpec) -> Any:
        return getattr(self.config.collectors, spec.name, None) or spec.options()

    def _blocked(
        self,
        spec: CollectorSpec,
        server: ServerInfo | None,
        prev_states: Mapping[str, tuple[float, Any]],
        families: list[Family],
        states: dict[str, tuple[float, Any]],
        records: list[Record] | None = None,
    ) -> CollectorStatus | None:
        """The status of a collector that must not run in this sample (disabled, too old a
        server, or its interval not yet elapsed), or None when it should run."""
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
        interval = getattr(self._options(spec), "interval", None)
        last = self._last_runs.get(name)
        # Due when the next sample would come later than the interval allows (samples are
        # `self.interval` apart, so "now + half an interval" rounds to the nearest sample).
        if interval and last is not None and time.monotonic() - last.monotonic + self.interval / 2 < interval:
            families.extend(last.families)
            if records is not None and last.record is not None:
                records.append(last.record)
            if name in prev_states:
                states[name] = prev_states[name]
            return last.status
        return None

    def _context(self, spec: CollectorSpec, conn: psycopg.Connection[Any] | None, server: ServerInfo | None,
                 now: float, previous: tuple[float | None, Any], databases: tuple[str, ...] | None) -> CollectContext:
        return CollectContext(
            target=self.target.name,
            conn=conn,
            server=server,
            options=self._options(spec),
            previous=previous[1],
            previous_at=previous[0],
            now=now,
            thresholds=self.config.thresholds,
            text_cache=self.text_cache,
            databases=databases,
        )

    def _invoke(self, spec: CollectorSpec, ctx: CollectContext) -> _Outcome:
        """Call the collector; classify whatever it raises (never around the whole sample)."""
        if ctx.conn is None:
            return self._call(spec, ctx)
        with STALL_GUARD.guard(ctx.conn, self.db.settings.no_answer_after) as watch:
            outcome = self._call(spec, ctx)
        if watch.fired and outcome.error is not None:
            return _Outcome(outcome.duration, error=(
                "no_answer", f"no answer within {watch.seconds:.0f}s: pgperf closed the connection"))
        return outcome

    def _call(self, spec: CollectorSpec, ctx: CollectContext) -> _Outcome:
        started = time.monotonic()
        try:
            result = spec.collect(ctx)
        except CollectorDisabled as exc:
            return _Outcome(time.monotonic() - started, disabled=(exc.reason, exc.detail))
        except psycopg.errors.InsufficientPrivilege as exc:
            return _Outcome(time.monotonic() - started, disabled=("insufficient_privilege", _first_line(exc)))
        except _UNSUPPORTED as exc:
            return _Outcome(time.monotonic() - started, disabled=("unsupported", _first_line(exc)))
        except psycopg.errors.QueryCanceled as exc:
            return _Outcome(time.monotonic() - started, error=("statement_timeout", _first_line(exc)))
        except psycopg.errors.LockNotAvailable as exc:
            return _Outcome(time.monotonic() - started, error=("lock_timeout", _first_line(exc)))
        except psycopg.OperationalError as exc:
            return _Outcome(time.monotonic() - started, error=(classify_error(exc), _first_line(exc)))
        except psycopg.Error as exc:
            return _Outcome(time.monotonic() - started, error=("query_error", _first_line(exc)))
        except Exception as exc:  # a bug in one collector must not take the others down
            log.exception("target %s: collector %s failed unexpectedly", self.target.name, spec.name)
            return _Outcome(time.monotonic() - started, error=("internal_error", f"{type(exc).__name__}: {exc}"))
        return _Outcome(time.monotonic() - started, result=result)

    def _run(
        self,
        spec: CollectorSpec,
        conn: psycopg.Connection[Any] | None,
        server: ServerInfo | None,
        now: float,
        prev_states: Mapping[str, tuple[float, Any]],
        families: list[Family],
        states: dict[str, tuple[float, Any]],
        records: list[Record],
        databases: tuple[str, ...] | None,
    ) -> CollectorStatus:
        """Run an instance-wide collector (or one that needs no database) once."""
        name = spec.name
        blocked = self._blocked(spec, server, prev_states, families, states, records)
        if blocked is not None:
            return blocked
        ctx = self._context(spec, conn, server, now, prev_states.get(name, (None, None)), databases)
        outcome = self._invoke(spec, ctx)
        if outcome.disabled is not None:
            return self._disable(spec, *outcome.disabled, prev_states, states)
        if outcome.error is not None:
            return self._failed(spec, outcome.error, outcome.duration, prev_states, states)
        result = outcome.result
        assert result is not None
        families.extend(result.families)
        states[name] = (now, result.state)
        if result.record is not None:
            records.append(result.record)
        return self._succeeded(spec, result.families, outcome.duration, now, result.record)

    def _failed(self, spec: CollectorSpec, error: tuple[str, str], duration: float,
                prev_states: Mapping[str, tuple[float, Any]], states: dict[str, tuple[float, Any]]) -> CollectorStatus:
        name = spec.name
        kind, detail = error
        if name in prev_states:
            states[name] = prev_states[name]  # deltas continue from the last good reading
        if self._failing.get(name) != kind:
            log.warning("target %s: collector %s failed (%s): %s", self.target.name, name, kind, detail)
            self._failing[name] = kind
        return CollectorStatus(name, False, duration, error=kind)

    def _succeeded(self, spec: CollectorSpec, families: Sequence[Family], duration: float, now: float,
                   record: Record | None = None) -> CollectorStatus:
        name = spec.name
        if name in self._failing:
            log.info("target %s: collector %s works again", self.target.name, name)
            del self._failing[name]
        status = CollectorStatus(name, True, duration, ran_at=now)
        if getattr(self._options(spec), "interval", None):
            self._last_runs[name] = _LastRun(time.monotonic(), tuple(families), status, record)
        return status

    # -- database-scoped collectors ----------------------------------------------------------

    def _visit(
        self,
        specs: list[CollectorSpec],
        conn: psycopg.Connection[Any],
        server: ServerInfo | None,
        databases: tuple[str, ...] | None,
        now: float,
        prev_states: Mapping[str, tuple[float, Any]],
        families: list[Family],
        states: dict[str, tuple[float, Any]],
        records: list[Record],
        visited: dict[str, str | None],
    ) -> list[CollectorStatus]:
        """Run the database-scoped collectors in every selected database.

        The target's own database is read through its own connection; every other one
        through a connection opened for the visit and closed after it, by at most
        ``permits - 1`` worker threads, so the connections open at once (the target's own
        included) never exceed the permits taken from the shared budget.
        """
        statuses: list[CollectorStatus] = []
        active: list[CollectorSpec] = []
        for spec in specs:
            blocked = self._blocked(spec, server, prev_states, families, states)
            if blocked is not None:
                statuses.append(blocked)
            else:
                active.append(spec)
        if not active:
            return statuses
        if databases is None:
            return statuses + [self._failed(s, ("query_error", "cannot list databases"), 0.0, prev_states, states)
                               for s in active]
        own = server.current_database if server is not None else None
        others = [d for d in databases if d != own]
        permits = 0
        if others:
            permits = self.budget.acquire(1 + len(others), minimum=2, timeout=self.interval)
            if not permits:
                detail = f"no connection free within {self.interval:g}s (connection.max_database_connections)"
                return statuses + [self._failed(s, ("connection_cap", detail), 0.0, prev_states, states)
                                   for s in active]
        previous = {s.name: prev_states.get(s.name, (None, None)) for s in active}

        def visit(datname: str, own_conn: psycopg.Connection[Any] | None = None
                  ) -> tuple[str, dict[str, _Outcome], tuple[str, str] | None]:
            if own_conn is not None:
                return datname, self._run_in(active, own_conn, server, now, previous, datname, databases), None
            try:
                db_conn = connect(database_dsn(self.target.dsn, datname), self.db.settings)
            except ConnectionFailed as exc:
                return datname, {}, (exc.kind, str(exc).strip().splitlines()[0] if str(exc).strip() else exc.kind)
            try:
                return datname, self._run_in(active, db_conn, server, now, previous, datname, databases), None
            finally:
                close_and_wait(db_conn)  # its permit is free only once its backend is gone

        results: list[tuple[str, dict[str, _Outcome], tuple[str, str] | None]] = []
        try:
            if others:
                with ThreadPoolExecutor(max_workers=permits - 1, thread_name_prefix=f"visit-{self.target.name}") as pool:
                    futures = [pool.submit(visit, d) for d in others]
                    if own is not None and own in databases:
                        results.append(visit(own, conn))
                    results += [f.result() for f in futures]
            elif own is not None and own in databases:
                results.append(visit(own, conn))
        finally:
            if permits:
                self.budget.release(permits)
        results.sort(key=lambda r: r[0])

        for datname, _, db_error in results:
            visited[datname] = db_error[0] if db_error else None
            self._log_database(datname, db_error)
        for datname in list(self._database_errors):
            if datname not in visited:
                del self._database_errors[datname]  # dropped or no longer selected
        for spec in active:
            statuses.append(self._settle(spec, results, now, prev_states, families, states, records))
        return statuses

    def _run_in(self, specs: list[CollectorSpec], conn: psycopg.Connection[Any], server: ServerInfo | None,
                now: float, previous: Mapping[str, tuple[float | None, Any]], datname: str,
                databases: tuple[str, ...] | None) -> dict[str, _Outcome]:
        """Run *specs* in one database; each gets its own state of that database."""
        outcomes: dict[str, _Outcome] = {}
        for spec in specs:
            prev_at, prev_state = previous[spec.name]
            per_db = prev_state.get(datname) if isinstance(prev_state, Mapping) else None
            ctx = self._context(spec, conn, server, now, (prev_at, per_db), databases)
            outcomes[spec.name] = self._invoke(spec, ctx)
            if conn.broken:
                break
        return outcomes

    def _settle(
        self,
        spec: CollectorSpec,
        results: list[tuple[str, dict[str, _Outcome], tuple[str, str] | None]],
        now: float,
        prev_states: Mapping[str, tuple[float, Any]],
        families: list[Family],
        states: dict[str, tuple[float, Any]],
        records: list[Record],
    ) -> CollectorStatus:
        """One status for a database-scoped collector from its runs in every database.

        A reason to disable it in any database disables it (a privilege or a view is
        missing server-wide, in practice); an error in some databases fails the collector
        for this sample while the families of the other databases are still served.
        """
        name = spec.name
        outcomes = [(d, o[name]) for d, o, _ in results if name in o]
        for datname, outcome in outcomes:
            if outcome.disabled is not None:
                reason, detail = outcome.disabled
                return self._disable(spec, reason, f"{detail} (in database {datname})", prev_states, states)
        duration = sum(o.duration for _, o in outcomes)
        good = [(d, o.result) for d, o in outcomes if o.result is not None]
        merged = merge_families(f for _, r in good for f in r.families)
        families.extend(merged)
        prev_at, prev_state = prev_states.get(name, (None, None))
        db_states: dict[str, Any] = dict(prev_state) if isinstance(prev_state, Mapping) else {}
        db_states.update({d: r.state for d, r in good})
        states[name] = (now, MappingProxyType({d: s for d, s in db_states.items() if d in dict(outcomes)}))
        errors = [(d, o.error) for d, o in outcomes if o.error is not None]
        if errors:
            datname, (kind, detail) = errors[0]
            return self._failed(spec, (kind, f"{detail} (in database {datname}; {len(errors)} database(s) failed)"),
                                duration, {}, {})
        return self._succeeded(spec, merged, duration, now)

    def _log_database(self, datname: str, error: tuple[str, str] | None) -> None:
        known = self._database_errors.get(datname)
        if error is None:
            if known is not None:
                log.info("target %s: database %s readable again", self.target.name, datname)
                del self._database_errors[datname]
        elif known != error[0]:
            log.warning("target %s: cannot visit database %s (%s): %s", self.target.name, datname, *error)
            self._database_errors[datname] = error[0]

    def _disable(
        self,
        spec: CollectorSpec,
        reason: str,
        detail: str,
        prev_states: Mapping[str, tuple[float, Any]],
        states: dict[str, tuple[float, Any]],
    ) -> CollectorStatus:
        self._disabled[spec.name] = (reason, detail, self.db.generation)
        self._last_runs.pop(spec.name, None)
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
        #: One cap on the connections held while visiting databases, for every target.
        self.budget = ConnectionBudget(config.connection.max_database_connections)
        self.targets = {
            t.name: TargetSampler(t, config, listeners=listeners, budget=self.budget)
            for t in config.resolved_targets()
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

    def apply_config(self, config: Config) -> None:
        self.config = config
        for sampler in self.targets.values():
            sampler.apply_config(config)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        for sampler in self.targets.values():
            sampler.close()

    def snapshots(self) -> list[Snapshot]:
        return [s.latest for s in self.targets.values() if s.latest is not None]
