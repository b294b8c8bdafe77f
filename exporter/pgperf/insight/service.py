"""Query insight at work in ``pgperf serve``: wait sampling between samples, plans and advice
on a schedule, the results in the store and on ``/metrics``.

* **Waits.** Each target's ``TargetInsight`` is the work its sampler does between samples
  (``sampling.between``): one reading of the active sessions every
  ``insight.waits.interval`` (by default a quarter of the sampling interval) on the sampler's own connection (of pg_wait_sampling's
  cumulative profile, where that is the source, once per sampling interval). Its bounded families are in
  every snapshot of the target; the per-statement profiles of each sampling interval go to
  the store with that sample (``with_waits``: the batch's rows, written in the sample's
  transaction, spooled with it while the store is away).
* **Plans and advice.** The statements a target's samples saw (pg_stat_statements deltas)
  are summed until the next refresh, with the seconds of the sampling intervals they were
  counted over (the window of their calls, which advice weighs its write cost against).
  One thread refreshes each target every ``insight.plans.interval`` (by default 80
  sampling intervals) — the first as soon as statements were seen: the slow statements
  and the top ones by total time (``insight.plans.max_statements``) are planned and
  advised on per database (``refresh``): those of the target's own database on a
  connection of the target's pool (with ``connection.pool_size`` 2 or more: the sampler
  keeps the other), the others each in a session of its own counted against
  ``connection.max_database_connections`` as a visit of the databases is. Plans are stored with first and
  last seen; a new plan hash of a statement counts in
  ``pgperf_statement_plan_changes_total``; new advice is saved, known advice whose index now
  exists is marked applied with its statements' mean times before and after from the store.

Every failure is a log line and a counter: a refresh that cannot reach a database or the
store tries again at the next one; a reading that fails is counted by kind of error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import psycopg

from ..collectors import Family, MetricDef
from ..collectors.statements import StatementRecords
from ..config import Config, Target
from ..db import STALL_GUARD, ConnectionFailed, ServerInfo, SessionSettings, TargetDatabase, classify_error
from ..redact import redact
from ..sampling import ConnectionBudget, Sampler, Snapshot
from ..store.client import StoreClient, StoreUnavailable
from ..store.rows import SampleBatch
from . import store as insight_store
from .advice import IndexAdvice
from .plans import Plan, Statement, choose_statements
from .refresh import DatabaseRefresh, by_database, insight_settings, refresh_database, refresh_on
from .server import InsightServer, detect_insight
from .waits import WAIT_METRICS, WaitSampler, WaitSourceUnavailable

__all__ = ["INSIGHT_METRICS", "InsightService", "RefreshSummary", "TargetInsight"]

log = logging.getLogger(__name__)

_S = "insight"
PLAN_CHANGES = MetricDef(
    "pgperf_statement_plan_changes_total", "counter",
    "Times a statement's generic plan changed shape (a new plan hash at a plans refresh); 0 from its first "
    "captured plan on.", ("datname", "queryid"), _S,
)
PLANS_CAPTURED = MetricDef(
    "pgperf_statement_plans_captured_total", "counter", "Generic plans captured by plans refreshes.", (), _S,
)
PLANS_SKIPPED = MetricDef(
    "pgperf_statement_plans_skipped_total", "counter",
    "Statements a plans refresh did not plan, by reason (parameter_types, permission_denied, undefined_object, "
    "statement_timeout, lock_timeout, database_unreachable ...).", ("reason",), _S,
)
REFRESH_SECONDS = MetricDef(
    "pgperf_insight_refresh_duration_seconds", "gauge",
    "Time the last plans refresh took (planning, index advice and store writes), in seconds.", (), _S,
)
LAST_REFRESH = MetricDef(
    "pgperf_insight_last_refresh_timestamp_seconds", "gauge",
    "Time of the last plans refresh, in seconds since the epoch.", (), _S,
)
ADVICE = MetricDef(
    "pgperf_index_advice", "gauge",
    "Index advice kept in the store for the target, by status (open, applied) and verification (hypopg, "
    "heuristic).", ("status", "verified"), _S,
)
WAIT_ERRORS = MetricDef(
    "pgperf_wait_sampling_errors_total", "counter",
    "Readings of the wait sampling source that failed, by kind of error.", ("kind",), _S,
)
INSIGHT_METRICS = (*WAIT_METRICS, WAIT_ERRORS, PLAN_CHANGES, PLANS_CAPTURED, PLANS_SKIPPED, REFRESH_SECONDS,
                   LAST_REFRESH, ADVICE)

#: Statements with a plan-change series, at most; past it those planned longest ago go.
MAX_PLAN_SERIES = 1000
#: A statement not planned for this long loses its plan-change series.
PLAN_SERIES_SECONDS = 3600.0


@dataclass(frozen=True)
class RefreshSummary:
    """What one refresh of one target did."""

    target: str
    databases: tuple[DatabaseRefresh, ...]
    changes: tuple[insight_store.PlanChange, ...]
    stored: bool
    seconds: float

    @property
    def plans(self) -> tuple[Plan, ...]:
        return tuple(p for d in self.databases for p in d.plans)


class TargetInsight:
    """Insight of one target: the work between its samples (wait sampling), the statements
    its samples saw since the last refresh, and its counters. Thread-safe: the sampler's
    thread samples and observes, the refresh thread takes statements and counts."""

    def __init__(self, target: Target, config: Config) -> None:
        self.target = target
        self.config = config
        #: The target's pool (``InsightService.attach``): its own database is planned there.
        self.db: TargetDatabase | None = None
        waits = config.insight.waits
        self.waits = WaitSampler(target.name, source=waits.source, interval=waits.every(config.sampling_interval))
        self._lock = threading.Lock()
        self._detected: tuple[ServerInfo, InsightServer] | None = None
        self._wait_errors: Counter[str] = Counter()
        self._wait_problem: str | None = None
        # (datname, queryid) -> [calls, total_ms, username, text] since the last refresh
        self._seen: dict[tuple[str, int], list[Any]] = {}
        # Seconds of the sampling intervals whose statements are in _seen (their window).
        self._seen_seconds = 0.0
        # (datname, queryid) -> [plan changes, refresh number of its last plan]
        self._changes: dict[tuple[str, int], list[int]] = {}
        self._hashes: dict[tuple[str, int], str] = {}
        self._refreshes = 0
        self._captured = 0
        self._skipped: Counter[str] = Counter()
        self._refresh_seconds: float | None = None
        self._last_refresh: float | None = None
        self._advice: Counter[tuple[str, str]] = Counter()
        #: time.monotonic() of the next plans refresh (the first: once statements are seen)
        self.next_refresh = 0.0

    def apply_config(self, config: Config) -> None:
        self.config = config
        self.waits.source = config.insight.waits.source
        self.waits.interval = config.insight.waits.every(config.sampling_interval)

    # -- between samples (sampling.between.BetweenSamples) --------------------------------

    @property
    def interval(self) -> float | None:
        """Seconds between two readings: ``insight.waits.interval`` for pg_stat_activity; for
        pg_wait_sampling, which samples every backend itself (every 10 ms), its cumulative
        profile is read once per sampling interval instead — more often would only cost more."""
        waits = self.config.insight.waits
        if not waits.enabled:
            return None
        detected = self._detected
        if detected is not None and detected[1].wait_sampling and waits.source != "pg_stat_activity":
            return max(waits.every(self.config.sampling_interval), self.config.sampling_interval)
        return waits.every(self.config.sampling_interval)

    def run(self, conn: psycopg.Connection[Any], server: ServerInfo) -> None:
        """One reading of the wait sampling source on the sampler's connection."""
        try:
            detected = self._detected
            if detected is None or detected[0] is not server:  # a new connection: look again
                detected = (server, detect_insight(conn))
                self._detected = detected
            self.waits.sample(conn, detected[1])
        except WaitSourceUnavailable as exc:
            self._wait_failed("source_unavailable", str(exc))
        except psycopg.Error as exc:
            kind = "connection_lost" if conn.broken else classify_error(exc)
            self._wait_failed("query_error" if kind == "other" else kind, redact(str(exc)).strip())
        else:
            if self._wait_problem is not None:
                log.info("target %s: wait sampling works again", self.target.name)
                self._wait_problem = None

    def _wait_failed(self, kind: str, detail: str) -> None:
        with self._lock:
            self._wait_errors[kind] += 1
        if self._wait_problem != kind:
            log.warning("target %s: wait sampling failed (%s): %s", self.target.name, kind,
                        detail.splitlines()[0] if detail else kind)
            self._wait_problem = kind

    def families(self) -> Iterable[Family]:
        """The bounded families of this target: waits, plans, advice (no statement text)."""
        with self._lock:
            errors = sorted(self._wait_errors.items())
            changes = sorted((key, v[0]) for key, v in self._changes.items())
            skipped = sorted(self._skipped.items())
            advice = sorted(self._advice.items())
            captured, seconds, last = self._captured, self._refresh_seconds, self._last_refresh
        return (
            *self.waits.families(),
            WAIT_ERRORS.family(((k,), n) for k, n in errors),
            PLAN_CHANGES.family(((d, q), n) for (d, q), n in changes),
            PLANS_CAPTURED.single(captured),
            PLANS_SKIPPED.family(((k,), n) for k, n in skipped),
            REFRESH_SECONDS.single(seconds),
            LAST_REFRESH.single(last),
            ADVICE.family((key, n) for key, n in advice),
        )

    # -- statements seen, waits drained ------------------------------------------------------

    def observe(self, snap: Snapshot) -> None:
        """Add the statements that ran in *snap*'s interval to those of the next refresh."""
        records = snap.records.get(StatementRecords)
        if records is None:
            return
        with self._lock:
            self._seen_seconds += records.interval_seconds
            for d in records.deltas:
                acc = self._seen.get((d.datname, d.queryid))
                if acc is None:
                    self._seen[(d.datname, d.queryid)] = [d.calls, d.total_ms, d.username, records.texts.get(d.queryid)]
                    continue
                acc[0] += d.calls
                acc[1] += d.total_ms
                if acc[3] is None:
                    acc[3] = records.texts.get(d.queryid)

    def has_statements(self) -> bool:
        with self._lock:
            return bool(self._seen)

    def take_statements(self) -> list[Statement]:
        """The statements seen since the last call, with their texts and the seconds their
        calls were counted over (the sampling intervals observed since), then forgotten here."""
        with self._lock:
            seen, self._seen = self._seen, {}
            seconds, self._seen_seconds = self._seen_seconds, 0.0
        window = seconds if seconds > 0 else None
        return [Statement(qid, text, datname, username, calls, total_ms, window)
                for (datname, qid), (calls, total_ms, username, text) in sorted(seen.items()) if text]

    def wait_rows(self, until: float) -> list[list[Any]]:
        """The per-statement wait profiles since the last call, as rows of
        statement_wait_profiles (``store.waits``) recorded at *until* (epoch seconds)."""
        return [[p.target, until, round(p.interval_seconds, 3), p.source,
                 None if p.query_id is None else str(p.query_id), p.wait_event_type, p.wait_event, p.samples,
                 p.seconds] for p in self.waits.drain(now=until)]

    # -- what a refresh found ---------------------------------------------------------------

    def count_refresh(self, summary: RefreshSummary, memory_changes: Iterable[tuple[str, int]]) -> None:
        """Count *summary*'s plans and skips, its plan changes (from the store when it was
        written, else *memory_changes*)."""
        with self._lock:
            self._refreshes += 1
            self._captured += len(summary.plans)
            for d in summary.databases:
                self._skipped.update(d.skipped)
            changed = [(c.datname, c.query_id) for c in summary.changes] if summary.stored else list(memory_changes)
            for plan in summary.plans:
                entry = self._changes.setdefault((plan.datname or "", plan.query_id), [0, 0])
                entry[1] = self._refreshes
            for key in changed:
                self._changes.setdefault(key, [0, 0])[0] += 1
            # A series lives while its statement was planned within the alert's hour (the
            # rule reads increase(...[1h])), MAX_PLAN_SERIES at most.
            every = self.config.insight.plans.every(self.config.sampling_interval)
            recent = self._refreshes - int(PLAN_SERIES_SECONDS / every) - 1
            kept = sorted(((k, v) for k, v in self._changes.items() if v[1] >= recent), key=lambda kv: -kv[1][1])
            self._changes = dict(kept[:MAX_PLAN_SERIES])
            self._refresh_seconds = summary.seconds
            self._last_refresh = time.time()

    def remember_hashes(self, plans: Sequence[Plan]) -> list[tuple[str, int]]:
        """Record the plans' hashes; the statements whose hash differs from the last one here."""
        changed = []
        with self._lock:
            for plan in plans:
                key = (plan.datname or "", plan.query_id)
                before = self._hashes.get(key)
                if before is not None and before != plan.plan_hash:
                    changed.append(key)
                self._hashes[key] = plan.plan_hash
        return changed

    def count_skipped(self, reason: str, n: int) -> None:
        with self._lock:
            self._skipped[reason] += n

    def set_advice_counts(self, advice: Iterable[IndexAdvice]) -> None:
        with self._lock:
            self._advice = Counter((a.status, a.verified) for a in advice)
            for status in ("open", "applied"):
                for verified in ("hypopg", "heuristic"):
                    self._advice.setdefault((status, verified), 0)


