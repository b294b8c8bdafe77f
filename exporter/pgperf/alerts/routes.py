"""The alerts API: Alertmanager's webhook, listing, acknowledge and resolve, the audit log.

Every route needs an API token (the webhook, acknowledging, resolving and the audit log an
operator's). A malformed body is a 400 with the reason, an oversized one 413
(``web.max_request_bytes``), an unreachable store 503 and an unreachable Alertmanager
502 — never a 500 for bad input; ``http.errors`` holds the mapping.
"""

from __future__ import annotations

from datetime import datetime

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from .. import audit
from ..http.app import WebApp, json_response
from ..http.auth import actor_of
from ..http.errors import BadRequest
from ..http.parsing import choices_param, int_param, json_body, time_param
from .alertmanager import AlertmanagerError
from .service import AlertService
from .store import STATES, AlertNotFound, InvalidTransition
from .webhook import SEVERITIES, WebhookError

__all__ = ["register"]

#: Who acts, as given with an acknowledgement or resolution.
MAX_BY = 100


def _by(request: Request) -> str:
    body = json_body(request, empty={})
    by = (body.get("by") if isinstance(body, dict) else None) or request.args.get("by")
    if not isinstance(by, str) or not by.strip():
        raise BadRequest('who is acting is required: {"by": "name"} in the body or ?by=name')
    if len(by) > MAX_BY:
        raise BadRequest(f"by: at most {MAX_BY} characters")
    return by.strip()


def _since(args: MultiDict[str, str]) -> datetime | None:
    return time_param(args["since"], "since") if args.get("since") else None


class AlertRoutes:
    def __init__(self, service: AlertService) -> None:
        self.service = service

    def webhook(self, request: Request) -> Response:
        return json_response({"status": "ok", **self.service.handle_webhook(json_body(request, empty={}))})

    def list_alerts(self, request: Request) -> Response:
        args = request.args
        states = choices_param(args.getlist("state"), "state", STATES)
        severities = choices_param(args.getlist("severity"), "severity", SEVERITIES)
        limit = int_param(args, "limit", 500, 1, 10000)
        alerts = self.service.store.search(states=states, severities=severities, since=_since(args),
                                           target=args.get("target") or None, limit=limit)
        return json_response({"alerts": [a.to_dict() for a in alerts]})

    def get_alert(self, request: Request, alert_id: str) -> Response:
        return json_response(self.service.store.get(alert_id).to_dict())

    def ack(self, request: Request, alert_id: str) -> Response:
        return json_response(self.service.acknowledge(alert_id, _by(request), actor_of(request)).to_dict())

    def resolve(self, request: Request, alert_id: str) -> Response:
        return json_response(self.service.resolve(alert_id, _by(request), actor_of(request)).to_dict())

    def audit_log(self, request: Request) -> Response:
        client = self.service.store.client
        with client.connection() as conn:
            entries = audit.search(conn, client.schema, since=_since(request.args),
                                   action=request.args.get("action") or None)
        return json_response({"entries": entries})


def register(app: WebApp, service: AlertService) -> None:
    """Add the alert routes, and the answers to the alerts' errors, to *app*."""
    routes = AlertRoutes(service)
    app.errors.add(WebhookError, 400, lambda exc: f"not an Alertmanager webhook payload: {exc}")
    app.errors.add(AlertNotFound, 404)
    app.errors.add(InvalidTransition, 409)
    app.errors.add(AlertmanagerError, 502, lambda exc: f"{exc}; nothing was recorded")
    app.add("/api/v1/alerts/webhook", routes.webhook, methods=("POST",), role="operator")
    app.add("/api/v1/alerts", routes.list_alerts, role="viewer")
    app.add("/api/v1/alerts/<alert_id>", routes.get_alert, role="viewer")
    app.add("/api/v1/alerts/<alert_id>/ack", routes.ack, methods=("POST",), role="operator")
    app.add("/api/v1/alerts/<alert_id>/resolve", routes.resolve, methods=("POST",), role="operator")
    app.add("/api/v1/audit", routes.audit_log, role="operator")
    app.links.append(("/api/v1/alerts", "alerts (JSON, bearer token)"))
