"""The alert lifecycle: notifications in, acknowledge with a silence, resolve, reconcile.

Prometheus evaluates the rules and Alertmanager routes the notifications; pgperf receives
a copy of every notification (webhook) and keeps the lifecycle in ``performance_alerts``.

* Acknowledging creates an Alertmanager silence for exactly that alert's labels first (on
  the first of ``alerts.alertmanager_urls`` that answers) and records the acknowledgment
  only if the silence exists, so a failure leaves nothing
  half-done; if recording fails, the silence is expired again.
* Resolving by hand records who and when and expires the acknowledgment's silence.
* Alertmanager does not send resolved notifications for silenced alerts, so a reconciler
  compares open alerts with Alertmanager's current ones (those of every member that
  answers, see ``Alertmanagers``): an alert absent for
  ``resolve_after`` is resolved by ``alertmanager``. It also records alerts whose
  notification pgperf missed (for example while it was restarting).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ..audit import PYTHON, Actor
from ..config import Config
from ..models import PerformanceAlert
from ..store.client import StoreUnavailable
from .alertmanager import AlertmanagerError, Alertmanagers
from .store import AlertStore, InvalidTransition
from .webhook import WebhookError, event_from_alert, parse_webhook

__all__ = ["AlertService"]

log = logging.getLogger(__name__)

Emit = Callable[[str, Any], None]
RECONCILER = Actor("pgperf:reconciler", "operator")


class AlertService:
    def __init__(self, store: AlertStore, config: Config, emit: Emit = lambda event, value: None) -> None:
        self.store = store
        self.settings = config.alerts
        # Alerts are recorded for the target they are about, named as in the configuration.
        self.targets = tuple(t.name for t in config.resolved_targets())
        self.emit = emit
        urls = self.settings.alertmanagers
        self.alertmanager = Alertmanagers(urls, self.settings.request_timeout) if urls else None
        self._absent_since: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reconcile_failing = False
        self._started = False

    def apply_config(self, config: Config) -> None:
        self.settings = config.alerts
        self.targets = tuple(t.name for t in config.resolved_targets())
        urls = self.settings.alertmanagers
        if not urls:
            self.alertmanager = None
        elif self.alertmanager is None or self.alertmanager.urls != urls:
            self.alertmanager = Alertmanagers(urls, self.settings.request_timeout)
        if self._started and self._thread is None:
            self.start()  # reconciliation was off until now

    # -- intake ---------------------------------------------------------------------------

    def handle_webhook(self, payload: Any) -> dict[str, int]:
        """Record one Alertmanager notification. Raises WebhookError for a bad payload."""
        events = parse_webhook(payload, targets=self.targets)
        fired = self.store.record(events)
        for alert in fired:
            log.info("alert %s fired: %s %s (%s)", alert.alert_id, alert.severity, alert.metric, alert.message)
            self.emit("alert", alert)
        resolved = [e for e in events if e.status == "resolved"]
        for event in resolved:
            self.emit("alert_resolved", self.store.get(event.alert_id))
        return {"received": len(events), "new": len(fired), "resolved": len(resolved)}

    # -- operator actions -----------------------------------------------------------------

    def acknowledge(self, alert_id: str, by: str, actor: Actor = PYTHON) -> PerformanceAlert:
        alert = self.store.get(alert_id)
        if alert.status == "acknowledged":
            return alert
        if alert.status == "resolved":
            raise InvalidTransition(f"alert {alert_id} is resolved; it cannot be acknowledged")
        silence_id = None
        if self.alertmanager is not None and alert.labels:
            # Raises AlertmanagerError: nothing recorded yet, nothing to undo.
            silence_id = self.alertmanager.create_silence(
                alert.labels, created_by=by, duration=timedelta(seconds=self.settings.silence_duration),
                comment=f"Acknowledged in pgperf by {by} (alert {alert_id}: {alert.message})"[:500],
            )
        try:
            updated = self.store.acknowledge(alert_id, by, silence_id=silence_id, actor=actor)
        except BaseException:
            if silence_id is not None:
                self._expire(silence_id)
            raise
        log.info("alert %s acknowledged by %s%s", alert_id, by, f" (silence {silence_id})" if silence_id else "")
        self.emit("alert_acknowledged", updated)
        return updated

    def resolve(self, alert_id: str, by: str, actor: Actor = PYTHON) -> PerformanceAlert:
        updated = self.store.resolve(alert_id, by, actor=actor)
        if updated.silence_id:
            self._expire(updated.silence_id)
        log.info("alert %s resolved by %s", alert_id, by)
        self.emit("alert_resolved", updated)
        return updated

    def _expire(self, silence_id: str) -> None:
        if self.alertmanager is None:
            return
        try:
            self.alertmanager.expire_silence(silence_id)
        except AlertmanagerError as exc:
            log.warning("could not expire silence %s (it ends by itself): %s", silence_id, exc)

    # -- reconciliation -----------------------------------------------------------------------

    def reconcile(self, now: float | None = None) -> int:
        """Compare open alerts with Alertmanager's; return how many were resolved."""
        if self.alertmanager is None:
            return 0
        now = time.monotonic() if now is None else now
        try:
            current = self.alertmanager.alerts()
        except AlertmanagerError as exc:
            if not self._reconcile_failing:
                log.warning("alert reconciliation paused: %s", exc)
                self._reconcile_failing = True
            return 0
        if self._reconcile_failing:
            log.info("alert reconciliation resumed: Alertmanager reachable")
            self._reconcile_failing = False
        events = []
        for i, raw in enumerate(current):
            try:
                events.append(event_from_alert(raw, f"alertmanager alert {i}", status="firing", targets=self.targets))
            except WebhookError as exc:
                log.debug("ignoring an alert Alertmanager returned: %s", exc)
        for alert in self.store.record(events):
            self.emit("alert", alert)
        present = {e.fingerprint for e in events}
        resolved = 0
        for alert_id, fingerprint, _status, silence_id in self.store.open_alerts():
            if fingerprint in present:
                self._absent_since.pop(alert_id, None)
                continue
            since = self._absent_since.setdefault(alert_id, now)
            if now - since < self.settings.resolve_after:
                continue
            try:
                updated = self.store.resolve(alert_id, "alertmanager", actor=RECONCILER)
            except InvalidTransition:
                continue
            self._absent_since.pop(alert_id, None)
            if silence_id:
                self._expire(silence_id)
            log.info("alert %s resolved: no longer active in Alertmanager", alert_id)
            self.emit("alert_resolved", updated)
            resolved += 1
        return resolved

    def start(self) -> None:
        self._started = True
        if self.alertmanager is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="alert-reconciler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.reconcile_interval):
            try:
                self.reconcile()
            except StoreUnavailable as exc:
                log.warning("alert reconciliation skipped: %s", exc)
            except Exception:  # one bad round must not end the thread: the next one may do
                log.exception("alert reconciliation round failed; trying again in %gs",
                              self.settings.reconcile_interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.request_timeout + 5)
