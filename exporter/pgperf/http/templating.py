"""The pages' templates (``templates/``): one Jinja2 environment, autoescaping on.

Everything a template prints is escaped unless it is ``markupsafe.Markup`` — HTML that
pgperf built itself and marked as such. A name used by a template but not given to it is
an error, not an empty string. ``static_url(name)`` links a file of ``static/`` under its
digest (``http.static``); ``Chrome`` is what every console page shows around its content.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from .sessions import Session
from .static import STATIC

if TYPE_CHECKING:  # Jinja2 and MarkupSafe are imported with the first page (see environment())
    from jinja2 import Environment
    from markupsafe import Markup

__all__ = ["NAVIGATION", "Chrome", "clock", "duration", "environment", "json_script", "number", "page", "render", "when"]

#: The console's sections: (path, label, the ``active`` name of its pages).
NAVIGATION = (("/", "Overview", "overview"), ("/alerts", "Alerts", "alerts"), ("/reports/", "Reports", "reports"),
              ("/targets", "Targets", "targets"))


def _finite(value: Any) -> Any:
    """*value* with every NaN or infinity replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def when(value: datetime | float | None, seconds: bool = True) -> str:
    """A time (a datetime, or epoch seconds) in UTC, as every page shows times."""
    if value is None:
        return "n/a"
    at = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def clock(value: float | None) -> str:
    """The time of day (UTC) of epoch seconds *value*: 16:09:03."""
    return "n/a" if value is None else datetime.fromtimestamp(value, UTC).strftime("%H:%M:%S")


def number(value: float | None, digits: int = 0, unit: str = "") -> str:
    """*value* with thousands separators and *digits* decimals, then *unit*; n/a for None."""
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def duration(seconds: float | None) -> str:
    """A length of time in its largest sensible unit: 850 ms, 12.5 s, 3 min 20 s, 2 h 5 min."""
    if seconds is None:
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:,.0f} ms"
    if seconds < 60:
        return f"{seconds:,.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def json_script(value: Any) -> Markup:
    """*value* as JSON to put inside ``<script type="application/json">``: ``<``, ``>`` and
    ``&`` are escaped as JSON unicode escapes (and every non-ASCII character), so no text
    in it can end the element."""
    from markupsafe import Markup

    text = json.dumps(_finite(value), separators=(",", ":"), default=str, allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


@dataclass(frozen=True)
class Chrome:
    """What a console page shows around its content: who is signed in, the CSRF token its
    forms carry, the section it belongs to, and the links of the footer."""

    user: str
    role: str
    csrf_token: str
    active: str
    links: Sequence[tuple[str, str]] = ()

    @property
    def operator(self) -> bool:
        return self.role == "operator"

    @property
    def navigation(self) -> tuple[tuple[str, str, str], ...]:
        return NAVIGATION

    @staticmethod
    def of(request: Request, active: str, links: Sequence[tuple[str, str]] = ()) -> Chrome:
        """The chrome of a page served to *request*'s session (the route needs one)."""
        session = Session.of(request)
        if session is None:
            raise LookupError("a console page was served without a session")
        return Chrome(session.identity.name, session.identity.role, session.csrf_token, active, tuple(links))


@cache
def environment() -> Environment:
    """The console's Jinja2 environment, made (and Jinja2 imported) when the first page or
    fragment is rendered: an exporter nobody browses does not hold the template engine,
    about 2 MiB of its resident memory (bench/README.md)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("pgperf.http", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(static_url=STATIC.url, json_script=json_script, ui=None)
    env.filters.update(when=when, clock=clock, number=number, duration=duration)
    return env


def render(name: str, **context: Any) -> str:
    """The template *name* rendered with *context*."""
    return environment().get_template(name).render(**context)


def page(name: str, status: int = 200, **context: Any) -> Response:
    """An HTML response of the template *name*."""
    return Response(render(name, **context), status=status, mimetype="text/html")
