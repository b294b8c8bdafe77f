"""The composition root: builds pgperf's parts from a Config, wires them together, and owns
what concerns them all — configuration reload and the audit log of reloads.

The parts: the sampler (one thread per target); the store (its writer and a client); the
alert lifecycle; reports (their service and schedule); query insight (wait sampling between
samples, plans and advice on its own schedule); and, for serving, the HTTP application with
the routes of each feature. Data moves one way: each snapshot of the
sampler becomes a batch for the store writer and the next ``/metrics``; alerts and reports
read the store.

``pgperf serve`` runs an App behind a web server; ``pgperf.Monitor`` is the Python API
over one.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from werkzeug.wrappers import Request, Response

from . import audit, console
from ._memory import release_free_memory
from .alerts import routes as alert_routes
from .alerts.service import AlertService
from .alerts.store import AlertStore
from .audit import Actor
from .collectors import REGISTRY, CollectorSpec
from .config import Config, ConfigError, TargetFiles, with_file_targets
from .exposition import MetricsCache
from .http.app import WebApp, WebServer, json_response
from .http.auth import actor_of
from .http.errors import BadRequest, Conflict, NotFound, first_line
from .http.webconfig import WebConfig
from .insight import routes as insight_routes
from .insight.service import InsightService
from .reports import routes as report_routes
from .reports.scheduler import ReportScheduler
from .reports.service import ReportService
from .sampling import Sampler, Snapshot
from .store import BatchBuilder, SampleBatch, StoreClient, StoreUnavailable, StoreWriter
from .store.target_settings import SettingsRecorder

__all__ = ["EVENTS", "RESTART_KEYS", "App", "ConfigSource", "Events", "ReloadRejected"]

log = logging.getLogger(__name__)

#: Top-level keys whose change needs a restart (new connections, sockets or files).
#: Targets are added, changed and removed in place (``targets``, the target files).
RESTART_KEYS = ("dsn", "target_name", "store", "web", "connection")

#: Events ``Events.on`` accepts.
EVENTS = ("alert", "alert_acknowledged", "alert_resolved", "sample")


class ReloadRejected(Exception):
    """The new configuration changes keys that need a restart; nothing was applied."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(f"these settings need a restart, so nothing was reloaded: {', '.join(keys)}")
        self.keys = keys


@dataclass(frozen=True)
class ConfigSource:
    """Where a reload reads the configuration again: *load* re-reads the file and the
    environment; *file* names the file for the audit log."""

    load: Callable[[], Config]
    file: str | None = None


