"""Scheduled reports inside ``pgperf serve`` and their optional delivery.

* daily (``reports.daily``): at ``reports.at`` (UTC) every day, the previous UTC day;
* weekly (``reports.weekly``): on Mondays at ``reports.at``, the previous seven days;
* periodic (``reports.every``): every ``every``, the last ``every``.

Daily and weekly reports have ids derived from their period, and the scheduler generates
the most recent one that is missing from the store: after a restart or an outage it
catches up once, and two pgperf processes sharing a store do not make two. A period
without any stored sample gets no report. Each new report can be POSTed as JSON to
``reports.webhook_url`` and announced with a link on Slack (``reports.slack_webhook_url_file``);
a failed delivery is logged, never fatal, and never retried into a storm.
"""

from __future__ import annotations

import gc
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from .._memory import release_free_memory
from ..config import Config
from ..store.client import StoreUnavailable
from .formatting import ms, title
from .model import Report
from .privacy import hide_query_texts
from .service import ReportService, report_id_for

__all__ = ["Job", "ReportScheduler", "deliver", "due_jobs"]

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
DELIVERY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Job:
    kind: str
    target: str
    start: datetime
    end: datetime
    report_id: str | None  # None: a fresh id (periodic reports)


def _at(config: Config) -> tuple[int, int]:
    hours, minutes = config.reports.at.split(":")
    return int(hours), int(minutes)


def due_jobs(config: Config, now: datetime, targets: list[str], default_target: str) -> list[Job]:
    """The daily and weekly reports whose time has come most recently (generated if missing)."""
    hours, minutes = _at(config)
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    fire = today + timedelta(hours=hours, minutes=minutes)
    day_end = today if now >= fire else today - DAY  # the end of the last day whose report is due
    jobs = []
    for target in targets:
        extra = None if target == default_target else target
        if config.reports.daily:
            jobs.append(Job("daily", target, day_end - DAY, day_end, report_id_for("daily", day_end, extra)))
        if config.reports.weekly:
            # Mondays (weekday 0) at `at` close the week that ended that Monday at 00:00.
            monday = today - timedelta(days=today.weekday())
            if now < monday + timedelta(hours=hours, minutes=minutes):
                monday -= timedelta(days=7)
            jobs.append(Job("weekly", target, monday - timedelta(days=7), monday, report_id_for("weekly", monday, extra)))
    return jobs


def public_url(config: Config) -> str:
    """Where readers reach this exporter: reports.public_url, else the listen address."""
    if config.reports.public_url:
        return config.reports.public_url.rstrip("/")
    host, _, port = config.web.listen_address.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    return f"http://{host}:{port}"


def deliver(config: Config, report: Report, post: Callable[..., Any] | None = None) -> list[str]:
    """Send *report* to the configured webhook and Slack; return the problems (logged too).
    *post* defaults to ``requests.post``."""
    if not (config.reports.webhook_url or config.reports.slack_webhook_url_file):
        return []  # nowhere to deliver: requests is not even imported
    # Imported here, as in the Alertmanager client, for memory: requests holds about 5 MiB
    # resident, and only a delivery needs it (most pgperf processes never deliver).
    import requests

    post = post or requests.post
    problems = []
    shown = report if config.expose_query_text else hide_query_texts(report)
    link = f"{public_url(config)}/reports/{report.report_id}"
    if config.reports.webhook_url:
        try:
            response = post(config.reports.webhook_url, json=shown.to_json(), timeout=DELIVERY_TIMEOUT,
                            headers={"X-Pgperf-Report-Id": report.report_id, "X-Pgperf-Report-Url": link})
            if response.status_code >= 300:
                problems.append(f"webhook answered HTTP {response.status_code}")
        except requests.RequestException as exc:
            problems.append(f"webhook unreachable: {type(exc).__name__}")
    if config.reports.slack_webhook_url_file:
        try:
            url = Path(config.reports.slack_webhook_url_file).read_text().strip()
        except OSError as exc:
            problems.append(f"cannot read reports.slack_webhook_url_file: {exc.strerror}")
            url = ""
        if url:
            s = shown.summary
            anomalies = len(shown.anomalies)
            text = (f"📊 {title(shown.kind, shown.report_id)} ({shown.target}): {s.total_queries:,} queries, average "
                    f"{ms(s.average_query_time_ms)}, {len(shown.recommendations)} recommendation(s), "
                    f"{anomalies} anomal{'y' if anomalies == 1 else 'ies'}. <{link}|Open the report>")
            try:
                response = post(url, json={"text": text}, timeout=DELIVERY_TIMEOUT)
                if response.status_code >= 300:
                    problems.append(f"Slack answered HTTP {response.status_code}")
            except requests.RequestException as exc:
                problems.append(f"Slack unreachable: {type(exc).__name__}")
    for problem in problems:
        log.warning("report %s: delivery failed: %s", report.report_id, problem)
    return problems


