"""HTTP routes of the reports.

* ``/reports/`` and ``/reports/<id>``: the console's pages (a signed-in session; a link
  from a dashboard or a delivered report leads through the sign-in page to the report);
  ``POST /reports/`` generates a report now (operators, with the form's CSRF token);
* ``GET /api/v1/reports``, ``GET /api/v1/reports/<id>`` (``?format=json|text|md|html``) and
  ``POST /api/v1/reports`` (generate now; body ``{"from", "to", "target", "kind"}``, times in
  the syntax of ``http.parsing``): the API, behind an API token like the rest of ``/api/v1``;
* ``GET /api/v1/forecasts`` (viewer token): the forecasts a report made now would hold.
  Parameters ``target`` (a configured target; default the first), ``metric`` (one of the
  forecast metrics; default all), ``since`` and ``until`` (the history they rest on, in the
  time syntax of ``http.parsing``; default the ``reports.forecast.history_days`` before now).

Bad input is answered 400 with a JSON error, an unknown id 404, an unreachable store 503
(``http.errors`` holds the mapping).

Statement texts are shown only when ``expose_query_text`` allows them over HTTP.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from werkzeug.wrappers import Request, Response

from ..http import templating
from ..http.app import WebApp, json_response
from ..http.errors import BadRequest
from ..http.parsing import choice_param, int_param, json_object, time_param
from ..http.templating import Chrome
from ..store.client import StoreUnavailable
from .html import render_html
from .model import KINDS, InvalidReport, Report, iso
from .privacy import hide_query_texts
from .render import FORMATS, render
from .service import ReportNotFound, ReportService, UnknownTarget, check_target

__all__ = ["register"]

_CONTENT_TYPES = {"json": "application/json", "text": "text/plain", "md": "text/markdown", "html": "text/html"}
_BODY = '{"from": time, "to": time, "target": name, "kind": "on_demand"}'
#: The windows "generate now" offers: form value -> (label, length).
WINDOWS: dict[str, tuple[str, timedelta]] = {
    "1h": ("the last hour", timedelta(hours=1)), "6h": ("the last 6 hours", timedelta(hours=6)),
    "24h": ("the last 24 hours", timedelta(days=1)), "7d": ("the last 7 days", timedelta(days=7)),
}


class ReportRoutes:
    def __init__(self, app: WebApp, service: ReportService | None) -> None:
        self.app = app
        self.service = service

    def _service(self) -> ReportService:
        if self.service is None:
            raise StoreUnavailable("the sample store is disabled (store.enabled: false); reports live in it")
        return self.service

    def _visible(self, report: Report) -> Report:
        """Statement texts only when the configuration allows them over HTTP."""
        return report if self.app.config.expose_query_text else hide_query_texts(report)

    # -- pages ----------------------------------------------------------------------------

    def list_page(self, request: Request) -> Response:
        reports = self._service().list(limit=200)
        targets = [t.name for t in self.app.config.resolved_targets()]
        return templating.page("reports.html", ui=Chrome.of(request, "reports", self.app.links), reports=reports,
                               iso=iso, targets=targets, windows=[(k, label) for k, (label, _) in WINDOWS.items()])

    def generate_page(self, request: Request) -> Response:
        """``POST /reports/`` (the console's "generate now"): a report of the chosen window, then its page."""
        window = WINDOWS.get(request.form.get("window", ""))
        if window is None:
            raise BadRequest(f"window: expected one of {', '.join(WINDOWS)}")
        target = request.form.get("target") or None
        check_target(self.app.config, target)
        end = datetime.now(UTC)
        report = self._service().generate(end - window[1], end, target, "on_demand")
        response = Response(status=303)
        response.headers["Location"] = f"/reports/{report.report_id}"
        return response

    def report_page(self, request: Request, report_id: str) -> Response:
        report = self._service().get(report_id)
        chrome = Chrome.of(request, "reports", self.app.links)
        return Response(render_html(self._visible(report), chrome=chrome, standalone=False), mimetype="text/html")

    # -- API --------------------------------------------------------------------------------

    def api_list(self, request: Request) -> Response:
        kind = choice_param(request.args, "kind", KINDS)
        limit = int_param(request.args, "limit", 100, 1, 1000)
        reports = self._service().list(target=request.args.get("target"), kind=kind, limit=limit)
        return json_response({"reports": [r.to_json() for r in reports]})

    def api_get(self, request: Request, report_id: str) -> Response:
        fmt = choice_param(request.args, "format", tuple(FORMATS), "json") or "json"
        report = self._service().get(report_id)
        return Response(render(self._visible(report), fmt), mimetype=_CONTENT_TYPES[fmt])

    def api_forecasts(self, request: Request) -> Response:
        from .forecast import METRICS, describe  # with the forecasts' numerics, at first use

        metric = choice_param(request.args, "metric", tuple(METRICS))
        target = request.args.get("target") or None
        until = time_param(request.args["until"], "until") if "until" in request.args else datetime.now(UTC)
        history = timedelta(days=self.app.config.reports.forecast.history_days)
        since = time_param(request.args["since"], "since") if "since" in request.args else until - history
        if since >= until:
            raise BadRequest(f"since ({iso(since)}) must be before until ({iso(until)})")
        try:
            ReportService.check_window(since, until)
        except ValueError as exc:
            raise BadRequest(f"since, until: {exc}") from None
        found, start, end, made = self._service().forecasts(target, since=since, until=until, metric=metric)
        return json_response({"target": found, "since": iso(start), "until": iso(end),
                              "forecasts": [m.entry().model_dump(mode="json") for m in made],
                              "sentences": [describe(m.forecast) for m in made]})

    def api_generate(self, request: Request) -> Response:
        body = json_object(request, ("from", "to", "target", "kind"), example=_BODY)
        kind = body.get("kind", "on_demand")
        if kind not in KINDS:
            raise BadRequest(f"kind: expected one of {', '.join(KINDS)}, got {str(kind)[:20]!r}")
        target = body.get("target")
        if target is not None and (not isinstance(target, str) or not target):
            raise BadRequest("target: expected a target name (a string)")
        start, end = time_param(body.get("from"), "from"), time_param(body.get("to"), "to")
        try:
            ReportService.check_window(start, end)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        check_target(self.app.config, target)  # as /probe: only the configured targets
        report = self._service().generate(start, end, target, kind)
        response = json_response(self._visible(report).to_json(), status=201)
        response.headers["Location"] = f"/api/v1/reports/{report.report_id}"
        return response


def register(app: WebApp, service: ReportService | None) -> None:
    """Add the report routes, and the answers to the reports' errors, to *app*; without a
    *service* (no store) they answer 503."""
    routes = ReportRoutes(app, service)
    app.errors.add(ReportNotFound, 404)
    app.errors.add(UnknownTarget, 400)
    app.errors.add(InvalidReport, 503, lambda exc: f"the store holds a broken report: {exc}")
    app.add("/reports/", routes.list_page, page=True, session=True)
    app.add("/reports/", routes.generate_page, methods=("POST",), page=True, session=True, role="operator")
    app.add("/reports/<report_id>", routes.report_page, page=True, session=True)
    app.add("/api/v1/reports", routes.api_list, role="viewer")
    app.add("/api/v1/reports", routes.api_generate, methods=("POST",), role="operator")
    app.add("/api/v1/reports/<report_id>", routes.api_get, role="viewer")
    app.add("/api/v1/forecasts", routes.api_forecasts, role="viewer")