class InsightService:
    """Insight for every target of one configuration (see the module docstring).

    *client* is the store (None: plans and advice are not kept, changes are counted from
    memory). The sampler's connection budget and pools are given by ``attach`` once it exists.
    """

    def __init__(self, config: Config, client: StoreClient | None, budget: ConnectionBudget | None = None) -> None:
        self.config = config
        self.client = client
        self.budget = budget
        #: name -> insight; replaced, never changed in place, as the sampler's targets.
        self.targets: dict[str, TargetInsight] = {t.name: TargetInsight(t, config) for t in config.resolved_targets()}
        self._targets_lock = threading.Lock()
        self._sampler: Sampler | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._problems: dict[str, str] = {}  # what was logged, so that it is logged once
        self._expired_at = 0.0

    def attach(self, sampler: Sampler) -> None:
        """Use *sampler*'s connection budget and its targets' pools (it takes ``between``)."""
        self.budget = sampler.budget
        self._sampler = sampler
        for name, target in self.targets.items():
            if name in sampler.targets:
                target.db = sampler.targets[name].db

    def between(self, target: Target) -> TargetInsight:
        """The work between samples of *target* (``Sampler(between=...)``); a target added
        while pgperf runs (a target file changed), or whose DSN changed, gets a new one."""
        with self._targets_lock:
            kept = self.targets.get(target.name)
            if kept is not None and kept.target.dsn == target.dsn:
                return kept
            made = TargetInsight(target, self.config)
            self.targets = {**self.targets, target.name: made}
            return made

    def _db(self, target: TargetInsight) -> TargetDatabase | None:
        """The pool of *target*'s sampler (set by ``attach``, or looked up for a target
        added since)."""
        if target.db is None and self._sampler is not None:
            sampler = self._sampler.targets.get(target.target.name)
            if sampler is not None:
                target.db = sampler.db
        return target.db

    def apply_config(self, config: Config) -> None:
        """Take a reloaded configuration; targets it no longer has lose their insight (what
        the store keeps of them stays)."""
        self.config = config
        wanted = {t.name for t in config.resolved_targets()}
        with self._targets_lock:
            self.targets = {name: t for name, t in self.targets.items() if name in wanted}
        for t in self.targets.values():
            t.apply_config(config)
        self._wake.set()

    # -- the sampler's side ------------------------------------------------------------------

    def observe(self, snap: Snapshot) -> None:
        """Called with every snapshot: its statements go to the next refresh."""
        target = self.targets.get(snap.target)
        if target is not None:
            target.observe(snap)
            if target.next_refresh == 0.0 and target.has_statements():
                self._wake.set()

    def with_waits(self, batch: SampleBatch, snap: Snapshot) -> SampleBatch:
        """*batch* with the wait profiles of the interval that ended when *snap* was taken
        (the readings between samples all came before it)."""
        target = self.targets.get(snap.target)
        if target is None:
            return batch
        rows = target.wait_rows(snap.taken_at)
        return replace(batch, waits=rows) if rows else batch

    # -- the refresh thread ------------------------------------------------------------------

    def start(self) -> None:
        if not self.config.insight.plans.enabled and not self.config.insight.advice.enabled:
            log.info("insight: plans and advice are off (insight.plans.enabled: false)")
        self._thread = threading.Thread(target=self._run, name="insight-plans", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, target in list(self.targets.items()):
                if self._stop.is_set():
                    return
                if not self.config.insight.plans.enabled:
                    continue
                if time.monotonic() >= target.next_refresh and target.has_statements():
                    target.next_refresh = time.monotonic() + self.config.insight.plans.every(
                        self.config.sampling_interval)
                    try:
                        self.refresh(name)
                    except Exception:  # as the store writer: a defect is logged, the thread goes on
                        log.exception("insight: plans refresh of target %s failed unexpectedly", name)
            self._wake.wait(1.0)
            self._wake.clear()

    def _settings(self) -> SessionSettings:
        c = self.config.connection
        return insight_settings(SessionSettings(
            connect_timeout=c.connect_timeout, statement_timeout=c.statement_timeout, lock_timeout=c.lock_timeout,
            idle_in_transaction_session_timeout=c.idle_in_transaction_session_timeout))

    def refresh(self, name: str) -> RefreshSummary:
        """One plans refresh of target *name* now, from the statements seen since the last."""
        started = time.monotonic()
        target = self.targets[name]
        options = self.config.insight
        chosen = choose_statements(target.take_statements(), options.plans.max_statements,
                                   self.config.thresholds_for(target.target).slow_query_time_ms)
        known = self._known_advice(name)
        results = []
        selection = target.target.databases or self.config.databases
        for datname, statements in by_database(s for s in chosen if s.datname and selection.matches(s.datname)).items():
            result = self._refresh_one(target, datname, statements, [a for a in known if (a.datname or "") == datname])
            if result.error is not None and not result.skipped:
                target.count_skipped("database_unreachable", len(statements))
            self._log(f"{name}/{datname}", result.error)
            results.append(result)
        plans = [p for r in results for p in r.plans]
        memory_changes = target.remember_hashes(plans)
        changes, stored = self._store(name, results, known)
        summary = RefreshSummary(name, tuple(results), tuple(changes), stored, time.monotonic() - started)
        target.count_refresh(summary, memory_changes)
        for key in ([(c.datname, c.query_id) for c in changes] if stored else memory_changes):
            log.info("target %s: the plan of statement %s in database %s changed", name, key[1], key[0])
        return summary

    def _refresh_one(self, target: TargetInsight, datname: str, statements: Sequence[Statement],
                     known: Sequence[IndexAdvice]) -> DatabaseRefresh:
        """One database's refresh, on the target's pool for its own database, else in a
        session opened for it under the connection budget."""
        settings, options = self._settings(), self.config.insight
        db = self._db(target)
        own = db.server.current_database if db is not None and db.server is not None else None
        if db is not None and datname == own and self.config.connection.pool_size >= 2:
            try:
                with db.connection(timeout=self.config.connection.connect_timeout) as conn, \
                        STALL_GUARD.guard(conn, db.settings.no_answer_after):
                    return refresh_on(conn, datname, statements, settings, options, known)
            except ConnectionFailed as exc:
                return DatabaseRefresh(datname, error=f"database {datname}: no connection ({exc.kind}): {exc}")
        budget = self.budget
        # Two permits, as a visit takes them: the target's own connection (open) and the
        # planning session, so that pgperf's sessions stay within the cap.
        permits = budget.acquire(2, minimum=2, timeout=self.config.sampling_interval) if budget else 0
        if budget is not None and not permits:
            return DatabaseRefresh(datname, skipped={"connection_cap": len(statements)}, error=f"database {datname}: no connection free within "
                                                  f"{self.config.sampling_interval:g}s (connection.max_database_connections)")
        try:
            return refresh_database(target.target.dsn, datname, statements, settings, options, known)
        finally:
            if budget is not None and permits:
                budget.release(permits)

    # -- the store ---------------------------------------------------------------------------

    def _known_advice(self, name: str) -> list[IndexAdvice]:
        if self.client is None:
            return []
        try:
            with self.client.connection() as conn:
                return insight_store.read_advice(conn, self.client.schema, name)
        except (StoreUnavailable, psycopg.Error) as exc:
            self._log(f"{name}/store", f"cannot read index advice from the store: {redact(str(exc)).strip()}")
            return []

    def _store(self, name: str, results: Sequence[DatabaseRefresh], known: Sequence[IndexAdvice]
               ) -> tuple[list[insight_store.PlanChange], bool]:
        """Write plans and advice of one refresh; the plan changes and whether it was stored."""
        target = self.targets[name]
        plans = [p for r in results for p in r.plans]
        fresh = [a for r in results for a in r.advice]
        before = {a.key: a for a in known}
        # Known advice is saved again when its status changed, and while applied (its mean
        # time after the index grows with the samples); open advice not proposed again ages.
        checked = [a for r in results for a in r.checked
                   if a.status == "applied" or a.status != before[a.key].status]
        if self.client is None:
            target.set_advice_counts([*known, *fresh])
            return [], False
        schema = self.client.schema
        now = datetime.now(UTC)
        try:
            with self.client.connection() as conn:
                changes = insight_store.record_plans(conn, schema, name, plans, at=now)
                observed = []
                for a in checked:
                    if a.status == "applied" and a.applied_at is not None:
                        mean_before, mean_after = insight_store.observed_means(conn, schema, name, a.query_ids,
                                                                               a.applied_at, until=now)
                        a = replace(a, observed_mean_ms_before=mean_before, observed_mean_ms_after=mean_after)
                    observed.append(a)
                insight_store.save_advice(conn, schema, name, [*fresh, *observed], at=now)
                if time.monotonic() >= self._expired_at:
                    insight_store.delete_expired(conn, schema, days=self.config.retention.query_metrics_days)
                    self._expired_at = time.monotonic() + 3600
                target.set_advice_counts(insight_store.read_advice(conn, schema, name))
        except (StoreUnavailable, psycopg.Error) as exc:
            self._log(f"{name}/store", f"plans and advice not stored: {redact(str(exc)).strip()}")
            target.set_advice_counts([*known, *fresh])
            return [], False
        self._log(f"{name}/store", None)
        return changes, True

    def _log(self, key: str, problem: str | None) -> None:
        """Log a problem when it starts or changes, and when it ends."""
        before = self._problems.get(key)
        if problem is None:
            if before is not None:
                log.info("insight %s: works again", key)
                del self._problems[key]
        elif problem != before:
            log.warning("insight %s: %s", key, problem.splitlines()[0])
            self._problems[key] = problem
