"""HTTP: ``/metrics``, ``/probe``, ``/healthz``, ``/readyz`` and the routes other parts add.

Werkzeug does routing and request parsing; cheroot, a production WSGI server with a fixed
thread pool, serves it. No route on the scrape path touches the database.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .audit import Actor
from .config import Config, ConfigError
from .exposition import CONTENT_TYPE, MetricsCache
from .monitor import ReloadRejected
from .sampling import Sampler, Snapshot, TargetSampler
from .webconfig import WebConfig

if TYPE_CHECKING:
    from .monitor import Monitor

__all__ = [
    "Identity", "WebApp", "WebServer", "create_app", "error_response", "json_response", "parse_listen_address",
]

log = logging.getLogger(__name__)

Handler = Callable[..., Response]


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str, indent=1) + "\n", status=status, mimetype="application/json")


IDENTITY_KEY = "pgperf.identity"


@dataclass(frozen=True)
class Identity:
    """Who an API request acts as: the token's name and its role."""

    name: str
    role: str

    @staticmethod
    def of(request: Request) -> Identity | None:
        value = request.environ.get(IDENTITY_KEY)
        return value if isinstance(value, Identity) else None


def error_response(status: int, message: str, **extra: Any) -> Response:
    """A JSON error body: ``{"error": message, ...}``."""
    return json_response({"error": message, **extra}, status=status)