class ReportScheduler:
    """A background thread that generates the scheduled reports; see the module docstring."""

    def __init__(self, config: Config, service: ReportService, *, poll: float = 30.0) -> None:
        self.config = config
        self.service = service
        self._base_poll = poll
        every = config.reports.every
        self.poll = min(poll, every / 4) if every else poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wanted = False  # start() was called: a reload that enables reports starts the thread
        self._next_periodic: datetime | None = None
        self._done: set[str] = set()

    def apply_config(self, config: Config) -> None:
        """Take a reloaded configuration: schedule, delivery and targets apply from the next
        round; a changed ``reports.every`` restarts the periodic countdown from now."""
        old_every, self.config = self.config.reports.every, config
        every = config.reports.every
        self.poll = min(self._base_poll, every / 4) if every else self._base_poll
        if every != old_every:
            self._next_periodic = datetime.now(UTC) + timedelta(seconds=every) if every else None
        if self._wanted and self._thread is None:
            self.start()

    @property
    def enabled(self) -> bool:
        r = self.config.reports
        return r.daily or r.weekly or r.every is not None

    def targets(self) -> list[str]:
        if self.config.reports.target:
            return [self.config.reports.target]
        return [t.name for t in self.config.resolved_targets()]

    def start(self) -> None:
        self._wanted = True
        if not self.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="report-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._wanted = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        if self.config.reports.every:
            self._next_periodic = datetime.now(UTC) + timedelta(seconds=self.config.reports.every)
        while not self._stop.wait(self.poll):
            try:
                if self.run_once(datetime.now(UTC)):
                    # A report leaves cycles (its model, its rendering) that the collector
                    # would free only at its next full pass: free them now, and give the
                    # pages back to the system (pgperf._memory).
                    gc.collect()
                    release_free_memory()
            except (StoreUnavailable, psycopg.Error) as exc:
                # The store may be down or not migrated yet; the next round tries again.
                log.warning("scheduled reports: store not usable now (%s); retrying in %.0fs",
                            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, self.poll)

    def _has_samples(self, target: str, start: datetime, end: datetime) -> bool:
        with self.service.client.connection() as conn:
            row = conn.execute(sql.SQL(
                'SELECT EXISTS (SELECT 1 FROM {}.resource_metrics WHERE target = %s AND "timestamp" >= %s'
                ' AND "timestamp" < %s)').format(sql.Identifier(self.service.client.schema)),
                (target, start, end)).fetchone()
        return bool(row and row[0])

    def run_once(self, now: datetime) -> list[Report]:
        """Generate (and deliver) whatever is due at *now*; return the new reports."""
        made = []
        jobs = due_jobs(self.config, now, self.targets(), self.service.default_target())
        if self._next_periodic is not None and now >= self._next_periodic:
            every = timedelta(seconds=self.config.reports.every or 0)
            jobs += [Job("periodic", target, now - every, now, None) for target in self.targets()]
            while self._next_periodic <= now:  # missed rounds (a long pause) are skipped, not replayed
                self._next_periodic += every
        for job in jobs:
            if job.report_id is not None and (job.report_id in self._done or self.service.exists(job.report_id)):
                self._done.add(job.report_id)
                continue
            if not self._has_samples(job.target, job.start, job.end):
                if job.report_id is not None:
                    self._done.add(job.report_id)  # a past period gets no samples later
                continue
            report = self.service.generate(job.start, job.end, job.target, job.kind, report_id=job.report_id, now=now)
            if job.report_id is not None:
                self._done.add(job.report_id)
            deliver(self.config, report)
            made.append(report)
        return made
