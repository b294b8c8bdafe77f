"""Parsing of Alertmanager's webhook payload (version 4) into alert events.

Pure functions with no I/O, so that any input gives either events or a WebhookError that
says what is wrong and where (``alerts[2].labels.alertname: missing``). See
https://prometheus.io/docs/alerting/latest/configuration/#webhook_config for the format.

Each event is attributed to the target it is about (``attribute``), named as in pgperf's
configuration, so that the alerts recorded for a target are the ones its reports count.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .._types import bounded_time

__all__ = ["AlertEvent", "WebhookError", "alert_id", "attribute", "event_from_alert", "parse_webhook"]

MAX_ALERTS = 5000
SEVERITIES = ("critical", "error", "warning", "info")
_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time: "no end time"


class WebhookError(ValueError):
    """The payload is not a valid Alertmanager webhook; the message locates the problem."""


@dataclass(frozen=True)
class AlertEvent:
    """One alert of a notification: firing or resolved."""

    alert_id: str
    fingerprint: str
    status: str  # firing | resolved
    name: str
    severity: str
    target: str | None
    message: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    threshold_value: float | None
    current_value: float | None


def alert_id(fingerprint: str, starts_at: datetime) -> str:
    """A short, stable id for one episode of one alert (same labels, same start)."""
    digest = hashlib.sha1(f"{fingerprint}|{starts_at.isoformat()}".encode(), usedforsecurity=False)
    return digest.hexdigest()[:16]


def attribute(labels: Mapping[str, str], targets: Sequence[str] = ()) -> str | None:
    """The target an alert with *labels* is about, given the names of pgperf's *targets*.

    The series the rules read come in three shapes (prometheus/README.md), and so do alerts:

    * with several targets in one process every series has a ``target`` label: that one;
    * scraped through ``/probe?target=NAME``, the series have no ``target`` label and the
      README's relabelling sets ``instance`` to NAME: an ``instance`` that names a target;
    * with one target the series have no ``target`` label at all, and ``instance`` is the
      exporter's address (``127.0.0.1:9187``), not the target: that one target.

    What is left, an alert without a ``target`` label while pgperf has several, is about the
    exporter itself (``PgperfExporterDown``): no target (``None``), so the reports of every
    target count it. With *targets* unknown (empty), the ``target`` label or else the
    ``instance``.
    """
    if label := labels.get("target"):
        return label
    instance = labels.get("instance")
    if not targets:
        return instance
    if instance in targets:
        return instance
    return targets[0] if len(targets) == 1 else None


def _time(value: Any, where: str, *, optional: bool = False) -> datetime | None:
    if value in (None, "", _ZERO_TIME) and optional:
        return None
    if not isinstance(value, str):
        raise WebhookError(f"{where}: expected an RFC 3339 time string, got {type(value).__name__}")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Go writes nanoseconds; Python parses up to microseconds.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits):]
        text = f"{head}.{digits[:6]}{tz}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise WebhookError(f"{where}: not an RFC 3339 time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed.year <= 1 and optional:
        return None
    try:
        return bounded_time(parsed, where)
    except ValueError as exc:
        raise WebhookError(str(exc)) from None


def _strings(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WebhookError(f"{where}: expected an object of strings")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise WebhookError(f"{where}.{key}: expected a string value")
        if "\x00" in key or "\x00" in item:
            raise WebhookError(f"{where}.{key}: NUL characters are not allowed")
        out[key] = item
    return out


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        return None
    return value if math.isfinite(value) and abs(value) < 1e12 else None


def event_from_alert(raw: Any, where: str, status: str | None = None, *, targets: Sequence[str] = ()) -> AlertEvent:
    """One alert object (webhook or Alertmanager API v2 shape) to an event, attributed to
    one of *targets* (see ``attribute``)."""
    if not isinstance(raw, Mapping):
        raise WebhookError(f"{where}: expected an object")
    labels = _strings(raw.get("labels"), f"{where}.labels")
    annotations = _strings(raw.get("annotations"), f"{where}.annotations")
    name = labels.get("alertname")
    if not name:
        raise WebhookError(f"{where}.labels.alertname: missing")
    state = status or raw.get("status")
    if state not in ("firing", "resolved"):
        raise WebhookError(f"{where}.status: expected 'firing' or 'resolved', got {str(state)[:20]!r}")
    starts = _time(raw.get("startsAt"), f"{where}.startsAt")
    assert starts is not None
    ends = _time(raw.get("endsAt"), f"{where}.endsAt", optional=True)
    fingerprint = raw.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        # Older senders omit it: derive one from the sorted labels, as Alertmanager does.
        fingerprint = hashlib.sha1(repr(sorted(labels.items())).encode(), usedforsecurity=False).hexdigest()[:16]
    severity = labels.get("severity", "warning")[:20]
    message = annotations.get("summary") or annotations.get("description") or name
    return AlertEvent(
        alert_id=alert_id(fingerprint[:64], starts),
        fingerprint=fingerprint[:64],
        status=state,
        name=name[:100],
        severity=severity,
        target=attribute(labels, targets),
        message=message,
        labels=labels,
        annotations=annotations,
        starts_at=starts,
        ends_at=ends,
        threshold_value=_number(annotations.get("threshold")),
        current_value=_number(annotations.get("value")),
    )


def parse_webhook(payload: Any, *, targets: Sequence[str] = ()) -> list[AlertEvent]:
    """Validate a decoded webhook body and return its alerts as events, each attributed to
    one of *targets*, the names of pgperf's targets (see ``attribute``)."""
    if not isinstance(payload, Mapping):
        raise WebhookError("body: expected a JSON object (an Alertmanager webhook notification)")
    version = payload.get("version")
    if version != "4":
        raise WebhookError(f"version: expected \"4\" (Alertmanager webhook format), got {str(version)[:20]!r}")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise WebhookError("alerts: expected a list")
    if len(alerts) > MAX_ALERTS:
        raise WebhookError(f"alerts: {len(alerts)} alerts in one notification; at most {MAX_ALERTS} are accepted")
    return [event_from_alert(raw, f"alerts[{i}]", targets=targets) for i, raw in enumerate(alerts)]
