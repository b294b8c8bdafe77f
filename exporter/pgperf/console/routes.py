"""The console's routes: sign-in, the overview and its event stream, alerts, statements,
targets.

Every page is rendered on the server (``http/templates/console``) and every action is an
HTML form, so the console works without JavaScript; the scripts of ``http/static`` only
keep the overview and the alert list current (``GET /events``) and draw the charts.
Pages need a signed-in session (``http.sessions``); acknowledging and resolving need the
operator role, and their forms carry the session's CSRF token.

Acknowledging and resolving call the alert service, as the API does: the same silence in
Alertmanager, the same audit rows, recorded under the signed-in token's name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from ..alerts.alertmanager import AlertmanagerError
from ..alerts.service import AlertService, StillFiring
from ..alerts.store import STATES
from ..alerts.webhook import SEVERITIES
from ..http import templating
from ..http.app import WebApp
from ..http.auth import Identity, actor_of
from ..http.errors import NotFound, ServiceUnavailable
from ..http.events import TooManyStreams
from ..http.parsing import choices_param, time_param
from ..http.sessions import LOGIN_PATH, safe_next
from ..http.templating import Chrome
from ..models import PerformanceAlert
from ..sampling import Sampler
from ..store.client import StoreClient, StoreUnavailable
from . import queries
from .live import LiveFeed
from .overview import HistoryPoint, health

__all__ = ["ConsoleRoutes", "plan_lines", "register"]

log = logging.getLogger(__name__)

#: Alerts the alert list shows at most.
ALERT_LIMIT = 200
#: The statement page's windows: name -> (length, bucket width in seconds).
WINDOWS: dict[str, tuple[timedelta, int]] = {
    "1h": (timedelta(hours=1), 60), "6h": (timedelta(hours=6), 300), "24h": (timedelta(days=1), 900),
    "7d": (timedelta(days=7), 3600),
}
_QUERY_ID = re.compile(r"^-?\d{1,20}$")
#: Plan node keys that hold the statement's expressions, shown only with expose_query_text.
_EXPRESSIONS = ("Index Cond", "Recheck Cond", "Filter", "Join Filter", "Hash Cond", "Merge Cond", "Sort Key",
                "Group Key", "Output")


def _since(request: Request, default: str | None) -> datetime | None:
    value = request.args.get("since", default)
    return time_param(value, "since") if value else None


def plan_lines(plan: dict[str, Any], expressions: bool) -> list[tuple[int, str, list[str]]]:
    """A stored EXPLAIN (FORMAT JSON) plan as (depth, node, details) lines, each node with
    its relation or index and its estimates; the node's expressions (conditions, filters,
    keys) only when *expressions* (they quote the statement)."""
    out: list[tuple[int, str, list[str]]] = []

    def walk(node: Any, depth: int) -> None:
        if not isinstance(node, dict) or len(out) >= 200:
            return
        parts = [str(node.get("Node Type", "?"))]
        join = node.get("Join Type")
        if join and join != "Inner":  # as EXPLAIN's text: Hash Left Join, Nested Loop Anti Join
            parts[0] = (parts[0].removesuffix(" Join") + f" {join} Join" if parts[0].endswith(" Join")
                        else f"{parts[0]} {join} Join")
        if node.get("Index Name"):
            parts.append(f"using {node['Index Name']}")
        if node.get("Relation Name"):
            relation = f"{node['Schema']}.{node['Relation Name']}" if node.get("Schema") else node["Relation Name"]
            parts.append(f"on {relation}")
        cost = node.get("Total Cost")
        rows = node.get("Plan Rows")
        if cost is not None:
            parts.append(f"(cost {node.get('Startup Cost', 0):.2f}..{cost:.2f}, {rows} rows)")
        details = []
        if expressions:
            for key in _EXPRESSIONS:
                value = node.get(key)
                if value:
                    details.append(f"{key}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
        out.append((depth, " ".join(parts), details))
        for child in node.get("Plans") or ():
            walk(child, depth + 1)

    root = plan.get("Plan", plan) if isinstance(plan, dict) else None
    walk(root, 0)
    return out


#: Why the alert service refused an action, shown on the alert's page.
REFUSALS = {
    "still_firing": "Not resolved: Prometheus still fires this alert. It resolves by itself once its condition "
                    "clears; acknowledging it silences it meanwhile.",
}


@dataclass(frozen=True)
class AlertFilters:
    """The alert list's filters, from the query string."""

    states: list[str]
    severities: list[str]
    target: str | None
    since: str

    @staticmethod
    def of(request: Request) -> AlertFilters:
        states = choices_param(request.args.getlist("state"), "state", STATES) or ["firing", "acknowledged"]
        severities = choices_param(request.args.getlist("severity"), "severity", SEVERITIES)
        return AlertFilters(states, severities, request.args.get("target") or None, request.args.get("since", "7d"))


