"""Server-sent events: the hub that fans events out to the browsers' streams (``GET /events``).

Whatever publishes (the console's live feed, for every sample and every alert change)
calls ``EventHub.publish``; each open stream has its own bounded queue and its own server
thread. A thread of the web server is held for as long as a stream is open, so the
number of streams is capped (``max_streams``, half the server's threads by default): past
it ``subscribe`` raises TooManyStreams and the route answers 503. A client too slow to
take its events (its queue full) is dropped; its browser reconnects. A stream also ends
when its ``alive`` check fails (the session behind it ended), and every stream ends on
``close()``, so that stopping the server never waits for a browser.

Streams send a comment every ``heartbeat`` seconds: a browser gone away is noticed when
that write fails, and proxies do not close an idle stream.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Event", "EventHub", "Subscription", "TooManyStreams"]

#: How long a browser waits before reconnecting a stream that ended, in milliseconds.
RETRY_MS = 3000


class TooManyStreams(Exception):
    """Every stream this server allows is open."""


@dataclass(frozen=True)
class Event:
    """One server-sent event: *data* (sent as JSON) and its name (None: ``message``)."""

    data: Any
    name: str | None = None

    def encode(self) -> bytes:
        text = json.dumps(self.data, separators=(",", ":"), default=str)
        head = f"event: {self.name}\n" if self.name else ""
        # json.dumps escapes newlines inside strings: the data is one line.
        return f"{head}data: {text}\n\n".encode()


_END = object()


class Subscription:
    """One open stream: its queue, and the generator of bytes the response sends."""

    def __init__(self, hub: EventHub, size: int) -> None:
        self._hub = hub
        self._queue: queue.Queue[object] = queue.Queue(size)

    def offer(self, item: object) -> bool:
        """Queue *item*; False when the queue is full (the client is too slow)."""
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            return False

    def end(self) -> None:
        """Make the stream end after what is queued (or at once when the queue is full)."""
        if not self.offer(_END):
            while True:  # drop what the client did not take: it reconnects and starts afresh
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self.offer(_END)

    def stream(self, first: Iterable[Event] = (), alive: Callable[[], bool] = lambda: True) -> Iterator[bytes]:
        """The bytes of the response: the retry delay, *first*, then each event published,
        with heartbeats, until the hub closes, this client is dropped or *alive* fails."""
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            for event in first:
                yield event.encode()
            while True:
                try:
                    item = self._queue.get(timeout=self._hub.heartbeat)
                except queue.Empty:
                    if not alive():
                        return
                    yield b": keep-alive\n\n"
                    continue
                if item is _END or not alive():
                    return
                assert isinstance(item, Event)
                yield item.encode()
        finally:
            self._hub.unsubscribe(self)


class EventHub:
    """Publishes events to every open stream, at most *max_streams* of them."""

    def __init__(self, max_streams: int, *, heartbeat: float = 15.0, queue_size: int = 64) -> None:
        self.max_streams = max_streams
        self.heartbeat = heartbeat
        self.queue_size = queue_size
        self._subscribers: list[Subscription] = []
        self._lock = threading.Lock()
        self._closed = False

    def subscribe(self) -> Subscription:
        """A new stream; TooManyStreams when *max_streams* are open or the hub is closed."""
        with self._lock:
            if self._closed or len(self._subscribers) >= self.max_streams:
                raise TooManyStreams(f"{len(self._subscribers)} event streams are open, the most this server "
                                     f"allows (half of web.threads); try again later")
            subscription = Subscription(self, self.queue_size)
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    @property
    def streams(self) -> int:
        """The streams open now."""
        with self._lock:
            return len(self._subscribers)

    def publish(self, event: Event) -> None:
        """Send *event* to every stream; a stream whose queue is full is ended."""
        with self._lock:
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            if not subscription.offer(event):
                subscription.end()
                self.unsubscribe(subscription)

    def close(self) -> None:
        """End every stream and refuse new ones (the server is stopping)."""
        with self._lock:
            self._closed = True
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            subscription.end()