def parse_listen_address(address: str) -> tuple[str, int]:
    """``:9187`` -> ("0.0.0.0", 9187); ``[::1]:9187`` -> ("::1", 9187)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class WebApp:
    """The WSGI application. Parts of pgperf register their routes with ``add()``."""

    def __init__(self, config: Config, sampler: Sampler, metrics: MetricsCache,
                 web_config: WebConfig | None = None) -> None:
        self.config = config
        self.sampler = sampler
        self.metrics = metrics
        self.web_config = web_config
        self.url_map = Map(strict_slashes=False)
        self.handlers: dict[str, Handler] = {}
        self._probes: dict[str, MetricsCache] = {}
        self.add("/", self.index)
        self.add("/metrics", self.metrics_endpoint)
        self.add("/probe", self.probe)
        self.add("/healthz", self.healthz)
        self.add("/readyz", self.readyz)
        self.add("/-/reload", self.reload, methods=("POST",))
        #: Set by ``pgperf serve``: reloads the configuration, records it in the audit log.
        self.reloader: Callable[[Actor], list[str]] | None = None
        #: More liveness checks for /healthz (the store writer's thread): a problem or None.
        self.liveness: list[Callable[[], str | None]] = []
        self.links: list[tuple[str, str]] = [
            ("/metrics", "metrics"), ("/healthz", "liveness"), ("/readyz", "readiness"),
        ]

    def add(self, rule: str, handler: Handler, methods: Iterable[str] = ("GET",)) -> None:
        endpoint = f"{handler.__qualname__}:{rule}"
        self.url_map.add(Rule(rule, endpoint=endpoint, methods=list(methods)))
        self.handlers[endpoint] = handler

    def identities(self) -> list[tuple[bytes, Identity]]:
        api = self.config.api
        found = [(t.token.get_secret_value().encode(), Identity(t.name, t.role)) for t in api.tokens]
        if api.token is not None:
            found.append((api.token.get_secret_value().encode(), Identity("operator", "operator")))
        if api.viewer_token is not None:
            found.append((api.viewer_token.get_secret_value().encode(), Identity("viewer", "viewer")))
        return found

    def authorize(self, request: Request, role: str = "operator") -> Response | None:
        """None when the request carries a token whose role allows *role* (operator
        allows everything, viewer only reading), else the 401 or 403 response to send.

        The token comes as ``Authorization: Bearer <token>`` or, when basic authentication
        holds the Authorization header, as ``X-Pgperf-Token``. Without any configured
        token the API is closed. The identity is kept in ``request.environ`` for the audit log.
        """
        known = self.identities()
        if not known:
            return error_response(401, "the API is disabled: set PGPERF_API_TOKEN (api.token) to enable it")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            given = request.headers.get("X-Pgperf-Token", "")
        presented = given.strip().encode()
        identity = None
        for secret, candidate in known:  # compare with every token: no early exit to time
            if hmac.compare_digest(presented, secret) and identity is None:
                identity = candidate
        if identity is None:
            response = error_response(401, "missing or wrong API token (Authorization: Bearer <token>)")
            response.headers["WWW-Authenticate"] = 'Bearer realm="pgperf"'
            return response
        if role == "operator" and identity.role != "operator":
            return error_response(403, f"token {identity.name!r} has the {identity.role} role; this needs an operator token")
        request.environ[IDENTITY_KEY] = identity
        return None

    # -- core routes --------------------------------------------------------------------

    def index(self, request: Request) -> Response:
        items = "".join(f'<li><a href="{href}">{href}</a> {text}</li>' for href, text in self.links)
        targets = "".join(
            f'<li><a href="/probe?target={name}">{name}</a></li>' for name in self.sampler.targets
        )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>pgperf</title></head><body>"
            f"<h1>pgperf</h1><ul>{items}</ul><h2>Targets</h2><ul>{targets}</ul></body></html>"
        )
        return Response(page, mimetype="text/html")

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
        cache = self._probes.get(name)
        if cache is None:
            single = self.config.model_copy(update={"targets": (target.target,), "dsn": None})
            found: TargetSampler = target

            def latest(t: TargetSampler = found) -> list[Snapshot]:
                return [t.latest] if t.latest else []

            cache = MetricsCache(latest, single, process_metrics=False)
            self._probes[name] = cache
        gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
        response = Response(cache.render(gzipped=gzipped), content_type=CONTENT_TYPE)
        if gzipped:
            response.headers["Content-Encoding"] = "gzip"
        return response

    def apply_config(self, config: Config) -> None:
        self.config = config
        self.metrics.set_config(config)
        for cache in self._probes.values():
            cache.set_config(config)

    def reload(self, request: Request) -> Response:
        """``POST /-/reload`` (operator): re-read the configuration file and environment."""
        if (denied := self.authorize(request, "operator")) is not None:
            return denied
        if self.reloader is None:
            return error_response(404, "configuration reload is only available in pgperf serve")
        identity = Identity.of(request)
        actor = Actor(identity.name if identity else "unknown", identity.role if identity else None,
                      request.remote_addr)
        try:
            changed = self.reloader(actor)
        except ConfigError as exc:
            return error_response(400, "invalid configuration; nothing was reloaded", problems=exc.problems)
        except ReloadRejected as exc:
            return error_response(409, str(exc), keys=exc.keys)
        return json_response({"status": "reloaded", "changed": changed})

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

    # -- WSGI ---------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, values = adapter.match()
            return self.handlers[endpoint](request, **values)
        except HTTPException as exc:
            return self.http_error(request, exc)

    def http_error(self, request: Request, exc: HTTPException) -> Response:
        """Werkzeug's answer to *exc* (413, 404, 405...): JSON like every other error for
        ``/api/`` paths, its HTML page elsewhere."""
        if not request.path.startswith("/api/"):
            return exc.get_response()
        status = exc.code or 500
        if status == 413:
            message = (f"request body too large: at most {self.config.web.max_request_bytes} bytes "
                       "(web.max_request_bytes)")
        else:
            message = f"{exc.name}: {exc.description}" if exc.description else str(exc.name)
        response = error_response(status, message)
        for name, value in exc.get_headers():  # Allow of a 405, for example
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = self.config.web.max_request_bytes
        web = self.web_config
        if web is not None and not web.check_basic_auth(request.headers.get("Authorization")):
            denied = Response("401 Unauthorized\n", status=401, mimetype="text/plain")
            denied.headers["WWW-Authenticate"] = 'Basic realm="pgperf"'
            return denied(environ, start_response)
        try:
            response = self.dispatch(request)
        except HTTPException as exc:
            response = self.http_error(request, exc)
        except Exception:  # last line of defence: log it, answer 500 with no detail
            log.exception("unhandled error serving %s %s", request.method, request.path)
            response = json_response({"error": "internal error; see the exporter's log"}, status=500)
        if web is not None:
            for name, value in web.headers.items():
                response.headers[name] = value
        return response(environ, start_response)


def create_app(monitor: Monitor, web_config: WebConfig | None = None) -> WebApp:
    """The whole HTTP application of ``pgperf serve`` around a Monitor."""
    config = monitor.config
    store = monitor.store
    metrics = MetricsCache(monitor.snapshots, config, store.families if store else (lambda: ()))
    if store is not None:
        metrics.set_extra_key(lambda: store.version)
    # Render each new sample in the sampler's thread, so that no scrape waits for it.
    monitor.on("sample", lambda _snapshot: metrics.refresh())
    app = WebApp(config, monitor.sampler, metrics, web_config)
    if store is not None:
        app.liveness.append(lambda: None if store.alive else "store writer thread stopped: samples are not stored")
    if monitor.alert_service is not None:
        from .alerts.web import register as register_alerts

        register_alerts(app, monitor.alert_service)
    from .reports.web import register as register_reports

    register_reports(app, monitor)
    return app


class WebServer:
    """cheroot serving a WebApp on the configured address, in a background thread."""

    def __init__(self, app: WebApp, address: str, threads: int = 16) -> None:
        host, port = parse_listen_address(address)
        self.server = wsgi.Server((host, port), app, numthreads=threads, request_queue_size=256)
        self.server.shutdown_timeout = 2
        web = app.web_config
        if web is not None and web.tls:
            assert web.cert_file and web.key_file
            adapter = BuiltinSSLAdapter(web.cert_file, web.key_file)
            adapter.context = web.ssl_context()  # versions and client certificates as configured
            self.server.ssl_adapter = adapter
        self._thread: Any = None

    def start(self) -> None:
        self.server.prepare()  # binds now, so an address in use fails here, loudly
        self._thread = threading.Thread(target=self.server.serve, name="web", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server.bind_addr[1])

    def stop(self) -> None:
        self.server.stop()
        if self._thread is not None:
            self._thread.join(5)

