"""The WSGI application: routing, authentication and error answers for every route, and
the core routes ``/metrics``, ``/probe``, ``/healthz``, ``/readyz`` and ``/static/``;
``WebServer`` serves it.

Werkzeug does routing and request parsing; cheroot, a production WSGI server with a fixed
thread pool, serves it. No route on the scrape path touches the database. Features add
their routes with ``WebApp.add`` (the composition root, ``pgperf.app``, does it): a route
names the role it needs and how it is authenticated — an API token (the JSON API), or a
signed-in session (the console's pages, ``http.sessions``, whose form POSTs must carry
the session's CSRF token) — and its handler raises on failure: ``http.errors`` decides
the answer, JSON for the API, the error page for pages.

Every response carries a Content-Security-Policy that allows scripts, styles and
connections from pgperf itself only (no inline script, no framing), and the headers of
``--web.config.file`` last.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from ..config import Config
from ..exposition import CONTENT_TYPE, MetricsCache
from ..sampling import Sampler, Snapshot, TargetSampler
from . import templating
from .auth import BasicAuth, Role, TokenAuth
from .errors import Answer, ErrorMap, Unauthorized
from .events import EventHub
from .sessions import LOGIN_PATH, SessionAuth, SignInRequired, login_url
from .static import STATIC
from .webconfig import WebConfig

__all__ = ["SECURITY_HEADERS", "Handler", "WebApp", "WebServer", "json_response", "parse_listen_address"]

log = logging.getLogger(__name__)

Handler = Callable[..., Response]

_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
           409: "Conflict", 413: "Request too large", 502: "Bad gateway", 503: "Unavailable"}

#: Sent with every response (the web configuration file's headers may override them).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str, indent=1) + "\n", status=status, mimetype="application/json")


def parse_listen_address(address: str) -> tuple[str, int]:
    """``:9187`` -> ("0.0.0.0", 9187); ``[::1]:9187`` -> ("::1", 9187)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


@dataclass(frozen=True)
class Route:
    handler: Handler
    role: Role | None  # None: no token or session needed
    page: bool  # errors answered with the HTML error page rather than JSON
    session: bool  # authenticated by a console session (and its CSRF token) rather than an API token


