"""A small client for Alertmanager's HTTP API v2 (silences and alerts), over requests.

Only what the lifecycle needs: create and expire a silence, list current alerts.
Errors become AlertmanagerError with the URL and the reason, never a stack trace.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..redact import redact

if TYPE_CHECKING:
    import requests

__all__ = ["AlertmanagerClient", "AlertmanagerError"]


class AlertmanagerError(Exception):
    """Alertmanager could not be reached or refused the request."""


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
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise AlertmanagerError(f"Alertmanager at {self.shown_url} unreachable: {type(exc).__name__}") from None
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
