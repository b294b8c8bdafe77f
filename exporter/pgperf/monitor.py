"""``pgperf.Monitor``: the engine of ``pgperf serve``, usable from Python.

The engine is an ``App`` (``pgperf.app``: the sampler, the store, alerts, reports); the
Monitor mirrors the original requirement's usage examples over it::

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

import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .alerts.service import AlertService
from .alerts.store import AlertStore
from .app import App
from .collectors import REGISTRY, CollectorSpec
from .config import Config, load_config
from .models import Anomaly, PerformanceAlert, PerformanceReport, QueryPerformanceMetric, ResourceMetric
from .reports.scheduler import ReportScheduler
from .reports.service import ReportService
from .sampling import Sampler, Snapshot, TargetSampler
from .store import SampleBatch, StoreClient, StoreUnavailable, StoreWriter

__all__ = ["Monitor"]


class Monitor:
    """Sampling, storage, alert lifecycle and reports for the targets of one configuration:
    the Python API over an ``App`` (``pgperf.app``), which builds and wires the parts."""

    def __init__(self, config: Config, *, registry: Sequence[CollectorSpec] = REGISTRY) -> None:
        self.app = App(config, registry=registry)

    @classmethod
    def of(cls, app: App) -> Monitor:
        """The Python API over an App built elsewhere (one that also serves HTTP, say)."""
        monitor = cls.__new__(cls)
        monitor.app = app
        return monitor

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

    # -- the parts ---------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self.app.config

    @property
    def sampler(self) -> Sampler:
        return self.app.sampler

    @property
    def store(self) -> StoreWriter | None:
        return self.app.store

    @property
    def client(self) -> StoreClient | None:
        return self.app.client

    @property
    def alerts(self) -> AlertStore | None:
        return self.app.alert_service.store if self.app.alert_service is not None else None

    @property
    def alert_service(self) -> AlertService | None:
        return self.app.alert_service

    @property
    def reports(self) -> ReportService | None:
        return self.app.reports

    @property
    def scheduler(self) -> ReportScheduler | None:
        return self.app.scheduler

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
        self.app.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sampling, write or spool what was accepted, close connections."""
        self.app.stop(timeout)

    def __enter__(self) -> Monitor:
        self.initialize()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reload(self, config: Config) -> list[str]:
        """Apply a new configuration; return the top-level keys that changed. A change to a
        setting that needs a restart rejects it whole (``pgperf.app.ReloadRejected``)."""
        return self.app.apply_config(config)

    def on(self, event: str, callback: Callable[[Any], None]) -> None:
        """Call *callback* on *event*: ``alert`` (a PerformanceAlert recorded as firing),
        ``alert_acknowledged``, ``alert_resolved``, ``sample`` (each Snapshot)."""
        self.app.events.on(event, callback)

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
        if not self.app.started:
            sampler.open()
        if sampler.latest is None:
            # Interval figures need two readings: take the baseline, let a moment pass.
            sampler.sample(wait=True)
            time.sleep(min(1.0, self.config.sampling_interval))
        sampler.sample(wait=True)
        batch = self.app.latest_batch(sampler.target.name)
        assert batch is not None  # the sample just taken
        return batch

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
        return self._report_service().generate(start, end, target, kind).performance_report()

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
