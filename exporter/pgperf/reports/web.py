"""HTTP routes of the reports.

* ``/reports/`` and ``/reports/<id>``: HTML pages, read-only and without authentication,
  because dashboards (Grafana) link to them;
* ``GET /api/v1/reports``, ``GET /api/v1/reports/<id>`` (``?format=json|text|md|html``) and
  ``POST /api/v1/reports`` (generate now; body ``{"from", "to", "target", "kind"}``): the
  API, behind the bearer token like the rest of ``/api/v1``.

Bad input is answered 400 with a JSON error, an unknown id 404, an unreachable store 503.
"""

from __future__ import annotations

import html
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from werkzeug.wrappers import Request, Response

from .._types import bounded_time
from ..store.client import StoreUnavailable
from ..web import WebApp, error_response, json_response
from .builder import iso
from .render import FORMATS, render
from .report import hide_query_texts
from .service import KINDS, ReportNotFound, ReportService, check_target

if TYPE_CHECKING:
    from ..monitor import Monitor

__all__ = ["parse_time", "register"]

log = logging.getLogger(__name__)

_CONTENT_TYPES = {"json": "application/json", "text": "text/plain", "md": "text/markdown", "html": "text/html"}


def parse_time(value: Any, name: str) -> datetime:
    """ISO 8601 (``2024-01-01T00:00:00Z``); a time without an offset is UTC. Returned in UTC;
    ValueError outside the years MIN_YEAR to MAX_YEAR (see pgperf._types)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name!r} must be an ISO 8601 time such as 2024-01-01T00:00:00Z")
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{name!r} is not an ISO 8601 time: {value!r}") from None
    return bounded_time(at.replace(tzinfo=UTC) if at.tzinfo is None else at, repr(name))


def _page(title: str, body: str, status: int = 200) -> Response:
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:system-ui,sans-serif;margin:24px;color:#1f2933}table{border-collapse:collapse}"
            "td,th{border-bottom:1px solid #e4e7eb;padding:4px 10px;text-align:left}td.n{text-align:right}</style>"
            f"</head><body>{body}</body></html>")
    return Response(page, status=status, mimetype="text/html")


class ReportRoutes:
    def __init__(self, app: WebApp, service: ReportService | None) -> None:
        self.app = app
        self.service = service

    def _service(self) -> ReportService:
        if self.service is None:
            raise StoreUnavailable("the sample store is disabled (store.enabled: false); reports live in it")
        return self.service

    # -- HTML -----------------------------------------------------------------------------

    def list_page(self, request: Request) -> Response:
        try:
            reports = self._service().list(limit=200)
        except (StoreUnavailable, psycopg.Error) as exc:
            return _page("pgperf reports", f"<h1>Reports</h1><p>{html.escape(str(exc))}</p>", 503)
        rows = "".join(
            f"<tr><td><a href='/reports/{html.escape(r['report_id'])}'>{html.escape(r['report_id'])}</a></td>"
            f"<td>{html.escape(r['kind'])}</td><td>{html.escape(r['target'] or '')}</td>"
            f"<td>{html.escape(iso(r['period_start']) or '')}</td><td>{html.escape(iso(r['period_end']) or '')}</td>"
            f"<td>{html.escape(iso(r['generated_at']) or '')}</td><td class=n>{r['total_queries'] or 0:,}</td>"
            f"<td class=n>{r['recommendations']}</td><td class=n>{r['anomalies']}</td></tr>" for r in reports)
        body = ("<h1>📊 Performance reports</h1><p><a href='/'>pgperf</a></p><table><tr><th>report</th><th>kind</th>"
                "<th>target</th><th>from</th><th>to</th><th>generated</th><th>queries</th><th>recommendations</th>"
                f"<th>anomalies</th></tr>{rows}</table>" + ("" if reports else "<p>No reports yet.</p>"))
        return _page("pgperf reports", body)

    def report_page(self, request: Request, report_id: str) -> Response:
        try:
            report = self._service().get(report_id)
        except ReportNotFound as exc:
            return _page("report not found", f"<h1>Not found</h1><p>{html.escape(str(exc))}</p>"
                         "<p><a href='/reports/'>all reports</a></p>", 404)
        except (StoreUnavailable, psycopg.Error) as exc:
            return _page("pgperf reports", f"<p>{html.escape(str(exc))}</p>", 503)
        return Response(render(self._visible(report.data), "html"), mimetype="text/html")

    def _visible(self, data: dict[str, Any]) -> dict[str, Any]:
        """Statement texts only when the configuration allows them over HTTP."""
        return data if self.app.config.expose_query_text else hide_query_texts(data)

    # -- API --------------------------------------------------------------------------------

    def api_list(self, request: Request) -> Response:
        denied = self.app.authorize(request, "viewer")
        if denied is not None:
            return denied
        kind = request.args.get("kind")
        if kind is not None and kind not in KINDS:
            return error_response(400, f"kind must be one of {', '.join(KINDS)}")
        try:
            limit = int(request.args.get("limit", "100"))
            if not 1 <= limit <= 1000:
                raise ValueError
        except ValueError:
            return error_response(400, "limit must be an integer from 1 to 1000")
        try:
            reports = self._service().list(target=request.args.get("target"), kind=kind, limit=limit)
        except (StoreUnavailable, psycopg.Error) as exc:
            return error_response(503, str(exc).strip())
        for r in reports:
            for key in ("generated_at", "period_start", "period_end"):
                r[key] = iso(r[key])
            r["url"] = f"/reports/{r['report_id']}"
        return json_response({"reports": reports})

    def api_get(self, request: Request, report_id: str) -> Response:
        denied = self.app.authorize(request, "viewer")
        if denied is not None:
            return denied
        fmt = request.args.get("format", "json")
        if fmt not in FORMATS:
            return error_response(400, f"format must be one of {', '.join(FORMATS)}")
        try:
            report = self._service().get(report_id)
        except ReportNotFound as exc:
            return error_response(404, str(exc))
        except (StoreUnavailable, psycopg.Error) as exc:
            return error_response(503, str(exc).strip())
        return Response(render(self._visible(report.data), fmt), mimetype=_CONTENT_TYPES[fmt])

    def api_generate(self, request: Request) -> Response:
        denied = self.app.authorize(request)
        if denied is not None:
            return denied
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
        except ValueError:
            return error_response(400, "the body must be JSON: {\"from\": ISO time, \"to\": ISO time, \"target\": name}")
        if not isinstance(body, dict):
            return error_response(400, "the body must be a JSON object with \"from\" and \"to\"")
        unknown = sorted(set(body) - {"from", "to", "target", "kind"})
        if unknown:
            return error_response(400, f"unknown field(s): {', '.join(unknown)}")
        kind = body.get("kind", "on_demand")
        target = body.get("target")
        if kind not in KINDS:
            return error_response(400, f"kind must be one of {', '.join(KINDS)}")
        if target is not None and (not isinstance(target, str) or not target):
            return error_response(400, "target must be a target name (a string)")
        try:
            start, end = parse_time(body.get("from"), "from"), parse_time(body.get("to"), "to")
            ReportService.check_window(start, end)
            check_target(self.app.config, target)  # as /probe: only the configured targets
        except ValueError as exc:
            return error_response(400, str(exc))
        try:
            report = self._service().generate(start, end, target, kind)
        except (StoreUnavailable, psycopg.OperationalError) as exc:
            return error_response(503, str(exc).strip())
        response = json_response(self._visible(report.data), status=201)
        response.headers["Location"] = f"/api/v1/reports/{report.report_id}"
        return response


def register(app: WebApp, monitor: Monitor) -> ReportRoutes:
    """Add the report routes to *app*; they use *monitor*'s report service."""
    routes = ReportRoutes(app, monitor.reports)
    app.add("/reports/", routes.list_page)
    app.add("/reports/<report_id>", routes.report_page)
    app.add("/api/v1/reports", routes.api_list)
    app.add("/api/v1/reports", routes.api_generate, methods=("POST",))
    app.add("/api/v1/reports/<report_id>", routes.api_get)
    app.links.append(("/reports/", "performance reports"))
    return routes
