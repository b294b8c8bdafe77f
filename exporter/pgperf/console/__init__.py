"""The console: pgperf's pages in the browser, on its own port and behind its TLS and
authentication — the overview of every target (live), alerts with acknowledge and
resolve, statements, reports and targets.

* ``overview``: what the overview shows of a target, built from the sampler's snapshots;
* ``live``: the feed turning each sample and alert change into the page's state and a
  server-sent event;
* ``queries``: what the pages read from the sample store;
* ``routes``: the pages, the sign-in and the event stream.

The templates are under ``pgperf/http/templates/console``, the scripts and the stylesheet
under ``pgperf/http/static``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..alerts.service import AlertService
from ..http.app import WebApp
from ..sampling import Sampler
from ..store.client import StoreClient
from .live import LiveFeed
from .routes import ConsoleRoutes
from .routes import register as register_routes

__all__ = ["LiveFeed", "register"]


def register(web: WebApp, sampler: Sampler, on: Callable[[str, Callable[[Any], None]], None], *,
             alerts: AlertService | None, client: StoreClient | None) -> ConsoleRoutes:
    """Add the console's routes to *web* and feed its live view: *on* subscribes to the
    application's events (``sample``, ``alert``, ``alert_acknowledged``, ``alert_resolved``)."""
    feed = LiveFeed(web.hub, lambda: web.config.expose_query_text)
    on("sample", feed.on_sample)
    on("alert", feed.on_alert("fired"))
    on("alert_acknowledged", feed.on_alert("acknowledged"))
    on("alert_resolved", feed.on_alert("resolved"))
    return register_routes(web, sampler, feed, alerts, client)
