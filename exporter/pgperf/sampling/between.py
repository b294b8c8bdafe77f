"""Work a target's sampler does between two samples, on the connection it samples with.

Query insight looks at the active sessions every second or so, more often than samples
are taken; opening a connection for that would cost more than the look itself. So the
sampler's loop, while it waits for the next sample, hands its own pooled connection to
a ``BetweenSamples`` every ``interval`` seconds. The sample schedule comes first: work due
less than ``MARGIN`` seconds before the next sample waits until after it (and then runs at
once), so a sample is never started late for it.

The sampling package knows nothing of what the work is; the composition root gives each
target's sampler its work (``Sampler(between=...)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import psycopg

from ..collectors import Family
from ..db import ServerInfo

__all__ = ["MARGIN", "BetweenSamples"]

#: Seconds before the next sample within which no work starts.
MARGIN = 0.05


class BetweenSamples(Protocol):
    """What a sampler runs between its samples (see the module docstring)."""

    @property
    def interval(self) -> float | None:
        """Seconds between two runs; None: do not run (read at every wait)."""

    def run(self, conn: psycopg.Connection[Any], server: ServerInfo) -> None:
        """Do the work on *conn* (the sampler's own connection, in autocommit). It handles
        its own database errors; the connection's state is checked by the pool after."""

    def families(self) -> Iterable[Family]:
        """Families added to every snapshot of the target."""
