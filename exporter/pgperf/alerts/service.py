"""The alert lifecycle: notifications in, acknowledge with a silence, resolve, reconcile.

Prometheus evaluates the rules and Alertmanager routes the notifications; pgperf receives
a copy of every notification (webhook) and keeps the lifecycle in ``performance_alerts``.

* Acknowledging creates an Alertmanager silence for exactly that alert's labels first (on
  the first of ``alerts.alertmanager_urls`` that answers) and records the acknowledgment
  only if the silence exists, so a failure leaves nothing
  half-done; if recording fails, the silence is expired again.
* Resolving by hand says the problem is over, so pgperf and Prometheus must agree: while
  Alertmanager still holds the alert (Prometheus still fires it, silenced or not), resolving
  is refused (StillFiring) — it resolves by itself when the condition clears, and
  acknowledging silences it meanwhile. Otherwise the acknowledgment's silence is expired on
  every Alertmanager first (the next episode of the alert has the same labels and would be
  silenced for the rest of ``silence_duration``), then who and when are recorded. When no
  Alertmanager answers, nothing is recorded (AlertmanagerError), as for acknowledging.
* Without Alertmanager (no ``alerts.alertmanager_urls``) neither can be done: acknowledging
  records who and when only, resolving records without asking. A caller that must not do
  that silently (the command line) passes ``require_alertmanager`` and gets NoAlertmanager.
  If Alertmanager notifies again an alert resolved by hand, it is reopened as firing.
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

__all__ = ["AlertService", "NoAlertmanager", "StillFiring"]

log = logging.getLogger(__name__)

Emit = Callable[[str, Any], None]
RECONCILER = Actor("pgperf:reconciler", "operator")


class StillFiring(InvalidTransition):
    """Resolving by hand an alert that Prometheus still fires (Alertmanager holds it)."""


class NoAlertmanager(Exception):
    """Acknowledging or resolving needs Alertmanager, and none is configured."""

    def __init__(self, action: str) -> None:
        what = ("create the silence that stops its notifications" if action == "acknowledge"
                else "check that Prometheus no longer fires it and expire its silence")
        super().__init__(f"no Alertmanager is configured, so pgperf cannot {what}: set alerts.alertmanager_urls "
                         "(PGPERF_ALERTS_ALERTMANAGER_URLS, comma-separated; --alertmanager.url URL, once per "
                         "member) as for pgperf serve")
        self.action = action


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
            alert = self.store.get(event.alert_id)
            if alert.silence_id:
                self._expire(alert.silence_id)  # the next episode has the same labels
            self.emit("alert_resolved", alert)
        return {"received": len(events), "new": len(fired), "resolved": len(resolved)}

    # -- operator actions -----------------------------------------------------------------

    def acknowledge(self, alert_id: str, by: str, actor: Actor = PYTHON, *,
                    require_alertmanager: bool = False) -> PerformanceAlert:
        """Silence the alert in Alertmanager, then record who acknowledged it and when.
        Raises AlertNotFound, InvalidTransition (resolved), AlertmanagerError (no member
        created the silence: nothing recorded), NoAlertmanager (none configured and
        *require_alertmanager*)."""
        alert = self.store.get(alert_id)
        if alert.status == "acknowledged":
            return alert
        if alert.status == "resolved":
            raise InvalidTransition(f"alert {alert_id} is resolved; it cannot be acknowledged")
        if self.alertmanager is None and require_alertmanager:
            raise NoAlertmanager("acknowledge")
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

    def resolve(self, alert_id: str, by: str, actor: Actor = PYTHON, *,
                require_alertmanager: bool = False) -> PerformanceAlert:
        """Resolve the alert by hand: refused while Prometheus still fires it (StillFiring);
        else its silence is expired on every Alertmanager, then who and when are recorded.
        Raises AlertNotFound, StillFiring, AlertmanagerError (no member answered: nothing
        recorded), NoAlertmanager (none configured and *require_alertmanager*)."""
        alert = self.store.get(alert_id)
        if alert.status == "resolved":
            return alert
        if self.alertmanager is None:
            if require_alertmanager:
                raise NoAlertmanager("resolve")
        else:
            current = self.alertmanager.firing(alert.labels) if alert.labels else None
            if current is not None:
                raise StillFiring(_still_firing(alert, current))
            if alert.silence_id:
                for problem in self.alertmanager.expire_silence(alert.silence_id):
                    log.warning("silence %s of alert %s not expired on one Alertmanager (the cluster passes the "
                                "expiry on when it answers again): %s", alert.silence_id, alert_id, problem)
        updated = self.store.resolve(alert_id, by, actor=actor)
        log.info("alert %s resolved by %s%s", alert_id, by,
                 f" (silence {alert.silence_id} expired)" if alert.silence_id and self.alertmanager else "")
        self.emit("alert_resolved", updated)
        return updated

    def _expire(self, silence_id: str) -> None:
        if self.alertmanager is None:
            return
        try:
            problems = self.alertmanager.expire_silence(silence_id)
        except AlertmanagerError as exc:
            log.warning("could not expire silence %s (it ends by itself): %s", silence_id, exc)
            return
        for problem in problems:
            log.warning("silence %s not expired on one Alertmanager: %s", silence_id, problem)

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


def _still_firing(alert: PerformanceAlert, current: dict[str, Any]) -> str:
    state = current.get("status", {}).get("state") if isinstance(current.get("status"), dict) else None
    held = "silenced by its acknowledgement" if state == "suppressed" else "notifying"
    since = str(current.get("startsAt") or "")[:19].replace("T", " ")
    return (f"alert {alert.alert_id} ({alert.metric}) is still firing: Prometheus still finds its condition true "
            f"(Alertmanager holds it{f' since {since} UTC' if since else ''}, {held}), so it cannot be resolved by "
            "hand. It resolves by itself once the condition clears; acknowledge it to silence its notifications "
            "meanwhile")