class Events:
    """Callbacks by event: ``alert`` (a PerformanceAlert recorded as firing),
    ``alert_acknowledged``, ``alert_resolved``, ``sample`` (each Snapshot)."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[[Any], None]]] = defaultdict(list)

    def on(self, event: str, callback: Callable[[Any], None]) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; choose one of {', '.join(EVENTS)}")
        self._callbacks[event].append(callback)

    def emit(self, event: str, value: Any) -> None:
        for callback in self._callbacks.get(event, ()):
            try:
                callback(value)
            except Exception:  # a user's callback must not break sampling
                log.exception("callback for %r failed", event)


class App:
    """Every part of pgperf for one configuration.

    Raises SpoolLocked when another process uses the store's spool directory.
    """

    def __init__(self, config: Config, *, web_config: WebConfig | None = None,
                 source: ConfigSource | None = None, registry: Sequence[CollectorSpec] = REGISTRY) -> None:
        #: The configuration as given (file, environment, flags); ``config`` adds the
        #: targets of its target files.
        self.base_config = config
        if config.target_files and not config.targets and config.store.enabled and config.store.dsn is None:
            key = "targets_file" if config.targets_file else "targets_dir"
            raise ConfigError([f"{key}: every target comes from target files, so the sample store has no default "
                               "database: set store.dsn (--store-dsn) or disable the store (--no-store)"])
        self.target_files = TargetFiles()
        self._reload_lock = threading.RLock()
        config, problems = self._with_target_files(config)
        if problems:  # at start, a bad target file is a bad configuration
            raise ConfigError(list(problems))
        if not config.resolved_targets():
            where = " and ".join(f"{key} {value}" for key, value in (("targets_file", config.targets_file),
                                                                       ("targets_dir", config.targets_dir)) if value)
            raise ConfigError([f"{where}: no target: add a target file with 'targets:' (or set targets), "
                               "then start pgperf"])
        self.config = config
        #: The problems of the target files refused at the last reading (logged too).
        self.target_file_problems: tuple[str, ...] = ()
        self.web_config = web_config
        self.source = source
        self.events = Events()
        self._builder = BatchBuilder(config.store.max_query_rows)
        self._builder_lock = threading.Lock()
        self._batches: dict[str, SampleBatch] = {}
        self.store: StoreWriter | None = StoreWriter(config) if config.store.enabled else None
        self.client: StoreClient | None = StoreClient(config) if config.store.enabled else None
        self.alert_service: AlertService | None = None
        self.reports: ReportService | None = None
        self.scheduler: ReportScheduler | None = None
        #: Records the thresholds the targets are sampled with, for their reports.
        self.settings_recorder: SettingsRecorder | None = None
        if self.client is not None:
            self.settings_recorder = SettingsRecorder(self.client)
            self.alert_service = AlertService(AlertStore(self.client), config, emit=self.events.emit)
            self.reports = ReportService(config, self.client)
            self.scheduler = ReportScheduler(config, self.reports)
        self.insight = InsightService(config, self.client)
        self.sampler = Sampler(config, listeners=(self._on_snapshot,), registry=registry,
                               between=self.insight.between)
        self.insight.attach(self.sampler)  # its pools and connection budget
        self._web: WebApp | None = None
        self._started = False
        self._watch_stop = threading.Event()
        self._watch: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the store writer, sampling, alert reconciliation and the report schedule.
        An unreachable store does not stop sampling: samples are spooled."""
        if self._started:
            return
        if self.store is not None:
            self.store.start()
        if self.settings_recorder is not None:
            self.settings_recorder.note(self.config)
            self.settings_recorder.start()
        self.sampler.start()
        self.insight.start()
        if self.alert_service is not None:
            self.alert_service.start()
        if self.scheduler is not None:
            self.scheduler.start()
        self._started = True
        self._watch_target_files()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sampling, write or spool what was accepted, close connections."""
        self._watch_stop.set()
        if self._watch is not None:
            self._watch.join(timeout)
            self._watch = None
        if self.alert_service is not None:
            self.alert_service.stop()
        if self.scheduler is not None:
            self.scheduler.stop(timeout)
        self.insight.stop(timeout)
        if self.settings_recorder is not None:
            self.settings_recorder.stop()
        self.sampler.stop(timeout)
        if self.store is not None:
            self.store.stop(timeout)
        if self.client is not None:
            self.client.close()
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    def _on_snapshot(self, snap: Snapshot) -> None:
        with self._builder_lock:
            batch = self.insight.with_waits(self._builder.build(snap), snap)
            self._batches[snap.target] = batch
        self.insight.observe(snap)
        if self.store is not None:
            self.store.submit(batch)
        self.events.emit("sample", snap)

    def latest_batch(self, target: str) -> SampleBatch | None:
        """The store rows of *target*'s latest sample."""
        with self._builder_lock:
            return self._batches.get(target)

    # -- HTTP ------------------------------------------------------------------------------

    @property
    def web(self) -> WebApp:
        """The HTTP application with every route, built on first use (a program using only
        the Python API never renders /metrics)."""
        if self._web is None:
            self._web = self._build_web()
        return self._web

    def _build_web(self) -> WebApp:
        store = self.store
        metrics = MetricsCache(self.sampler.snapshots, self.config, store.families if store else (lambda: ()))
        if store is not None:
            metrics.set_extra_key(lambda: store.version)
        # Render each new sample in the sampler's thread, so that no scrape waits for it; then
        # give the memory freed meanwhile back to the system (see pgperf._memory).
        self.events.on("sample", lambda _snapshot: metrics.refresh())
        self.events.on("sample", lambda _snapshot: release_free_memory())
        web = WebApp(self.config, self.sampler, metrics, self.web_config)
        if store is not None:
            web.liveness.append(lambda: None if store.alive else "store writer thread stopped: samples are not stored")
        web.add("/-/reload", self._reload_route, methods=("POST",), role="operator")
        if self.alert_service is not None:
            alert_routes.register(web, self.alert_service)
        report_routes.register(web, self.reports)
        insight_routes.register(web, self.client)
        console.register(web, self.sampler, self.events.on, alerts=self.alert_service, client=self.client)
        return web

    def server(self, address: str | None = None) -> WebServer:
        """A web server for ``web`` on *address* (default: ``web.listen_address``), not started."""
        return WebServer(self.web, address or self.config.web.listen_address, threads=self.config.web.threads)

    def _reload_route(self, request: Request) -> Response:
        """``POST /-/reload`` (operator): re-read the configuration file and environment."""
        if self.source is None:
            raise NotFound("configuration reload is only available in pgperf serve")
        try:
            changed = self.reload(actor_of(request))
        except ConfigError as exc:
            raise BadRequest("invalid configuration; nothing was reloaded", problems=exc.problems) from None
        except ReloadRejected as exc:
            raise Conflict(str(exc), keys=exc.keys) from None
        answer: dict[str, Any] = {"status": "reloaded", "changed": changed}
        if self.target_file_problems:
            answer["refused_target_files"] = list(self.target_file_problems)
        return json_response(answer)

    # -- target files ------------------------------------------------------------------------

    def _with_target_files(self, config: Config) -> tuple[Config, tuple[str, ...]]:
        """*config* with the targets of its target files, and the problems of the files
        refused (whose targets stay as they were)."""
        if not config.target_files:
            return config, ()
        read = self.target_files.read(config)
        return with_file_targets(config, read.targets), read.problems

    def _watch_target_files(self) -> None:
        """Check the target files every ``targets_check_interval`` while the configuration has any."""
        if self._watch is not None or not self.base_config.target_files:
            return
        self._watch_stop.clear()
        self._watch = threading.Thread(target=self._watch_loop, name="targets-watch", daemon=True)
        self._watch.start()

    def _watch_loop(self) -> None:
        while not self._watch_stop.wait(self.base_config.targets_check_interval):
            base = self.base_config
            if not base.target_files or not self.target_files.changed(base):
                continue
            try:
                self.apply_config(base)
            except ReloadRejected as exc:  # the first static target's DSN is the store's
                log.error("target files changed, not applied: %s", exc)

    # -- configuration reload ----------------------------------------------------------------

    def apply_config(self, config: Config) -> list[str]:
        """Apply a new configuration (with the targets of its target files, read again);
        return the top-level keys that changed.

        Thresholds, profile, sampling interval, collectors, databases, targets, retention,
        alerts, reports, API tokens and log level change in place; a change to a key of
        RESTART_KEYS rejects the whole configuration (ReloadRejected) rather than applying
        half of it. A target file with a problem is refused on its own (logged): its
        targets stay as they were and the rest is applied.
        """
        with self._reload_lock:
            return self._apply(config)

    def _apply(self, base: Config) -> list[str]:
        config, problems = self._with_target_files(base)
        for problem in problems:
            log.error("target file refused, its targets stay as they were: %s", problem)
        self.target_file_problems = problems
        old = self.config.model_dump()  # python mode: secrets compare by value
        new = config.model_dump()
        changed = sorted(k for k in new if new[k] != old.get(k))
        needs_restart = [k for k in changed if k in RESTART_KEYS]
        if self.store is not None and "store" not in needs_restart and config.store_dsn() != self.config.store_dsn():
            needs_restart.append("store")  # the store's default database is the first target's
        if needs_restart:
            raise ReloadRejected(needs_restart)
        self.base_config = base
        self.config = config
        added, removed = self.sampler.apply_config(config)
        self.insight.apply_config(config)
        with self._builder_lock:
            for name in set(removed) - set(added):
                self._batches.pop(name, None)
        if self.store is not None:
            self.store.config = config
        if self.alert_service is not None:
            self.alert_service.apply_config(config)
        if self.reports is not None:
            self.reports.apply_config(config)
        if self.settings_recorder is not None and self._started:
            self.settings_recorder.note(config)  # a row only if the thresholds changed
        if self.scheduler is not None:
            self.scheduler.apply_config(config)
        if self._web is not None:
            self._web.apply_config(config)
        logging.getLogger().setLevel(config.log_level.upper())
        if self._started:
            self._watch_target_files()
        return changed

    def reload(self, actor: Actor) -> list[str]:
        """Read the configuration again from its source, apply it, and record the reload
        (applied or refused, by *actor*) in the audit log. Raises ConfigError or
        ReloadRejected (nothing applied), LookupError without a source."""
        if self.source is None:
            raise LookupError("this pgperf has no configuration source to reload from")
        detail: dict[str, Any] = {"config_file": self.source.file}
        try:
            changed = self.apply_config(self.source.load())
        except (ConfigError, ReloadRejected) as exc:
            detail.update(result="refused", reason=str(exc))
            log.error("configuration reload by %s refused: %s", actor.name, exc)
            self.audit(actor, "config_reload", self.source.file, detail)
            raise
        detail.update(result="applied", changed=changed)
        log.info("configuration reloaded by %s; changed: %s", actor.name, ", ".join(changed) or "nothing")
        self.audit(actor, "config_reload", self.source.file, detail)
        return changed

    # -- audit log ------------------------------------------------------------------------

    def audit(self, actor: Actor, action: str, subject: str | None, detail: dict[str, Any]) -> None:
        """Record *action* in the audit log. A failure (store down, read-only, permission
        denied) is logged and does not undo or stop what was done: the caller carries on.
        (Acknowledging and resolving record their rows themselves, in the transaction of the
        change.)"""
        if self.client is None:
            return
        outcome = detail.get("result")
        try:
            with self.client.connection() as conn:
                audit.record(conn, self.client.schema, actor, action, subject, detail)
        except StoreUnavailable as exc:
            log.error("%s by %s (%s) not recorded in the audit log: %s", action, actor.name, outcome, exc)
        except psycopg.Error as exc:
            log.error("%s by %s (%s) not recorded in the audit log: the store refused the row (%s: %s)",
                      action, actor.name, outcome, type(exc).__name__, first_line(exc))
