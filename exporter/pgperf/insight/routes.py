"""HTTP routes of query insight.

``GET /api/v1/statements/<query_id>`` (viewer token): everything insight knows of one
statement (``detail``). Parameters: ``target`` (a configured target; default the first),
``from`` and ``to`` (the window of its cost and waits, in the time syntax of
``http.parsing``; default the last 24 hours). A malformed query id, an unknown target or a
bad time is answered 400, a statement the store knows nothing of 404, an unreachable store
503 (``http.errors``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from werkzeug.wrappers import Request, Response

from ..http.app import WebApp, json_response
from ..http.errors import BadRequest, NotFound
from ..http.parsing import time_param
from ..store.client import StoreClient, StoreUnavailable
from .detail import parse_query_id, statement_detail

__all__ = ["register"]

DEFAULT_WINDOW = timedelta(days=1)


class InsightRoutes:
    def __init__(self, app: WebApp, client: StoreClient | None) -> None:
        self.app = app
        self.client = client

    def _target(self, request: Request) -> str:
        known = [t.name for t in self.app.config.resolved_targets()]
        target = request.args.get("target")
        if target is None:
            return known[0]
        if target not in known:
            raise BadRequest(f"unknown target {target[:60]!r}; configured targets: {', '.join(known)}")
        return target

    def statement(self, request: Request, query_id: str) -> Response:
        try:
            qid = parse_query_id(query_id)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        target = self._target(request)
        until = time_param(request.args["to"], "to") if "to" in request.args else datetime.now(UTC)
        since = time_param(request.args["from"], "from") if "from" in request.args else until - DEFAULT_WINDOW
        if since >= until:
            raise BadRequest(f"from ({since.isoformat()}) must be before to ({until.isoformat()})")
        if self.client is None:
            raise StoreUnavailable("the sample store is disabled (store.enabled: false); insight keeps plans, "
                                   "waits and advice in it")
        with self.client.connection() as conn:
            detail = statement_detail(conn, self.client.schema, target, qid, since=since, until=until,
                                      expose_text=self.app.config.expose_query_text)
        if detail is None:
            raise NotFound(f"no statement with query id {qid} in the store for target {target}")
        return json_response(detail)


def register(app: WebApp, client: StoreClient | None) -> None:
    """Add insight's routes to *app*; without a store they answer 503."""
    routes = InsightRoutes(app, client)
    app.add("/api/v1/statements/<query_id>", routes.statement, role="viewer")