class WebApp:
    """The WSGI application. Parts of pgperf register their routes with ``add()``."""

    def __init__(self, config: Config, sampler: Sampler, metrics: MetricsCache,
                 web_config: WebConfig | None = None) -> None:
        self.config = config
        self.sampler = sampler
        self.metrics = metrics
        self.web_config = web_config
        self.basic_auth = BasicAuth(web_config.users) if web_config is not None and web_config.users else None
        self.tokens = TokenAuth(config)
        self.sessions = SessionAuth()
        #: Server-sent events to the browsers; a stream holds a server thread, so at most half of them.
        self.hub = EventHub(max(1, config.web.threads // 2))
        self.errors = ErrorMap()
        self.url_map = Map(strict_slashes=False)
        self.routes: dict[str, Route] = {}
        self._probes: dict[str, tuple[TargetSampler, MetricsCache]] = {}
        self._probes_lock = threading.Lock()
        self.add("/metrics", self.metrics_endpoint)
        self.add("/probe", self.probe)
        self.add("/sd", self.service_discovery)
        self.add("/healthz", self.healthz)
        self.add("/readyz", self.readyz)
        self.add("/static/<name>", STATIC.serve)
        #: More liveness checks for /healthz (the store writer's thread): a problem or None.
        self.liveness: list[Callable[[], str | None]] = []
        self.links: list[tuple[str, str]] = [
            ("/metrics", "metrics"), ("/healthz", "liveness"), ("/readyz", "readiness"),
        ]

    def add(self, rule: str, handler: Handler, *, methods: Iterable[str] = ("GET",), role: Role | None = None,
            page: bool = False, session: bool = False) -> None:
        """Route *rule* to *handler*; *role*: the role it needs (None: public, or with
        *session* any signed-in person); *page*: an HTML page (its errors are pages too);
        *session*: a console route, authenticated by the session cookie instead of an API
        token — a page without a session redirects to the sign-in page, and a POST must
        carry the session's CSRF token."""
        endpoint = f"{getattr(handler, '__qualname__', repr(handler))}:{rule}:{','.join(methods)}"
        self.url_map.add(Rule(rule, endpoint=endpoint, methods=list(methods)))
        if session and role is None:
            role = "viewer"
        self.routes[endpoint] = Route(handler, role, page, session)

    def apply_config(self, config: Config) -> None:
        self.config = config
        self.tokens = TokenAuth(config)
        self.metrics.set_config(config)
        with self._probes_lock:  # targets changed or were replaced: their caches go
            self._probes.clear()

    def close(self) -> None:
        """End what holds server threads (the event streams): the server is stopping."""
        self.hub.close()

    # -- core routes --------------------------------------------------------------------

    def metrics_endpoint(self, request: Request) -> Response:
        gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
        body = self.metrics.render(gzipped=gzipped)
        response = Response(body, content_type=CONTENT_TYPE)
        if gzipped:
            response.headers["Content-Encoding"] = "gzip"
        response.headers["Vary"] = "Accept-Encoding"
        return response

    def probe(self, request: Request) -> Response:
        """One target's metrics, unlabelled: ``/probe?target=NAME`` (names from the config;
        no DSN or credential is ever taken from the query string)."""
        name = request.args.get("target", "")
        target = self.sampler.targets.get(name)
        if target is None:
            known = ", ".join(sorted(self.sampler.targets)) or "none"
            return Response(
                f"unknown target {name!r}; configured targets: {known}\n", status=404, mimetype="text/plain"
            )
        gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
        response = Response(self._probe_cache(target).render(gzipped=gzipped), content_type=CONTENT_TYPE)
        if gzipped:
            response.headers["Content-Encoding"] = "gzip"
        return response

    def _probe_cache(self, target: TargetSampler) -> MetricsCache:
        """The rendering of one target for /probe, kept while that target's sampler runs."""
        name = target.target.name
        with self._probes_lock:
            kept = self._probes.get(name)
            if kept is not None and kept[0] is target:
                return kept[1]
            for gone in self._probes.keys() - self.sampler.targets.keys():
                del self._probes[gone]
            single = self.config.model_copy(update={
                "targets": (target.target,), "dsn": None, "targets_file": None, "targets_dir": None,
                "profile": target.target.profile or self.config.profile})

            def latest(t: TargetSampler = target) -> list[Snapshot]:
                return [t.latest] if t.latest else []

            cache = MetricsCache(latest, single, process_metrics=False)
            self._probes[name] = (target, cache)
            return cache

    def service_discovery(self, request: Request) -> Response:
        """``GET /sd``: every target in Prometheus's HTTP service-discovery format, so that a
        scrape job with ``http_sd_configs`` and ``metrics_path: /probe`` scrapes each on its
        own. The address is the one the request came to (the Host header: how Prometheus
        reaches pgperf); only target names are given, never a DSN."""
        address = request.host or self.config.web.listen_address
        groups = [{"targets": [address], "labels": {"__param_target": name, "target": name}}
                  for name in self.sampler.targets]
        return Response(json.dumps(groups) + "\n", mimetype="application/json")

    def healthz(self, request: Request) -> Response:
        dead = [name for name, alive in self.sampler.threads_alive().items() if not alive]
        problems = [f"sampler thread stopped for {', '.join(dead)}"] if dead else []
        problems += [p for check in self.liveness if (p := check()) is not None]
        if problems:
            return Response("".join(f"{p}\n" for p in problems), status=503, mimetype="text/plain")
        return Response("ok\n", mimetype="text/plain")

    def readyz(self, request: Request) -> Response:
        """200 while every target is reachable and its sampling is current, else 503."""
        now = time.time()
        problems: dict[str, str] = {}
        for name, target in self.sampler.targets.items():
            snap: Snapshot | None = target.latest
            if snap is None:
                problems[name] = "no sample taken yet"
            elif not snap.up:
                problems[name] = f"database unreachable ({snap.error_kind})"
            elif now - snap.taken_at > 3 * snap.interval + 5:
                problems[name] = f"last sample is {now - snap.taken_at:.0f}s old"
        if problems:
            return json_response({"ready": False, "targets": problems}, status=503)
        return json_response({"ready": True})

    # -- dispatch and errors ------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, values = adapter.match()
        except HTTPException as exc:  # no such path (404), or not with this method (405)
            return self.http_error(request, exc, page=not request.path.startswith("/api/"))
        route = self.routes[endpoint]
        try:
            if route.session:
                assert route.role is not None
                session = self.sessions.require(request, self.tokens, route.role)
                if request.method == "POST":
                    self.sessions.check_csrf(request, session)
                response = route.handler(request, **values)
                # Signed-in pages hold the CSRF token and what only signed-in people may read.
                response.headers.setdefault("Cache-Control", "no-store")
                return response
            if route.role is not None:
                self.tokens.authorize(request, route.role)
            return route.handler(request, **values)
        except SignInRequired:
            return self.sign_in_required(request, page=route.page)
        except HTTPException as exc:  # 413 from reading the body
            return self.http_error(request, exc, page=route.page)
        except self.errors.handled as exc:
            return self.error(self.errors.answer(exc), page=route.page)

    def sign_in_required(self, request: Request, *, page: bool) -> Response:
        """A page asked for without a session: to the sign-in page (and back to the page
        after it); anything else (an event stream): 401."""
        if page:
            target = login_url(request) if request.method in ("GET", "HEAD") else LOGIN_PATH
            response = Response(status=303)
            response.headers["Location"] = target
            response.headers["Cache-Control"] = "no-store"
            return response
        return self.error(self.errors.answer(Unauthorized(f"sign in first: {LOGIN_PATH}")), page=False)

    def error(self, answer: Answer, *, page: bool) -> Response:
        """The error answer: ``{"error": message, ...}``, or the error page."""
        if page:
            title = _TITLES.get(answer.status, "Error")
            response = templating.page("error.html", answer.status, title=title, message=answer.message,
                                       links=[("/", "pgperf")])
        else:
            response = json_response({"error": answer.message, **answer.extra}, status=answer.status)
        response.headers.update(answer.headers)
        return response

    def http_error(self, request: Request, exc: HTTPException, *, page: bool) -> Response:
        """Werkzeug's answer to *exc* (413, 404, 405...): its HTML page for pages, JSON like
        every other error elsewhere."""
        status = exc.code or 500
        if page:
            response = self.error(Answer(status, str(exc.description or exc.name)), page=True)
            for name, value in exc.get_headers():  # Allow of a 405, for example
                if name.lower() != "content-type":
                    response.headers[name] = value
            return response
        if status == 413:
            message = (f"request body too large: at most {self.config.web.max_request_bytes} bytes "
                       "(web.max_request_bytes)")
        else:
            message = f"{exc.name}: {exc.description}" if exc.description else str(exc.name)
        response = json_response({"error": message}, status=status)
        for name, value in exc.get_headers():  # Allow of a 405, for example
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    # -- WSGI ---------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = self.config.web.max_request_bytes
        if self.basic_auth is not None and not self.basic_auth.check(request.headers.get("Authorization")):
            response = Response("401 Unauthorized\n", status=401, mimetype="text/plain")
            response.headers["WWW-Authenticate"] = 'Basic realm="pgperf"'
        else:
            try:
                response = self.dispatch(request)
            except Exception:  # last line of defence: log it, answer 500 with no detail
                log.exception("unhandled error serving %s %s", request.method, request.path)
                response = json_response({"error": "internal error; see the exporter's log"}, status=500)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if self.web_config is not None:
            response.headers.update(self.web_config.headers)
        return response(environ, start_response)


class WebServer:
    """cheroot serving a WebApp on the configured address, in a background thread."""

    def __init__(self, app: WebApp, address: str, threads: int = 16) -> None:
        host, port = parse_listen_address(address)
        self.app = app
        self.server = wsgi.Server((host, port), app, numthreads=threads, request_queue_size=256)
        self.server.shutdown_timeout = 2
        web = app.web_config
        if web is not None and web.tls:
            assert web.cert_file and web.key_file
            adapter = BuiltinSSLAdapter(web.cert_file, web.key_file)
            adapter.context = web.ssl_context()  # versions and client certificates as configured
            self.server.ssl_adapter = adapter
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.server.prepare()  # binds now, so an address in use fails here, loudly
        self._thread = threading.Thread(target=self.server.serve, name="web", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server.bind_addr[1])

    def stop(self) -> None:
        self.app.close()  # event streams end, so that no server thread waits for a browser
        self.server.stop()
        if self._thread is not None:
            self._thread.join(5)
