"""Log lines as other Prometheus exporters write them: logfmt (the default) or JSON lines.

Every line is one record with the fields ``ts`` (RFC 3339, UTC, milliseconds), ``level``
(``debug``, ``info``, ``warn``, ``error``), ``logger`` and ``msg``, then what the record
says it is about — ``target``, ``collector``, ``database``, ``error_kind`` — then any
other field a caller passed with ``extra=``, and ``exc`` for a traceback (one field: a
line never spans several). Each field's value is redacted (``redact.redact``): a password
cannot leave through an extra field any more than through the message.

Fields passed with ``extra=`` win. Until pgperf's callers pass them, they are read from
the format string of the message, whose placeholders say what their arguments are:
``target %s``, ``collector %s`` and ``database %s`` name the argument, and a placeholder
in parentheses in a message about a failure (``failed (%s)``, ``unreachable (%s)``) is
the ``error_kind``. The format string is code, not data: this never parses user text.

``--log.format logfmt`` writes ``key=value`` pairs, quoting and escaping values as
logfmt readers expect (``logfmter``); ``--log.format json`` writes one JSON object per
line, ASCII-only, which any JSON reader parses.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from logfmter import Logfmter

from .redact import redact

__all__ = ["FORMATS", "LogFormat", "StructuredFormatter", "capture_uncaught"]

LogFormat = Literal["logfmt", "json"]
FORMATS: tuple[LogFormat, ...] = ("logfmt", "json")

# Level names as Go exporters (go-kit, slog) write them.
_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error",
           logging.CRITICAL: "error"}

# Attributes every LogRecord has: what is left in a record's __dict__ came with extra=.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

# A printf placeholder of the logging module's %-style messages ("%%" is a literal).
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa%]")
_NAMED = re.compile(r"\b(target|collector|database) $")
_FAILURE = re.compile(r"\b(failed|disabled|unreachable|refuses|cannot|unavailable)\b")


def _derived(record: logging.LogRecord) -> dict[str, Any]:
    """Fields named by the placeholders of the record's format string (see the module
    docstring), from its positional arguments."""
    # RedactingFilter replaces a message holding a secret by its redacted text, and keeps
    # the format string and arguments aside for this.
    msg, args = getattr(record, "_pgperf_template", (record.msg, record.args))
    if not isinstance(msg, str) or not isinstance(args, tuple) or not args:
        return {}
    fields: dict[str, Any] = {}
    failure = record.levelno >= logging.WARNING and _FAILURE.search(msg) is not None
    index = 0
    for match in _PLACEHOLDER.finditer(msg):
        if match.group() == "%%":
            continue
        if index >= len(args):
            break
        before = msg[:match.start()]
        named = _NAMED.search(before)
        if named:
            fields.setdefault(named.group(1), args[index])
        elif failure and before.endswith("(") and msg[match.end():].startswith(")") and "error_kind" not in fields:
            fields["error_kind"] = args[index]
        index += 1
    return fields


def _text(value: Any) -> Any:
    """A field's value as written: numbers and booleans as they are, anything else as
    redacted text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(value if isinstance(value, str) else str(value))


class StructuredFormatter(logging.Formatter):
    """Formats a record as one logfmt or JSON line (see the module docstring)."""

    def __init__(self, fmt: LogFormat = "logfmt") -> None:
        super().__init__()
        if fmt not in FORMATS:
            raise ValueError(f"unknown log format {fmt!r}: expected one of {', '.join(FORMATS)}")
        self.fmt = fmt

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """The fields of *record*, in order, every value redacted."""
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        fields: dict[str, Any] = {"ts": ts, "level": _LEVELS.get(record.levelno, record.levelname.lower()),
                                  "logger": record.name, "msg": record.getMessage()}
        extra = {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}
        for key, value in _derived(record).items():
            if key not in extra:
                fields[key] = value
        fields.update(extra)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exc"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return {key: _text(value) for key, value in fields.items()}

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        if self.fmt == "json":
            return json.dumps(fields, ensure_ascii=True, default=str)
        return Logfmter.format_params({Logfmter.normalize_key(k): v for k, v in fields.items()})


def capture_uncaught(logger: logging.Logger) -> None:
    """Log uncaught exceptions (of the main thread and of other threads) and Python
    warnings through *logger*'s handlers, so that they are structured and redacted like
    every other line instead of printed raw on standard error."""
    logging.captureWarnings(True)

    def main_hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        logger.critical("uncaught exception: %s", kind.__name__, exc_info=(kind, exc, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None:
            return
        name = args.thread.name if args.thread is not None else "?"
        logger.error("uncaught exception in thread %s: %s", name, args.exc_type.__name__,
                     exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    hook: Callable[[type[BaseException], BaseException, TracebackType | None], Any] = main_hook
    sys.excepthook = hook
    threading.excepthook = thread_hook
