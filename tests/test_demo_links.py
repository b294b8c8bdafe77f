"""The demo prints only pages that answer: links() against stand-ins for the servers it
runs, one like Debian's Prometheus 2.42 (classic pages under /classic/, 404 elsewhere)
and Alertmanager without its web UI, one with the React UI and the Alertmanager UI."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

from tools.cluster import free_port
from tools.demo import links


@contextmanager
def server(pages: set[str]) -> Iterator[str]:
    """A server answering 200 for *pages* and 404 for everything else; its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path.split("?")[0] in pages
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok" if found else b"no")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


PGPERF = {"/login", "/metrics", "/api/v1/alerts"}


def test_debian_prometheus_gets_its_classic_pages_and_alertmanager_its_api() -> None:
    with server(PGPERF) as pgperf, server({"/classic/targets", "/classic/alerts", "/graph"}) as prometheus, \
            server({"/api/v2/alerts"}) as alertmanager, server({"/"}) as sink:
        printed = links({"pgperf": pgperf, "prometheus": prometheus, "alertmanager": alertmanager}, "t0ken",
                        SimpleNamespace(url=sink))  # type: ignore[arg-type]
    urls = [url for _, url, _ in printed]
    assert urls == [pgperf + "/login", pgperf + "/metrics", pgperf + "/api/v1/alerts",
                    prometheus + "/classic/targets", prometheus + "/classic/alerts",
                    alertmanager + "/api/v2/alerts", sink + "/"]
    assert "no web UI in this build" in dict((url, note) for _, url, note in printed)[alertmanager + "/api/v2/alerts"]


def test_a_full_prometheus_and_alertmanager_get_their_ui_and_dead_pages_are_left_out() -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens
    with server({"/targets", "/alerts", "/classic/targets"}) as prometheus, \
            server({"/script.js", "/api/v2/alerts"}) as alertmanager:
        printed = links({"pgperf": dead, "prometheus": prometheus, "alertmanager": alertmanager}, "t0ken",
                        SimpleNamespace(url=dead))  # type: ignore[arg-type]
    assert [url for _, url, _ in printed] == [prometheus + "/targets", prometheus + "/alerts",
                                              alertmanager + "/#/alerts"]
