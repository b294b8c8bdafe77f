"""What the sampler of one target remembers about its collectors from one sample to the
next, and logs once per change.

* A collector disabled (missing privilege, view, extension; too old a server) stays
  disabled until the next reconnect, when the server's capabilities may have changed.
* A collector with an ``interval`` option runs at most that often; the samples in between
  serve the families and record of its last successful run again.
* A failing collector is logged when it starts failing (or fails differently) and when it
  works again, not on every sample.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..collectors import Family, Record
from .snapshot import CollectorStatus

__all__ = ["CollectorTracker", "Skip"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skip:
    """A collector that does not run in this sample: its status, and what is served for it."""

    status: CollectorStatus
    families: tuple[Family, ...] = ()
    record: Record | None = None


@dataclass(frozen=True)
class _LastRun:
    """The last successful run of a collector with an ``interval``, served in between."""

    monotonic: float
    status: CollectorStatus
    families: tuple[Family, ...]
    record: Record | None


class CollectorTracker:
    """Disabled collectors, failing ones and the last runs of those with an interval, for one target."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._disabled: dict[str, tuple[str, int]] = {}  # name -> (reason, connection generation)
        self._failing: dict[str, str] = {}  # name -> error kind, to log changes only
        self._last_runs: dict[str, _LastRun] = {}

    def skip(self, name: str, generation: int, every: float | None, sample_interval: float) -> Skip | None:
        """Why collector *name* does not run in this sample, or None when it should.

        *generation* counts the target's reconnects; *every* is the collector's
        ``interval`` option (None: every sample).
        """
        disabled = self._disabled.get(name)
        if disabled is not None:
            reason, since = disabled
            if since == generation:
                return Skip(CollectorStatus(name, False, 0.0, disabled=reason))
            del self._disabled[name]  # reconnected: capabilities may have changed, try again
        last = self._last_runs.get(name)
        # Due when the next sample would come later than the interval allows (samples are
        # sample_interval apart, so "now + half an interval" rounds to the nearest sample).
        if every and last is not None and time.monotonic() - last.monotonic + sample_interval / 2 < every:
            return Skip(last.status, last.families, last.record)
        return None

    def disable(self, name: str, reason: str, detail: str, generation: int) -> CollectorStatus:
        """Disable collector *name* until the connection's next generation."""
        self._disabled[name] = (reason, generation)
        self._last_runs.pop(name, None)
        log.warning("target %s: collector %s disabled (%s): %s", self.target, name, reason, detail,
                    extra={"target": self.target, "collector": name, "error_kind": reason})
        return CollectorStatus(name, False, 0.0, disabled=reason)

    def failed(self, name: str, kind: str, detail: str, duration: float) -> CollectorStatus:
        if self._failing.get(name) != kind:
            log.warning("target %s: collector %s failed (%s): %s", self.target, name, kind, detail,
                        extra={"target": self.target, "collector": name, "error_kind": kind})
            self._failing[name] = kind
        return CollectorStatus(name, False, duration, error=kind)

    def succeeded(self, name: str, duration: float, now: float, every: float | None,
                  families: Sequence[Family], record: Record | None) -> CollectorStatus:
        """A successful run at wall-clock time *now*; kept to be served again when the
        collector has an interval (*every*)."""
        if name in self._failing:
            log.info("target %s: collector %s works again", self.target, name,
                     extra={"target": self.target, "collector": name})
            del self._failing[name]
        status = CollectorStatus(name, True, duration, ran_at=now)
        if every:
            self._last_runs[name] = _LastRun(time.monotonic(), status, tuple(families), record)
        return status
