"""Parsing what requests carry: bodies, JSON, query parameters — and the one time syntax
of pgperf's interfaces, shared by the command line and the API.

Times (``since``, a report's ``from`` and ``to``, ``--since``, ``--from``, ``--to``) are an
RFC 3339 time (``2024-01-01T00:00:00Z``; without an offset, UTC) or a duration back from
now (``90s``, ``15m``, ``1h``, ``2d``, ``1h30m``, or a number of seconds).

A body is read whole, up to ``web.max_request_bytes``: past it the answer is 413, whether
the client announced the length (``Content-Length``) or streamed the body
(``Transfer-Encoding: chunked``). The server then closes the connection without reading the
rest; HTTP clients (requests, curl, Go's) read the early answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request

from .._types import MIN_YEAR, bounded_time, parse_duration
from .errors import BadRequest

__all__ = [
    "TIME_SYNTAX", "choice_param", "choices_param", "int_param", "json_body", "json_object",
    "parse_time", "read_body", "time_param",
]

S = TypeVar("S", bound=str)

TIME_SYNTAX = "an RFC 3339 time (2024-01-01T00:00:00Z) or a duration back from now (1h, 2d)"


def parse_time(value: object, name: str, *, now: datetime | None = None) -> datetime:
    """*value* (see the module docstring) as an aware UTC time. ValueError naming *name* when
    it is neither form, or lies outside the years pgperf accepts (``pgperf._types``)."""
    if not isinstance(value, str) or not value.strip():
        shown = "nothing" if value is None or value == "" else repr(value)[:40]
        raise ValueError(f"{name}: expected {TIME_SYNTAX}, got {shown}")
    text = value.strip()
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = None
    if isinstance(seconds, float):
        if math.isnan(seconds) or seconds < 0:
            raise ValueError(f"{name}: expected {TIME_SYNTAX}, got {text[:40]!r}")
        try:
            at = (now or datetime.now(UTC)) - timedelta(seconds=seconds)
        except OverflowError:  # inf, 1e300, 99999999999d
            raise ValueError(f"{name}: the duration {text[:40]!r} is out of range; use a duration such as 1h or "
                             f"30d (back to the year {MIN_YEAR} at most)") from None
    else:
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{name}: expected {TIME_SYNTAX}, got {text[:40]!r}") from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
    return bounded_time(at, name)


def time_param(value: object, name: str) -> datetime:
    """``parse_time`` for a request: BadRequest instead of ValueError."""
    try:
        return parse_time(value, name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def read_body(request: Request) -> bytes:
    """The whole body; RequestEntityTooLarge (413) past ``request.max_content_length``."""
    data = request.get_data(cache=True)  # 413 at once when Content-Length is too large
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(data) >= limit:
        # A streamed (chunked) body is cut at the limit by werkzeug, silently: whether more
        # follows shows only by reading one more byte from the server's own stream.
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    return data


def json_body(request: Request, *, empty: Any = None) -> Any:
    """The body as JSON (*empty* for an empty body); BadRequest when it is not JSON."""
    raw = read_body(request)
    if not raw.strip():
        return empty
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


def json_object(request: Request, fields: Collection[str], *, example: str) -> dict[str, Any]:
    """The body as a JSON object whose keys are among *fields*; BadRequest (quoting
    *example*) otherwise."""
    body = json_body(request)
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object: {example}")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; expected {', '.join(fields)}")
    return body


def int_param(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]."""
    text = args.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise BadRequest(f"{name}: expected an integer from {low} to {high}, got {text[:20]!r}")
    return value


def choice_param(args: Mapping[str, str], name: str, allowed: Collection[S], default: S | None = None) -> S | None:
    """One of *allowed*, or *default* when the parameter is absent."""
    text = args.get(name)
    if text is None or text == "":
        return default
    for choice in allowed:
        if text == choice:
            return choice
    raise BadRequest(f"{name}: expected one of {', '.join(allowed)}, got {text[:20]!r}")


def choices_param(values: Collection[str], name: str, allowed: Collection[S]) -> list[S]:
    """Repeated and comma-separated values (``?state=firing,acknowledged&state=resolved``),
    each one of *allowed*."""
    given = [part for value in values for part in value.split(",") if part]
    chosen = [choice for part in given for choice in allowed if part == choice]
    if len(chosen) != len(given):
        wrong = [part for part in given if part not in allowed]
        raise BadRequest(f"{name}: unknown value(s) {wrong}; choose from {', '.join(allowed)}")
    return chosen
