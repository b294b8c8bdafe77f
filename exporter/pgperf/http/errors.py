"""The one mapping from exceptions to HTTP error answers.

Handlers raise; they never build an error response themselves. The application
(``http.app``) looks the exception up here and answers ``{"error": message, ...}`` with the
status of the most specific rule — or, on a page, the error page. An exception the map
does not know is a defect: it is logged and answered 500 without detail.

The core rules cover what every route shares: an ``HTTPProblem`` a handler raises, the
store being unreachable (503) and PostgreSQL errors from the store. Features add the rules
of their own exceptions when they register their routes (``ErrorMap.add``), so the status
of, say, an unknown alert is decided once, whichever route meets it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import psycopg
import psycopg.errors

from ..redact import redact
from ..store.client import StoreUnavailable

__all__ = [
    "Answer", "BadRequest", "Conflict", "ErrorMap", "Forbidden", "HTTPProblem", "NotFound", "ServiceUnavailable",
    "Unauthorized", "first_line",
]

E = TypeVar("E", bound=BaseException)


class HTTPProblem(Exception):
    """An error answer raised by a handler: its status, message, extra JSON fields and headers."""

    status: ClassVar[int] = 500

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra


class BadRequest(HTTPProblem):
    status = 400


class Unauthorized(HTTPProblem):
    status = 401


class Forbidden(HTTPProblem):
    status = 403


class NotFound(HTTPProblem):
    status = 404


class Conflict(HTTPProblem):
    status = 409


class ServiceUnavailable(HTTPProblem):
    status = 503


@dataclass(frozen=True)
class Answer:
    """What to answer for an exception."""

    status: int
    message: str
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Rule:
    status: int
    describe: Callable[[Any], str]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, secrets masked (a DSN, a password literal);
    the class name when the message is empty."""
    text = redact(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ErrorMap:
    """Exception classes to statuses; the most specific class of an exception's MRO wins."""

    def __init__(self) -> None:
        self._rules: dict[type[BaseException], _Rule] = {}
        self.add(StoreUnavailable, 503)
        # Alertmanager retries a webhook answered 5xx: right while the store is down or
        # not migrated yet, wrong for a value PostgreSQL refuses (a NUL character), which
        # would be refused again.
        self.add(psycopg.errors.UndefinedTable, 503,
                 lambda exc: "the store's tables are not there yet: pgperf creates them when it reaches the store "
                             "(or run pgperf migrate)")
        self.add(psycopg.DataError, 400, lambda exc: f"invalid value: {first_line(exc)}")
        self.add(psycopg.Error, 503, lambda exc: f"store error: {first_line(exc)}")

    def add(self, kind: type[E], status: int, describe: Callable[[E], str] = str) -> None:
        """Answer *status* with ``describe(exc)`` for *kind* and its subclasses (unless a more
        specific class has its own rule)."""
        self._rules[kind] = _Rule(status, describe)

    @property
    def handled(self) -> tuple[type[BaseException], ...]:
        """The classes with a rule, for an ``except`` clause; HTTPProblem always included."""
        return (HTTPProblem, *self._rules)

    def answer(self, exc: BaseException) -> Answer:
        """The answer for *exc*, which must be an instance of one of ``handled``."""
        if isinstance(exc, HTTPProblem):
            return Answer(exc.status, exc.message, exc.extra, exc.headers)
        for kind in type(exc).__mro__:
            rule = self._rules.get(kind)
            if rule is not None:
                return Answer(rule.status, rule.describe(exc))
        raise LookupError(f"no error rule for {type(exc).__name__}")