class ConsoleRoutes:
    """The console's handlers, over the parts of the application they show."""

    def __init__(self, web: WebApp, sampler: Sampler, feed: LiveFeed, alerts: AlertService | None,
                 client: StoreClient | None) -> None:
        self.web = web
        self.sampler = sampler
        self.feed = feed
        self.alerts = alerts
        self.client = client

    def _chrome(self, request: Request, active: str) -> Chrome:
        return Chrome.of(request, active, self.web.links)

    def _client(self) -> StoreClient:
        if self.client is None:
            raise StoreUnavailable("the sample store is disabled (store.enabled: false); alerts, statements and "
                                   "reports live in it")
        return self.client

    def _service(self) -> AlertService:
        if self.alerts is None:
            raise StoreUnavailable("the sample store is disabled (store.enabled: false); alerts live in it")
        return self.alerts

    # -- signing in ------------------------------------------------------------------------

    def login_form(self, request: Request) -> Response:
        return self._login_page(request, 200, None)

    def _login_page(self, request: Request, status: int, problem: str | None) -> Response:
        response = Response(status=status, mimetype="text/html")
        csrf = self.web.sessions.login_form_token(request, response)
        current = self.web.sessions.current(request, self.web.tokens)
        response.set_data(templating.render(
            "console/login.html", csrf_token=csrf, next=safe_next(request.values.get("next")), problem=problem,
            enabled=self.web.tokens.enabled, signed_in=current.identity if current else None))
        response.headers["Cache-Control"] = "no-store"
        return response

    def login(self, request: Request) -> Response:
        self.web.sessions.check_login_csrf(request)
        response = _redirect(safe_next(request.form.get("next")))
        session = self.web.sessions.sign_in(request, response, self.web.tokens, request.form.get("token", ""))
        if session is None:
            log.warning("console: sign-in refused from %s (not a configured API token)", request.remote_addr)
            problem = ("No API token is configured, so nobody can sign in: set PGPERF_API_TOKEN (api.token)."
                       if not self.web.tokens.enabled else "That is not a valid API token.")
            return self._login_page(request, 401, problem)
        log.info("console: %s (%s) signed in from %s", session.identity.name, session.identity.role,
                 request.remote_addr)
        return response

    def logout(self, request: Request) -> Response:
        response = _redirect(LOGIN_PATH)
        self.web.sessions.sign_out(request, response)
        return response

    # -- the overview ---------------------------------------------------------------------

    def overview(self, request: Request) -> Response:
        targets = []
        for i, name in enumerate(self.sampler.targets, 1):
            overview = self.feed.overview(name)
            targets.append((name, overview, health(overview), _live_chart(f"live-chart-{i}", self.feed.history(name))))
        return templating.page("console/overview.html", ui=self._chrome(request, "overview"), targets=targets,
                               open_alerts=self._open_alerts())

    def _open_alerts(self) -> int | str | None:
        """How many alerts are open, the reason they cannot be counted, or None (no store)."""
        if self.alerts is None:
            return None
        try:
            return len(self.alerts.store.search(states=["firing", "acknowledged"], limit=1000))
        except StoreUnavailable as exc:
            return str(exc)

    def events(self, request: Request) -> Response:
        """``GET /events``: the server-sent events of every sample and alert change."""
        try:
            subscription = self.web.hub.subscribe()
        except TooManyStreams as exc:
            raise ServiceUnavailable(str(exc), headers={"Retry-After": "30"}) from None
        sessions, tokens = self.web.sessions, self.web.tokens

        def alive() -> bool:  # the stream ends with the session behind it
            return sessions.current(request, tokens) is not None

        body = subscription.stream(self.feed.current_events(), alive)
        response = Response(body, mimetype="text/event-stream", direct_passthrough=True)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Accel-Buffering"] = "no"  # a buffering proxy in front would hold the events back
        return response

    # -- alerts ---------------------------------------------------------------------------------

    def alert_list(self, request: Request) -> Response:
        filters = AlertFilters.of(request)
        since = _since(request, filters.since)
        alerts = self._service().store.search(states=filters.states, severities=filters.severities, since=since,
                                              target=filters.target, limit=ALERT_LIMIT)
        return templating.page("console/alerts.html", ui=self._chrome(request, "alerts"), alerts=alerts,
                               filters=filters, states=STATES, severities=SEVERITIES,
                               targets=sorted(self.sampler.targets), limit=ALERT_LIMIT,
                               return_to=request.full_path.rstrip("?"))

    def alert_page(self, request: Request, alert_id: str) -> Response:
        """One alert: its timeline, silence and audit trail; ``?refused=CODE`` after an action
        the alert service refused (a fixed text per code: nothing from the URL is shown)."""
        service = self._service()
        alert = service.store.get(alert_id)
        with self._client().connection() as conn:
            trail = queries.audit_trail(conn, self._client().schema, alert_id)
        silence, silence_error = self._silence(service, alert)
        return templating.page("console/alert.html", ui=self._chrome(request, "alerts"), alert=alert, trail=trail,
                               silence=silence, silence_error=silence_error, timeline=_timeline(alert),
                               refused=REFUSALS.get(request.args.get("refused", "")), return_to=request.path)

    @staticmethod
    def _silence(service: AlertService, alert: PerformanceAlert) -> tuple[dict[str, Any] | None, str | None]:
        """The alert's silence as Alertmanager has it, or why it cannot be shown."""
        if not alert.silence_id:
            return None, None
        if service.alertmanager is None:
            return None, "no Alertmanager is configured (alerts.alertmanager_url): its state cannot be read"
        try:
            return service.alertmanager.silence(alert.silence_id), None
        except AlertmanagerError as exc:
            return None, str(exc)

    def _act(self, request: Request, alert_id: str, action: Callable[[str, str], PerformanceAlert]) -> Response:
        identity = Identity.of(request)
        assert identity is not None  # the route needs a session
        try:
            action(alert_id, identity.name)
        except StillFiring:
            # Not an error of the page: the alert's own page says why, and what to do.
            return _redirect(f"/alerts/{alert_id}?refused=still_firing")
        return _redirect(safe_next(request.form.get("return_to") or f"/alerts/{alert_id}"))

    def acknowledge(self, request: Request, alert_id: str) -> Response:
        service = self._service()
        return self._act(request, alert_id, lambda a, by: service.acknowledge(a, by, actor_of(request)))

    def resolve(self, request: Request, alert_id: str) -> Response:
        service = self._service()
        return self._act(request, alert_id, lambda a, by: service.resolve(a, by, actor_of(request)))

    # -- statements ----------------------------------------------------------------------------

    def statement(self, request: Request, query_id: str) -> Response:
        if not _QUERY_ID.match(query_id):
            raise NotFound(f"{query_id[:40]!r} is not a statement id (pg_stat_statements' queryid, a number)")
        window = request.args.get("window", "1h")
        if window not in WINDOWS:
            window = "1h"
        length, bucket = WINDOWS[window]
        until = datetime.now(UTC)
        since = until - length
        client = self._client()
        with client.connection() as conn:
            info = queries.statement_info(conn, client.schema, query_id, since, until)
            history = queries.statement_history(conn, client.schema, query_id, since, until, bucket)
            insight = queries.statement_insight(conn, client.schema, query_id)
        shown = self.web.config.expose_query_text
        chart = _statement_chart(history, bucket, since, until)
        plans = [(p, plan_lines(p.plan, shown)) for p in insight.plans or ()]
        return templating.page("console/statement.html", ui=self._chrome(request, "overview"), query_id=query_id,
                               info=info, history=history, chart=chart, window=window, windows=list(WINDOWS),
                               texts_shown=shown, insight=insight, plans=plans)

    # -- targets --------------------------------------------------------------------------------

    def targets(self, request: Request) -> Response:
        rows = []
        for name, target in self.sampler.targets.items():
            overview = self.feed.overview(name)
            latest = target.latest
            databases = sorted(latest.databases.items()) if latest is not None else []
            rows.append((name, overview, health(overview), self.feed.collectors(name), databases))
        return templating.page("console/targets.html", ui=self._chrome(request, "targets"), targets=rows)


