"""The sampler of one target: its samples and the loop that takes them on time.

One thread per target, so two samplings of one target never overlap; a sampling that
overruns its interval makes the loop skip the missed ticks and count them. Nothing else
touches the database: ``/metrics`` renders the latest snapshot, the store writes the
snapshot's records.

Failure handling, per collector (never around the whole sample; see ``runner``):
* a missing privilege, function or extension disables the collector until the next
  reconnect, with one log line and ``pgperf_collector_disabled``;
* a timeout or query error fails that collector for this sample
  (``pg_scrape_collector_success 0``); the others still run;
* a lost connection ends the sample with ``pg_up 0`` and the kind of error.

Instance-wide collectors run once per sample on the target's own connection. Database-
scoped collectors (``CollectorSpec.per_database``) then run in every database the
configuration selects (``visit``). A collector with an ``interval`` option runs at most that
often; the samples in between serve its last families again (``tracker``). Between two
samples the loop lends its connection to the target's ``BetweenSamples`` work, if any
(``between``: insight's wait sampling), without starting the next sample late.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import psycopg

from .. import collectors
from ..collectors import CollectContext, CollectorSpec, TextCache, merge_families
from ..config import Config, Target, Thresholds
from ..db import STALL_GUARD, ConnectionFailed, ServerInfo, SessionSettings, TargetDatabase, classify_error
from . import runner
from .between import MARGIN, BetweenSamples
from .health import SampleHealth
from .runner import Outcome
from .snapshot import CollectorStatus, Counters, SampleBuilder, Snapshot
from .tracker import CollectorTracker, Skip
from .visit import ConnectionBudget, DatabaseVisitor, discover

__all__ = ["Listener", "TargetSampler"]

log = logging.getLogger(__name__)

Listener = Callable[[Snapshot], None]

class TargetSampler:
    """Samples one target. ``sample()`` may be called directly (tests, the Python API).

    *registry* is the collector set the configuration enables collectors from (the
    registry table by default); *between* the work done between samples (``between``).
    """

    def __init__(
        self,
        target: Target,
        config: Config,
        *,
        listeners: tuple[Listener, ...] = (),
        budget: ConnectionBudget | None = None,
        registry: Sequence[CollectorSpec] = collectors.REGISTRY,
        between: BetweenSamples | None = None,
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
        self.registry = tuple(registry)
        self.text_cache = TextCache()
        self._specs = self._enabled_specs()
        self._tracker = CollectorTracker(target.name)
        self._visitor = DatabaseVisitor(target.name, target.dsn, self.db.settings, self.budget)
        self._latest: Snapshot | None = None
        self._busy = threading.Lock()
        self._health = SampleHealth(target.name)
        self.between = between
        self._between_at: float | None = None  # time.monotonic() when it is next due
        self._due: float | None = None  # when the loop's next sample is scheduled (monotonic)

    def _enabled_specs(self) -> tuple[CollectorSpec, ...]:
        return tuple(s for s in self.registry if runner.is_enabled(s, self.config, self.target.dsn))

    def apply_config(self, config: Config) -> None:
        """Take a reloaded configuration (only keys that need no new connection change)."""
        self.config = config
        self.interval = config.sampling_interval
        self._specs = self._enabled_specs()

    def apply_target(self, target: Target) -> None:
        """Take a new definition of this target with the same DSN (its profile, thresholds
        or databases changed): used from the next sample on."""
        assert target.dsn == self.target.dsn, "a target with another DSN needs a sampler of its own"
        self.target = target

    @property
    def thresholds(self) -> Thresholds:
        """The thresholds this target is judged by (its profile's, or the process's)."""
        return self.config.thresholds_for(self.target)

    @property
    def specs(self) -> tuple[CollectorSpec, ...]:
        """The collectors the configuration enables for this target."""
        return self._specs

    @property
    def latest(self) -> Snapshot | None:
        return self._latest

    @property
    def counters(self) -> Counters:
        return self._health.counters

    def open(self) -> None:
        self.db.open()

    def close(self) -> None:
        self.db.close()

    # -- one sample -----------------------------------------------------------------

    def sample(self, wait: bool = False) -> Snapshot | None:
        """Take one sample now. If a sampling of this target is under way, return None
        (counted as an overrun) or, with *wait*, take the sample after it."""
        if not self._busy.acquire(blocking=wait):
            self._health.count(overruns=1)
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
                    log.exception("target %s: snapshot listener %r failed", self.target.name, listener,
                                  extra={"target": self.target.name})
        finally:
            self._busy.release()
        return snapshot

    def _sample(self) -> Snapshot:
        started, now = time.monotonic(), time.time()
        due, self._due = self._due, None
        build = SampleBuilder(self._latest, now)
        instance = [s for s in self._specs if s.needs_database and not s.per_database]
        scoped = [s for s in self._specs if s.needs_database and s.per_database]
        hostside = [s for s in self._specs if not s.needs_database]
        up, error_kind, error_message = False, None, None
        server: ServerInfo | None = None
        timeout = max(0.2, min(self.config.connection.connect_timeout, self.interval / 2))
        try:
            with self.db.connection(timeout=timeout) as conn:
                server = self.db.server
                up = True
                databases = discover(conn, self.db.settings, self.target.databases or self.config.databases,
                                     self.target.name)
                for spec in instance:
                    status = self._run(spec, conn, server, databases, build)
                    if conn.broken:
                        up, error_kind = False, "connection_lost"
                        error_message = f"connection lost during the {spec.name} collector"
                        if status.error == "no_answer":
                            error_kind = "no_answer"
                            error_message = f"no answer during the {spec.name} collector: connection closed"
                        break
                if up and scoped:
                    self._run_scoped(scoped, conn, server, databases, build)
                    if conn.broken:
                        up, error_kind = False, "connection_lost"
                        error_message = "connection lost while visiting databases"
        except ConnectionFailed as exc:
            error_kind, error_message = exc.kind, str(exc)
        except psycopg.OperationalError as exc:  # raised by the pool's connection check
            error_kind, error_message = classify_error(exc), str(exc)

        for spec in (*instance, *scoped):
            if not build.has(spec.name):
                build.add(CollectorStatus(spec.name, False, 0.0, error="database_down"))
        for spec in hostside:
            self._run(spec, None, server or self.db.server, None, build)
        if self.between is not None:
            build.extend(self.between.families())

        self._health.connection(up, error_kind, error_message)
        statuses = build.statuses
        counters = self._health.count(
            samples=1,
            failed=0 if up else 1,
            connection_error=error_kind if not up else None,
            collector_errors=[s.name for s in statuses if not s.success and not s.disabled and s.error != "database_down"],
            success_at=now if up else None,
        )
        return build.snapshot(
            target=self.target.name, seq=counters.samples, duration=time.monotonic() - started,
            interval=self.interval, up=up, error_kind=error_kind, error_message=error_message,
            server=server or self.db.server, counters=counters,
            lateness=None if due is None else max(0.0, started - due),
        )

    # -- running collectors ------------------------------------------------------------

    def _every(self, spec: CollectorSpec) -> float | None:
        """The collector's ``interval`` option: it runs at most that often."""
        every: float | None = getattr(runner.options_for(spec, self.config), "interval", None)
        return every

    def _skip(self, spec: CollectorSpec) -> Skip | None:
        """Why *spec* does not run in this sample (disabled, interval not elapsed), or None."""
        return self._tracker.skip(spec.name, self.db.generation, self._every(spec), self.interval)

    def _context(self, spec: CollectorSpec, conn: psycopg.Connection[Any] | None, server: ServerInfo | None,
                 now: float, previous: tuple[float | None, Any], databases: tuple[str, ...] | None) -> CollectContext:
        return CollectContext(
            target=self.target.name,
            conn=conn,
            server=server,
            options=runner.options_for(spec, self.config),
            previous=previous[1],
            previous_at=previous[0],
            now=now,
            thresholds=self.thresholds,
            text_cache=self.text_cache,
            databases=databases,
        )

    def _run(self, spec: CollectorSpec, conn: psycopg.Connection[Any] | None, server: ServerInfo | None,
             databases: tuple[str, ...] | None, build: SampleBuilder) -> CollectorStatus:
        """Run an instance-wide collector (or one that needs no database) once; its status."""
        skip = self._skip(spec)
        if skip is not None:
            build.add(skip.status, families=skip.families, record=skip.record)
            return skip.status
        ctx = self._context(spec, conn, server, build.now, build.previous(spec.name), databases)
        outcome = runner.invoke(spec, ctx, self.db.settings.no_answer_after)
        if outcome.disabled is not None:
            status = self._tracker.disable(spec.name, *outcome.disabled, self.db.generation)
            build.add(status)
        elif outcome.error is not None:
            status = self._tracker.failed(spec.name, *outcome.error, outcome.duration)
            build.add(status)
        else:
            result = outcome.result
            assert result is not None
            status = self._tracker.succeeded(spec.name, outcome.duration, build.now, self._every(spec),
                                             result.families, result.record)
            build.add_run(status, families=result.families, state=result.state, record=result.record)
        return status

    def _run_scoped(self, specs: Sequence[CollectorSpec], conn: psycopg.Connection[Any], server: ServerInfo | None,
                    databases: tuple[str, ...] | None, build: SampleBuilder) -> None:
        """Run the database-scoped collectors in every selected database."""
        active: list[CollectorSpec] = []
        for spec in specs:
            skip = self._skip(spec)
            version = runner.too_old(spec, server)
            if skip is not None:
                build.add(skip.status, families=skip.families, record=skip.record)
            elif version is not None:  # said before any database is visited
                build.add(self._tracker.disable(spec.name, *version, self.db.generation))
            else:
                active.append(spec)
        if not active:
            return
        if databases is None:
            for spec in active:
                build.add(self._tracker.failed(spec.name, "query_error", "cannot list databases", 0.0))
            return
        now = build.now

        def run_in(spec: CollectorSpec, db_conn: psycopg.Connection[Any], datname: str) -> Outcome:
            prev_at, prev_state = build.previous(spec.name)  # per database: datname -> state
            mine = prev_state.get(datname) if isinstance(prev_state, Mapping) else None
            ctx = self._context(spec, db_conn, server, now, (prev_at, mine), databases)
            return runner.invoke(spec, ctx, self.db.settings.no_answer_after)

        own = server.current_database if server is not None else None
        visit = self._visitor.visit(active, conn, own, databases, run_in, wait=self.interval)
        if visit.error is not None:
            for spec in active:
                build.add(self._tracker.failed(spec.name, *visit.error, 0.0))
            return
        for datname, error_kind in visit.databases.items():
            build.visited(datname, error_kind)
        for spec in active:
            self._settle(spec, visit.runs[spec.name], build)

    def _settle(self, spec: CollectorSpec, runs: Sequence[tuple[str, Outcome]], build: SampleBuilder) -> None:
        """One status for a database-scoped collector from its runs in every database.

        A reason to disable it in any database disables it (a privilege or a view is
        missing server-wide, in practice); an error in some databases fails the collector
        for this sample while the families of the other databases are still served.
        """
        name = spec.name
        for datname, outcome in runs:
            if outcome.disabled is not None:
                reason, detail = outcome.disabled
                build.add(self._tracker.disable(name, reason, f"{detail} (in database {datname})", self.db.generation))
                return
        duration = sum(o.duration for _, o in runs)
        good = [(d, o.result) for d, o in runs if o.result is not None]
        merged = merge_families(f for _, r in good for f in r.families)
        _, prev_state = build.previous(name)
        db_states: dict[str, Any] = dict(prev_state) if isinstance(prev_state, Mapping) else {}
        db_states.update({d: r.state for d, r in good})
        ran = {d for d, _ in runs}  # a database no longer visited loses its state
        state = MappingProxyType({d: s for d, s in db_states.items() if d in ran})
        errors = [(d, o.error) for d, o in runs if o.error is not None]
        if errors:
            datname, (kind, detail) = errors[0]
            status = self._tracker.failed(
                name, kind, f"{detail} (in database {datname}; {len(errors)} database(s) failed)", duration)
        else:
            status = self._tracker.succeeded(name, duration, build.now, self._every(spec), merged, None)
        build.add_run(status, families=merged, state=state)

    # -- the loop ---------------------------------------------------------------------

    def run(self, stop: threading.Event, offset: float = 0.0) -> None:
        """Sample every ``interval`` seconds until *stop* is set, the first time after
        *offset* seconds (the targets of one process spread over the interval)."""
        next_at = time.monotonic() + offset
        if offset:
            stop.wait(offset)
        while not stop.is_set():
            self._due = next_at
            self.sample()
            next_at += self.interval
            now = time.monotonic()
            if now >= next_at:
                missed = int((now - next_at) // self.interval) + 1
                next_at += missed * self.interval
                self._health.count(overruns=missed)
                log.warning(
                    "target %s: sampling took longer than the %.1fs interval; %d tick(s) skipped",
                    self.target.name, self.interval, missed, extra={"target": self.target.name},
                )
            self._wait(stop, next_at)

    def _wait(self, stop: threading.Event, until: float) -> None:
        """Wait until *until* (the next sample), running the between-samples work whenever
        it is due and the next sample is more than MARGIN away (see ``between``)."""
        while self.between is not None and (every := self.between.interval):
            now = time.monotonic()
            due = self._between_at if self._between_at is not None else now
            if due >= until - MARGIN:
                break
            if stop.wait(max(0.0, due - now)):
                return
            # Missed runs (a long sample) are not caught up: one now, the next a period on.
            self._between_at = due + every if due + every > time.monotonic() else time.monotonic() + every
            self._run_between(self.between)
        stop.wait(max(0.0, until - time.monotonic()))

    def _run_between(self, work: BetweenSamples) -> None:
        """Lend the sampler's connection to *work* once; nothing when the database is
        unreachable (the next sample says why)."""
        try:
            with self.db.connection(timeout=min(1.0, self.interval / 4)) as conn:
                server = self.db.server
                if server is None:
                    return
                with STALL_GUARD.guard(conn, self.db.settings.no_answer_after):
                    work.run(conn, server)
        except ConnectionFailed:
            return
        except Exception:  # as for a listener: a bug in the work must not stop sampling
            log.exception("target %s: work between samples failed", self.target.name)
