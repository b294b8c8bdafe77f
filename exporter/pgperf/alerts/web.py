"""The alerts API: Alertmanager's webhook, listing, acknowledge and resolve.

Every route needs the bearer token. A malformed body is a 400 with the reason, an
oversized one 413 (``web.max_request_bytes``), an unreachable store 503 and an
unreachable Alertmanager 502 — never a 500 for bad input.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import psycopg.errors
from werkzeug.wrappers import Request, Response

from .. import audit
from .._types import MIN_YEAR, bounded_time, parse_duration
from ..audit import Actor
from ..store.client import StoreUnavailable
from ..web import Identity, WebApp, error_response, json_response
from .alertmanager import AlertmanagerError
from .service import AlertService
from .store import STATES, AlertNotFound, InvalidTransition
from .webhook import SEVERITIES, WebhookError

__all__ = ["register"]


class BadRequest(ValueError):
    pass


def _json_body(request: Request) -> Any:
    raw = request.get_data(cache=True)  # raises 413 past web.max_request_bytes
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


def _since(text: str) -> datetime:
    """An RFC 3339 time, or a duration back from now such as ``1h`` or ``2d``."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = None
    if isinstance(seconds, float):
        try:
            since = datetime.now(UTC) - timedelta(seconds=seconds)
        except (OverflowError, ValueError):  # inf, 1e300, 99999999999d; nan
            raise BadRequest(f"since: the duration {text[:40]!r} is out of range; use a duration such as 1h or 30d"
                             f" (back to the year {MIN_YEAR} at most)") from None
    else:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(f"since: expected an RFC 3339 time or a duration such as 1h, got {text[:40]!r}") from None
        since = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    try:
        return bounded_time(since, "since")
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _by(request: Request) -> str:
    body = _json_body(request)
    by = (body.get("by") if isinstance(body, dict) else None) or request.args.get("by")
    if not isinstance(by, str) or not by.strip():
        raise BadRequest('who is acting is required: {"by": "name"} in the body or ?by=name')
    if len(by) > 100:
        raise BadRequest("by: at most 100 characters")
    return by.strip()


def _actor(request: Request) -> Actor:
    identity = Identity.of(request)
    return Actor(identity.name if identity else "unknown", identity.role if identity else None, request.remote_addr)


def register(app: WebApp, service: AlertService) -> None:
    """Add the alert routes to *app*."""

    def guarded(handler: Any, role: str = "viewer") -> Any:
        def wrapper(request: Request, **values: Any) -> Response:
            if (denied := app.authorize(request, role)) is not None:
                return denied
            try:
                return handler(request, **values)  # type: ignore[no-any-return]
            except BadRequest as exc:
                return error_response(400, str(exc))
            except WebhookError as exc:
                return error_response(400, f"not an Alertmanager webhook payload: {exc}")
            except AlertNotFound as exc:
                return error_response(404, str(exc))
            except InvalidTransition as exc:
                return error_response(409, str(exc))
            except AlertmanagerError as exc:
                return error_response(502, f"{exc}; nothing was recorded")
            except StoreUnavailable as exc:
                return error_response(503, str(exc))
            except psycopg.DataError as exc:  # e.g. a NUL character PostgreSQL cannot store
                return error_response(400, f"invalid value: {str(exc).strip().splitlines()[0]}")
            except psycopg.errors.UndefinedTable:
                return error_response(503, "the store's tables are not there yet: pgperf creates them when it "
                                           "reaches the store (or run pgperf migrate)")
            except psycopg.Error as exc:  # the store misbehaves: Alertmanager retries on 5xx
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                return error_response(503, f"store error: {first}")

        wrapper.__qualname__ = handler.__qualname__
        return wrapper

    def webhook(request: Request) -> Response:
        return json_response({"status": "ok", **service.handle_webhook(_json_body(request))})

    def list_alerts(request: Request) -> Response:
        args = request.args
        states = [s for s in args.getlist("state") for s in s.split(",") if s]
        severities = [s for s in args.getlist("severity") for s in s.split(",") if s]
        for value, allowed, name in ((states, STATES, "state"), (severities, SEVERITIES, "severity")):
            wrong = [v for v in value if v not in allowed]
            if wrong:
                raise BadRequest(f"{name}: unknown value(s) {wrong}; choose from {', '.join(allowed)}")
        try:
            limit = int(args.get("limit", "500"))
        except ValueError:
            raise BadRequest("limit: expected an integer") from None
        if not 1 <= limit <= 10000:
            raise BadRequest("limit: between 1 and 10000")
        since = _since(args["since"]) if args.get("since") else None
        alerts = service.store.search(states=states, severities=severities, since=since,
                                      target=args.get("target") or None, limit=limit)
        return json_response({"alerts": [a.to_dict() for a in alerts]})

    def get_alert(request: Request, alert_id: str) -> Response:
        return json_response(service.store.get(alert_id).to_dict())

    def ack(request: Request, alert_id: str) -> Response:
        return json_response(service.acknowledge(alert_id, _by(request), _actor(request)).to_dict())

    def resolve(request: Request, alert_id: str) -> Response:
        return json_response(service.resolve(alert_id, _by(request), _actor(request)).to_dict())

    def audit_log(request: Request) -> Response:
        since = _since(request.args["since"]) if request.args.get("since") else None
        with service.store.client.connection() as conn:
            entries = audit.search(conn, service.store.client.schema, since=since,
                                   action=request.args.get("action") or None)
        return json_response({"entries": entries})

    app.add("/api/v1/alerts/webhook", guarded(webhook, "operator"), methods=("POST",))
    app.add("/api/v1/alerts", guarded(list_alerts))
    app.add("/api/v1/alerts/<alert_id>", guarded(get_alert))
    app.add("/api/v1/alerts/<alert_id>/ack", guarded(ack, "operator"), methods=("POST",))
    app.add("/api/v1/alerts/<alert_id>/resolve", guarded(resolve, "operator"), methods=("POST",))
    app.add("/api/v1/audit", guarded(audit_log, "operator"))
    app.links.append(("/api/v1/alerts", "alerts (JSON, bearer token)"))