def _timeline(alert: PerformanceAlert) -> list[tuple[datetime, str, str | None]]:
    """(when, what, by whom) of the alert's lifecycle, in order."""
    events: list[tuple[datetime, str, str | None]] = [(alert.timestamp, "fired", None)]
    if alert.acknowledged_at is not None:
        events.append((alert.acknowledged_at, "acknowledged", alert.acknowledged_by))
    if alert.resolved_at is not None:
        events.append((alert.resolved_at, "resolved", alert.resolved_by))
    return sorted(events, key=lambda e: e[0])


def _live_chart(chart_id: str, history: list[HistoryPoint]) -> dict[str, Any]:
    """The overview's chart of a target: transactions per second and connections of the
    recent samples, extended by each sample's event."""
    return {
        "id": chart_id, "kind": "line", "x": "time", "live": True,
        "title": "Transactions per second and connections (recent samples)",
        "series": [
            {"label": "transactions/s", "data": [[p.t * 1000, p.tps] for p in history], "axis": "y"},
            {"label": "connections", "data": [[p.t * 1000, p.connections] for p in history], "axis": "y2"},
        ],
        "axes": {"y": {"title": "transactions/s", "min": 0}, "y2": {"title": "connections", "min": 0}},
    }


def _statement_chart(history: list[queries.HistoryBucket], bucket: int, since: datetime,
                     until: datetime) -> dict[str, Any]:
    """The statement page's chart: calls per bucket and mean time, summed over targets."""
    calls: dict[float, int] = {}
    total: dict[float, float] = {}
    for h in history:
        t = h.start.timestamp() * 1000
        calls[t] = calls.get(t, 0) + h.calls
        total[t] = total.get(t, 0.0) + h.total_ms
    times = sorted(calls)
    return {
        "id": "chart-statement", "kind": "line", "title": f"Calls per {bucket // 60} min and mean time",
        "x": "time", "xmin": since.timestamp() * 1000, "xmax": until.timestamp() * 1000,
        "series": [
            {"label": "calls", "data": [[t, calls[t]] for t in times], "axis": "y"},
            {"label": "mean time (ms)", "data": [[t, round(total[t] / calls[t], 3) if calls[t] else None]
                                                 for t in times], "axis": "y2"},
        ],
        "axes": {"y": {"title": "calls", "min": 0}, "y2": {"title": "mean time", "min": 0, "format": "ms"}},
    }


def _redirect(location: str) -> Response:
    response = Response(status=303)
    response.headers["Location"] = location
    return response


def register(web: WebApp, sampler: Sampler, feed: LiveFeed, alerts: AlertService | None,
             client: StoreClient | None) -> ConsoleRoutes:
    """Add the console's routes to *web*."""
    routes = ConsoleRoutes(web, sampler, feed, alerts, client)
    web.add(LOGIN_PATH, routes.login_form, page=True)
    web.add(LOGIN_PATH, routes.login, methods=("POST",), page=True)
    web.add("/logout", routes.logout, methods=("POST",), page=True, session=True)
    web.add("/", routes.overview, page=True, session=True)
    web.add("/events", routes.events, session=True)
    web.add("/alerts", routes.alert_list, page=True, session=True)
    web.add("/alerts/<alert_id>", routes.alert_page, page=True, session=True)
    web.add("/alerts/<alert_id>/ack", routes.acknowledge, methods=("POST",), page=True, session=True, role="operator")
    web.add("/alerts/<alert_id>/resolve", routes.resolve, methods=("POST",), page=True, session=True,
            role="operator")
    web.add("/statements/<query_id>", routes.statement, page=True, session=True)
    web.add("/targets", routes.targets, page=True, session=True)
    return routes

