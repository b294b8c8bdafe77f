"""A target's sampling health from one sample to the next: the cumulative counters every
snapshot carries (samples, failures, overruns, errors by kind) and the log lines of the
database becoming unreachable and reachable again, once per change."""

from __future__ import annotations

import logging
from types import MappingProxyType

from .snapshot import Counters

__all__ = ["SampleHealth"]

log = logging.getLogger(__name__)


class SampleHealth:
    """The counters of one target's sampler and its last connection state."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.counters = Counters()
        self._down_kind: str | None = None  # the kind of error the database is down with

    def connection(self, up: bool, kind: str | None, message: str | None) -> None:
        """Log a change of reachability: down (or down for another reason) and back up."""
        if up and self._down_kind is not None:
            log.info("target %s: database reachable again", self.target, extra={"target": self.target})
            self._down_kind = None
        elif not up and kind != self._down_kind:
            log.error("target %s: database unreachable (%s): %s", self.target, kind, message,
                      extra={"target": self.target, "error_kind": kind})
            self._down_kind = kind

    def count(
        self,
        *,
        samples: int = 0,
        failed: int = 0,
        overruns: int = 0,
        connection_error: str | None = None,
        collector_errors: list[str] | None = None,
        success_at: float | None = None,
    ) -> Counters:
        """Add to the counters (a new immutable Counters, so a snapshot's copy never changes)."""
        c = self.counters
        collector_errs = dict(c.collector_errors)
        for name in collector_errors or ():
            collector_errs[name] = collector_errs.get(name, 0) + 1
        conn_errs = dict(c.connection_errors)
        if connection_error:
            conn_errs[connection_error] = conn_errs.get(connection_error, 0) + 1
        self.counters = Counters(
            samples=c.samples + samples,
            failed_samples=c.failed_samples + failed,
            overruns=c.overruns + overruns,
            collector_errors=MappingProxyType(collector_errs),
            connection_errors=MappingProxyType(conn_errs),
            last_success=success_at if success_at is not None else c.last_success,
        )
        return self.counters
