"""Running one collector once, and what its failure means.

``pgperf serve`` (the sampler) and ``pgperf check`` both run collectors through
``invoke``, so that both say the same thing about the same failure:

* a missing privilege, function, view or extension, or too old a server: the collector is
  *disabled* with a reason (it cannot work on this server until something changes there);
* a statement or lock timeout, or another query error: it *failed* this time, with the kind
  of error;
* a connection error: failed with the connection error's kind; a server that gives no
  answer at all has the connection closed under it by the stall guard (``no_answer``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg
import psycopg.errors

from ..collectors import CollectContext, CollectorDisabled, CollectorOptions, CollectorResult, CollectorSpec
from ..config import Config
from ..db import STALL_GUARD, ServerInfo, classify_error, is_local

__all__ = ["Outcome", "first_line", "invoke", "is_enabled", "options_for", "too_old"]

log = logging.getLogger(__name__)

# Errors that mean "this collector cannot work here", not "this sample failed".
_UNSUPPORTED = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedObject,
    psycopg.errors.FeatureNotSupported,
    psycopg.errors.ObjectNotInPrerequisiteState,
)


@dataclass(frozen=True)
class Outcome:
    """What one call of a collector gave: a result, a reason to disable the collector, or
    an error kind. Exactly one of the three is set."""

    duration: float
    result: CollectorResult | None = None
    disabled: tuple[str, str] | None = None  # (reason, detail)
    error: tuple[str, str] | None = None  # (kind, detail)


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (a server error's detail and hint follow it)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def options_for(spec: CollectorSpec, config: Config) -> CollectorOptions:
    """The configured options of *spec* (its defaults for a collector the configuration
    schema does not know, such as one a test adds)."""
    options: CollectorOptions | None = getattr(config.collectors, spec.name, None)
    return options if options is not None else spec.options()


def is_enabled(spec: CollectorSpec, config: Config, dsn: str) -> bool:
    """Whether *spec* runs for the target at *dsn*; ``auto`` (the host collector's
    default) means: when the target is on this machine."""
    enabled: bool | str = options_for(spec, config).enabled
    if enabled == "auto":
        return is_local(dsn)
    return bool(enabled)


def too_old(spec: CollectorSpec, server: ServerInfo | None) -> tuple[str, str] | None:
    """Why *spec* cannot run on *server* (reason, detail), or None when its version will do."""
    if server is not None and server.version_num < spec.min_version:
        return "unsupported_version", f"needs PostgreSQL {spec.min_version // 10000} or later"
    return None


def invoke(spec: CollectorSpec, ctx: CollectContext, no_answer_after: float) -> Outcome:
    """Call the collector and classify whatever it raises (around this one collector,
    never around a whole sample). A call on a connection that gets no answer for
    *no_answer_after* seconds has the connection closed and fails with ``no_answer``."""
    version = too_old(spec, ctx.server)
    if version is not None:
        return Outcome(0.0, disabled=version)
    if ctx.conn is None:
        return _call(spec, ctx)
    with STALL_GUARD.guard(ctx.conn, no_answer_after) as watch:
        outcome = _call(spec, ctx)
    if watch.fired and outcome.error is not None:
        return Outcome(outcome.duration, error=(
            "no_answer", f"no answer within {watch.seconds:.0f}s: pgperf closed the connection"))
    return outcome


def _call(spec: CollectorSpec, ctx: CollectContext) -> Outcome:
    started = time.monotonic()
    try:
        result = spec.collect(ctx)
    except CollectorDisabled as exc:
        return Outcome(time.monotonic() - started, disabled=(exc.reason, exc.detail))
    except psycopg.errors.InsufficientPrivilege as exc:
        return Outcome(time.monotonic() - started, disabled=("insufficient_privilege", first_line(exc)))
    except _UNSUPPORTED as exc:
        return Outcome(time.monotonic() - started, disabled=("unsupported", first_line(exc)))
    except psycopg.errors.QueryCanceled as exc:
        return Outcome(time.monotonic() - started, error=("statement_timeout", first_line(exc)))
    except psycopg.errors.LockNotAvailable as exc:
        return Outcome(time.monotonic() - started, error=("lock_timeout", first_line(exc)))
    except psycopg.OperationalError as exc:
        return Outcome(time.monotonic() - started, error=(classify_error(exc), first_line(exc)))
    except psycopg.Error as exc:
        return Outcome(time.monotonic() - started, error=("query_error", first_line(exc)))
    except Exception as exc:  # a bug in one collector must not take the others down
        log.exception("target %s: collector %s failed unexpectedly", ctx.target, spec.name,
                      extra={"target": ctx.target, "collector": spec.name, "error_kind": "internal_error"})
        return Outcome(time.monotonic() - started, error=("internal_error", f"{type(exc).__name__}: {exc}"))
    return Outcome(time.monotonic() - started, result=result)
