"""The live feed: each sample of each target becomes the overview's state and one
server-sent event; each alert change becomes an ``alert`` event.

The feed is called in the sampler's thread right after a sample (the application's
``sample`` event) and by the alert service when an alert fires, is acknowledged or is
resolved: it never reads the database, it relays what was already read. The event of a
sample carries the overview's figures as JSON and the target's part of the page rendered
by the same template as the page itself (so the browser swaps it in as is, escaped the
same way), and the point the overview's chart appends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..http import templating
from ..http.events import Event, EventHub
from ..models import PerformanceAlert
from ..sampling import Snapshot
from .overview import CollectorLine, HistoryPoint, TargetOverview, TargetTracker, health

__all__ = ["LiveFeed"]

#: Characters of an alert's message in its event.
MESSAGE_CHARS = 300


class LiveFeed:
    """The overview's state per target, published to *hub* as it changes."""

    def __init__(self, hub: EventHub, show_texts: Callable[[], bool]) -> None:
        self.hub = hub
        self.show_texts = show_texts
        self._trackers: dict[str, TargetTracker] = {}
        self._lock = threading.Lock()

    # -- what the pages read ------------------------------------------------------------

    def overview(self, target: str) -> TargetOverview | None:
        with self._lock:
            tracker = self._trackers.get(target)
            return tracker.latest if tracker else None

    def history(self, target: str) -> list[HistoryPoint]:
        with self._lock:
            tracker = self._trackers.get(target)
            return list(tracker.history) if tracker else []

    def collectors(self, target: str) -> tuple[CollectorLine, ...]:
        with self._lock:
            tracker = self._trackers.get(target)
            return tracker.collectors if tracker else ()

    def current_events(self) -> list[Event]:
        """The latest sample event of every target, for a stream that just opened."""
        with self._lock:
            latest = [t.latest for t in self._trackers.values() if t.latest is not None]
        return [self._sample_event(o, None) for o in latest]

    # -- what feeds it -----------------------------------------------------------------

    def on_sample(self, snap: Snapshot) -> None:
        """Take a new sample (the application's ``sample`` event)."""
        with self._lock:
            tracker = self._trackers.setdefault(snap.target, TargetTracker())
            overview = tracker.update(snap, self.show_texts())
            point = tracker.history[-1]
        if self.hub.streams:  # render only for someone watching
            self.hub.publish(self._sample_event(overview, point))

    def on_alert(self, change: str) -> Callable[[PerformanceAlert], None]:
        """The callback for an alert event: *change* is fired, acknowledged or resolved."""
        def publish(alert: PerformanceAlert) -> None:
            self.hub.publish(Event({
                "change": change, "alert_id": alert.alert_id, "status": alert.status, "severity": alert.severity,
                "metric": alert.metric, "target": alert.target, "message": alert.message[:MESSAGE_CHARS],
            }, "alert"))
        return publish

    def _sample_event(self, overview: TargetOverview, point: HistoryPoint | None) -> Event:
        data: dict[str, Any] = {
            "target": overview.target, "seq": overview.seq, "taken_at": overview.taken_at,
            "health": health(overview, time.time()), "overview": overview.to_json(),
            "html": templating.render("console/_live.html", t=overview, health=health(overview, time.time())),
        }
        if point is not None:
            data["point"] = {"t": point.t, "tps": point.tps, "connections": point.connections}
        return Event(data)
