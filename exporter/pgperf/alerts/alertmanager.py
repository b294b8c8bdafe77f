"""A small client for Alertmanager's HTTP API v2 (silences and alerts), over requests.

Only what the lifecycle needs: create and expire a silence, list current alerts.
Errors become AlertmanagerError with the URL and the reason, never a stack trace.

``Alertmanagers`` talks to the members of one gossip cluster (an HA pair). Silences are
gossiped, so a silence written to any member reaches the others and can be read on any
of them: creating and reading go to the members in order until one succeeds. Expiring
goes to every member: a member that did not get the silence through the cluster (one
not clustered, or partitioned) must not keep silencing the alert's next episode, and a
member without the silence says so. Alerts are not gossiped: Prometheus sends every alert to every member, so a
member that has just restarted knows none until Prometheus sends them again (within its
resend delay, a minute by default). Current alerts are therefore the union of what every
member that answers holds, and an alert counts as gone only when no member has it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ..redact import redact

if TYPE_CHECKING:
    import requests

__all__ = ["AlertmanagerClient", "AlertmanagerError", "Alertmanagers", "SilenceNotFound"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds to wait for a TCP connection, at most: a member that is down or unroutable is
#: passed over quickly for the next one; a member that accepted the connection gets the
#: whole request timeout to answer.
CONNECT_TIMEOUT = 2.0


class AlertmanagerError(Exception):
    """Alertmanager could not be reached or refused the request."""


class SilenceNotFound(AlertmanagerError):
    """This Alertmanager has no silence of that id (never had, or forgot an expired one)."""


class AlertmanagerClient:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        #: The URL as messages and logs show it: without the password of ``user:pass@``.
        self.shown_url = redact(self.url)
        self.timeout = timeout
        # Imported here: requests and its dependencies cost the exporter several megabytes
        # of memory, and most exporters talk to no Alertmanager.
        import requests

        self.session: requests.Session = requests.Session()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        url = f"{self.url}/api/v2{path}"
        try:
            response = self.session.request(method, url, timeout=(min(CONNECT_TIMEOUT, self.timeout), self.timeout),
                                            **kwargs)
        except requests.RequestException as exc:
            raise AlertmanagerError(f"Alertmanager at {self.shown_url} unreachable: {type(exc).__name__}") from None
        if path.startswith("/silence/") and (response.status_code == 404 or (
                response.status_code == 500 and "silence not found" in response.text[:200])):
            # 0.25 answers 500 "silence not found", later versions 404.
            raise SilenceNotFound(f"Alertmanager at {self.shown_url} has no silence {path.rsplit('/', 1)[-1]}")
        if response.status_code >= 400:
            raise AlertmanagerError(
                f"Alertmanager at {self.shown_url} answered {response.status_code} to {method} {path}: "
                f"{redact(response.text.strip()[:200])}"
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:  # requests.JSONDecodeError: a proxy's or a login page's HTML, say
            kind = response.headers.get("Content-Type", "no content type").split(";")[0].strip()
            raise AlertmanagerError(
                f"Alertmanager at {self.shown_url} answered {method} {path} with {response.status_code} but not "
                f"JSON ({kind}): is a proxy or a login page in the way?"
            ) from None

    def create_silence(self, labels: dict[str, str], *, created_by: str, comment: str,
                       duration: timedelta) -> str:
        """Silence exactly this label set; return the silence id."""
        now = datetime.now(UTC)
        body = {
            "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in sorted(labels.items())],
            "startsAt": now.isoformat(),
            "endsAt": (now + duration).isoformat(),
            "createdBy": created_by,
            "comment": comment,
        }
        data = self._request("POST", "/silences", json=body)
        silence_id = data.get("silenceID") if isinstance(data, dict) else None
        if not silence_id:
            raise AlertmanagerError(f"Alertmanager at {self.shown_url} returned no silence id")
        return str(silence_id)

    def expire_silence(self, silence_id: str) -> None:
        self._request("DELETE", f"/silence/{silence_id}")

    def silence(self, silence_id: str) -> dict[str, Any]:
        data = self._request("GET", f"/silence/{silence_id}")
        return data if isinstance(data, dict) else {}

    def alerts(self) -> list[dict[str, Any]]:
        """Current (unresolved) alerts, silenced and inhibited ones included."""
        data = self._request("GET", "/alerts", params={"silenced": "true", "inhibited": "true", "active": "true",
                                                         "unprocessed": "true"})
        return data if isinstance(data, list) else []


class Alertmanagers:
    """The members of one Alertmanager cluster, tried in the configured order.

    Writes and silence reads go to the first member that succeeds; when every member
    fails, the AlertmanagerError names each one with its reason. A member that starts or
    stops failing is logged once, not at every request.
    """

    def __init__(self, urls: Sequence[str], timeout: float = 5.0) -> None:
        if not urls:
            raise ValueError("at least one Alertmanager URL is needed")
        self.members = tuple(AlertmanagerClient(url, timeout) for url in urls)
        self._failing: set[str] = set()
        self._lock = threading.Lock()

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(member.url for member in self.members)

    def _note(self, member: AlertmanagerClient, error: AlertmanagerError | None) -> None:
        with self._lock:
            was_failing = member.url in self._failing
            if error is not None and not was_failing:
                self._failing.add(member.url)
            elif error is None and was_failing:
                self._failing.discard(member.url)
            else:
                return
        if len(self.members) == 1:
            return  # the single Alertmanager's errors reach the caller
        if error is not None:
            log.warning("%s; using the other Alertmanagers of the cluster", error)
        else:
            log.info("Alertmanager at %s answers again", member.shown_url)

    def _first(self, what: str, call: Callable[[AlertmanagerClient], T]) -> T:
        errors: list[AlertmanagerError] = []
        for member in self.members:
            try:
                result = call(member)
            except AlertmanagerError as exc:
                self._note(member, exc)
                errors.append(exc)
                continue
            self._note(member, None)
            return result
        raise _all_failed(what, errors)

    def create_silence(self, labels: dict[str, str], *, created_by: str, comment: str,
                       duration: timedelta) -> str:
        """Silence exactly this label set on the first member that answers; return its id."""
        return self._first("create the silence", lambda member: member.create_silence(
            labels, created_by=created_by, comment=comment, duration=duration))

    def expire_silence(self, silence_id: str) -> list[str]:
        """Expire the silence on every member (expiring an expired silence does nothing);
        return the problems of the members that could not be asked, for the caller to log.

        A member that answers that it has no such silence is fine: it holds nothing back.
        Once one member has expired it, the cluster passes the expiry on to a member that
        is down now. But when no member that answers had it and one did not answer, that one
        may hold it alone (members not clustered): AlertmanagerError, as when none answers.
        """
        problems: list[AlertmanagerError] = []
        expired = False
        for member in self.members:
            try:
                member.expire_silence(silence_id)
            except SilenceNotFound:
                self._note(member, None)
            except AlertmanagerError as exc:
                self._note(member, exc)
                problems.append(exc)
            else:
                self._note(member, None)
                expired = True
        if problems and not expired:
            raise _all_failed(f"expire silence {silence_id}", problems) if len(problems) == len(self.members) \
                else AlertmanagerError(
                    f"silence {silence_id} may still be active: no Alertmanager that answered has it, and "
                    + "; ".join(str(p) for p in problems))
        return [str(p) for p in problems]

    def firing(self, labels: dict[str, str]) -> dict[str, Any] | None:
        """The current alert with exactly these labels (that is, the same fingerprint) on
        any member that answers, silenced or not; None when no member holds it. Raises
        AlertmanagerError when no member answers."""
        return next((a for a in self.alerts() if isinstance(a, dict) and a.get("labels") == labels), None)

    def silence(self, silence_id: str) -> dict[str, Any]:
        return self._first(f"read silence {silence_id}", lambda member: member.silence(silence_id))

    def alerts(self) -> list[dict[str, Any]]:
        """The current alerts of every member that answers, each once (by fingerprint)."""
        errors: list[AlertmanagerError] = []
        merged: dict[str, dict[str, Any]] = {}
        answered = False
        for member in self.members:
            try:
                current = member.alerts()
            except AlertmanagerError as exc:
                self._note(member, exc)
                errors.append(exc)
                continue
            self._note(member, None)
            answered = True
            for i, alert in enumerate(current):
                key = alert.get("fingerprint") if isinstance(alert, dict) else None
                merged.setdefault(str(key) if key else f"{member.url}#{i}", alert)
        if not answered:
            raise _all_failed("list the current alerts", errors)
        return list(merged.values())


def _all_failed(what: str, errors: list[AlertmanagerError]) -> AlertmanagerError:
    if len(errors) == 1:
        return errors[0]
    return AlertmanagerError(f"no Alertmanager could {what}: " + "; ".join(str(e) for e in errors))
