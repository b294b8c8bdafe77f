"""``pgperf.Monitor``: the engine of ``pgperf serve``, usable from Python.

It owns the sampler (one thread per target), the store writer and the store client, and
mirrors the original requirement's usage examples::

    monitor = Monitor.for_profile("production", "postgresql://pgperf@db/postgres")
    monitor.on("alert", lambda alert: print(f"Alert: {alert.message}"))
    monitor.initialize()                        # create/migrate the tables, start sampling
    queries = monitor.track_query_performance()  # sample now: statements of the interval
    resources = monitor.monitor_resource_usage()
    monitor.acknowledge_alert(alert_id, "admin-user")
    monitor.resolve_alert(alert_id, "admin-user")
    anomalies = monitor.detect_anomalies()          # the last hour against its baseline
    report = monitor.generate_performance_report(start_date, end_date)
    monitor.stop()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .alerts.service import AlertService
from .alerts.store import AlertStore
from .collectors import REGISTRY, CollectorSpec
from .config import Config, load_config
from .models import Anomaly, PerformanceAlert, PerformanceReport, QueryPerformanceMetric, ResourceMetric
from .sampling import Sampler, Snapshot, TargetSampler
from .store import BatchBuilder, SampleBatch, StoreClient, StoreUnavailable, StoreWriter

if TYPE_CHECKING:
    from .reports.scheduler import ReportScheduler
    from .reports.service import ReportService

__all__ = ["EVENTS", "RESTART_KEYS", "Monitor", "ReloadRejected"]


class ReloadRejected(Exception):
    """The new configuration changes keys that need a restart; nothing was applied."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(f"these settings need a restart, so nothing was reloaded: {', '.join(keys)}")
        self.keys = keys

log = logging.getLogger(__name__)

#: Top-level keys whose change needs a restart (new connections, sockets or files).
RESTART_KEYS = ("dsn", "target_name", "targets", "store", "web", "connection")

#: Events ``Monitor.on`` accepts.
EVENTS = ("alert", "alert_acknowledged", "alert_resolved", "sample")


