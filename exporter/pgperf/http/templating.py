"""The pages' templates (``templates/*.html``): one Jinja2 environment, autoescaping on.

Everything a template prints is escaped unless it is ``markupsafe.Markup`` — HTML that
pgperf built itself (the charts' markup) and marked as such. A name used by a template but
not given to it is an error, not an empty string.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from werkzeug.wrappers import Response

__all__ = ["ENVIRONMENT", "page", "render"]

ENVIRONMENT = Environment(
    loader=PackageLoader("pgperf.http", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render(name: str, **context: Any) -> str:
    """The template *name* rendered with *context*."""
    return ENVIRONMENT.get_template(name).render(**context)


def page(name: str, status: int = 200, **context: Any) -> Response:
    """An HTML response of the template *name*."""
    return Response(render(name, **context), status=status, mimetype="text/html")