class Monitor:
    """Sampling, storage and alert lifecycle for the targets of one configuration."""

    def __init__(self, config: Config, *, registry: Sequence[CollectorSpec] = REGISTRY) -> None:
        self.config = config
        self._callbacks: dict[str, list[Callable[[Any], None]]] = defaultdict(list)
        self._builder = BatchBuilder(config.store.max_query_rows)
        self._builder_lock = threading.Lock()
        self._batches: dict[str, SampleBatch] = {}
        self.store: StoreWriter | None = StoreWriter(config) if config.store.enabled else None
        self.client: StoreClient | None = StoreClient(config) if config.store.enabled else None
        self.alerts: AlertStore | None = AlertStore(self.client) if self.client else None
        self.alert_service: AlertService | None = (
            AlertService(self.alerts, config, emit=self.emit) if self.alerts else None
        )
        self.sampler = Sampler(config, listeners=(self._on_snapshot,), registry=registry)
        self.reports: ReportService | None = None
        self.scheduler: ReportScheduler | None = None
        if self.client is not None:
            # Imported here: plotly and the report code load only where reports are possible.
            from .reports.scheduler import ReportScheduler
            from .reports.service import ReportService

            self.reports = ReportService(config, self.client)
            self.scheduler = ReportScheduler(config, self.reports)
        self._started = False

    @classmethod
    def for_profile(
        cls,
        profile: str,
        dsn: str | None = None,
        *,
        store_dsn: str | None = None,
        config_file: str | None = None,
        env: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> Monitor:
        """A monitor with a built-in profile's values; *settings* override any key
        (``sampling_interval=5``, ``store={"schema": "monitoring"}``, ...). ``PGPERF_*``
        environment variables apply as for the command line (pass ``env={}`` to ignore them).
        """
        flags: dict[str, Any] = {"profile": profile, **settings}
        if dsn is not None:
            flags["dsn"] = dsn
        if store_dsn is not None:
            flags.setdefault("store", {})["dsn"] = store_dsn
        return cls(load_config(config_file=config_file, flags=flags, env=os.environ if env is None else env))

    # -- lifecycle ---------------------------------------------------------------------

    def initialize(self) -> None:
        """Create or migrate the monitoring tables, then start sampling in the background.

        Raises StoreUnavailable when the store cannot be reached (``pgperf serve`` starts
        anyway and spools; a program asking to initialise wants to know).
        """
        if self.client is not None:
            self.client.migrate()
        self.start()

    def start(self) -> None:
        if self._started:
            return
        if self.store is not None:
            self.store.start()
        self.sampler.start()
        if self.alert_service is not None:
            self.alert_service.start()
        if self.scheduler is not None:
            self.scheduler.start()
        self._started = True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sampling, write or spool what was accepted, close connections."""
        if self.alert_service is not None:
            self.alert_service.stop()
        if self.scheduler is not None:
            self.scheduler.stop(timeout)
        self.sampler.stop(timeout)
        if self.store is not None:
            self.store.stop(timeout)
        if self.client is not None:
            self.client.close()
        self._started = False

    def __enter__(self) -> Monitor:
        self.initialize()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reload(self, config: Config) -> list[str]:
        """Apply a new configuration; return the top-level keys that changed.

        Thresholds, profile, sampling interval, collectors, databases, retention, alerts,
        reports, API tokens and log level change in place; a change to a key of RESTART_KEYS
        rejects the whole reload (ReloadRejected) rather than applying half of it.
        """
        old = self.config.model_dump()  # python mode: secrets compare by value
        new = config.model_dump()
        changed = sorted(k for k in new if new[k] != old.get(k))
        needs_restart = [k for k in changed if k in RESTART_KEYS]
        if needs_restart:
            raise ReloadRejected(needs_restart)
        self.config = config
        self.sampler.apply_config(config)
        if self.store is not None:
            self.store.config = config
        if self.alert_service is not None:
            self.alert_service.apply_config(config)
        if self.reports is not None:
            self.reports.apply_config(config)
        if self.scheduler is not None:
            self.scheduler.apply_config(config)
        logging.getLogger().setLevel(config.log_level.upper())
        return changed

    # -- events --------------------------------------------------------------------------

    def on(self, event: str, callback: Callable[[Any], None]) -> None:
        """Call *callback* on *event*: ``alert`` (a PerformanceAlert recorded as firing),
        ``alert_acknowledged``, ``alert_resolved``, ``sample`` (each Snapshot)."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; choose one of {', '.join(EVENTS)}")
        self._callbacks[event].append(callback)

    def emit(self, event: str, value: Any) -> None:
        for callback in self._callbacks.get(event, ()):
            try:
                callback(value)
            except Exception:  # a user's callback must not break sampling
                log.exception("callback for %r failed", event)

    def _on_snapshot(self, snap: Snapshot) -> None:
        with self._builder_lock:
            batch = self._builder.build(snap)
            self._batches[snap.target] = batch
        if self.store is not None:
            self.store.submit(batch)
        self.emit("sample", snap)

    # -- sampling on demand -----------------------------------------------------------------

    def _target(self, target: str | None) -> TargetSampler:
        if target is None:
            return next(iter(self.sampler.targets.values()))
        try:
            return self.sampler.targets[target]
        except KeyError:
            raise KeyError(f"unknown target {target!r}; configured: {', '.join(self.sampler.targets)}") from None

    def _sample_now(self, target: str | None) -> SampleBatch:
        sampler = self._target(target)
        if not self._started:
            sampler.open()
        if sampler.latest is None:
            # Interval figures need two readings: take the baseline, let a moment pass.
            sampler.sample(wait=True)
            time.sleep(min(1.0, self.config.sampling_interval))
        sampler.sample(wait=True)
        with self._builder_lock:
            return self._batches[sampler.target.name]

    def track_query_performance(self, target: str | None = None) -> list[QueryPerformanceMetric]:
        """Sample now; return the statements that ran since the previous sample (on the
        first call, since a baseline sample taken one second earlier)."""
        return [row.metric() for row in self._sample_now(target).queries]

    def monitor_resource_usage(self, target: str | None = None) -> ResourceMetric:
        """Sample now; return the host and connection figures of this sample."""
        return self._sample_now(target).resource.metric()

    # -- alerts -------------------------------------------------------------------------------

    def _alert_service(self) -> AlertService:
        if self.alert_service is None:
            raise StoreUnavailable("the sample store is disabled (store.enabled: false); alerts live in it")
        return self.alert_service

    def list_alerts(self, **filters: Any) -> list[PerformanceAlert]:
        """Alerts from performance_alerts; filters: states, severities, since, target, limit."""
        return self._alert_service().store.search(**filters)

    def acknowledge_alert(self, alert_id: str, by: str) -> PerformanceAlert:
        """Record that *by* acknowledged the alert; with ``alerts.alertmanager_url``, first
        silence it in Alertmanager (if that fails, nothing is recorded)."""
        return self._alert_service().acknowledge(alert_id, by)

    def resolve_alert(self, alert_id: str, by: str) -> PerformanceAlert:
        """Record that *by* resolved the alert (and expire its acknowledgment's silence)."""
        return self._alert_service().resolve(alert_id, by)

    # -- reports --------------------------------------------------------------------------

    def _report_service(self) -> ReportService:
        if self.reports is None:
            raise StoreUnavailable("the sample store is disabled (store.enabled: false); reports are built from it")
        return self.reports

    def generate_performance_report(self, start: datetime, end: datetime, target: str | None = None,
                                    kind: str = "on_demand") -> PerformanceReport:
        """Build the report of ``[start, end)`` (aware datetimes) from the store, store it in
        performance_reports and return it; ``report.data`` is its JSON form and
        ``pgperf.reports.render(report.data, "text")`` its text."""
        return self._report_service().generate(start, end, target, kind)

    def detect_anomalies(self, start: datetime | None = None, end: datetime | None = None,
                         target: str | None = None) -> list[Anomaly]:
        """Statements and resource series whose values in ``[start, end)`` (default: the last
        hour) are outliers against their own baseline; see ``pgperf.reports.anomalies``."""
        end = end or datetime.now(UTC)
        start = start or end - timedelta(hours=1)
        return self._report_service().detect_anomalies(start, end, target)

    # -- for the exporter ------------------------------------------------------------------

    def snapshots(self) -> list[Snapshot]:
        return self.sampler.snapshots()
