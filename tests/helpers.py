"""Helpers shared by the tests: an in-process exporter, scrape parsing, waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar

import requests
from prometheus_client.parser import text_string_to_metric_families

from pgperf.app import App
from pgperf.collectors import REGISTRY, CollectorSpec
from pgperf.config import Config, load_config
from pgperf.http.webconfig import WebConfig
from pgperf.monitor import Monitor

T = TypeVar("T")


def make_config(dsn: str | None, **flags: Any) -> Config:
    """A development-profile configuration for *dsn* (None: the ``targets`` of *flags*);
    *flags* are nested overrides."""
    base: dict[str, Any] = {"profile": "development", "sampling_interval": 1}
    if dsn is not None:
        base["dsn"] = dsn
    base.update(flags)
    base.setdefault("store", {}).setdefault("enabled", False)
    return load_config(flags=base, env={})


class Exporter:
    """What ``pgperf serve`` runs (the App and its web server) in this process, on a free
    port (or *address*); ``monitor`` is the Python API over the same App."""

    def __init__(self, config: Config, registry: Sequence[CollectorSpec] = REGISTRY, *, web_config: WebConfig | None = None, address: str = "127.0.0.1:0") -> None:
        self.config = config
        self.app = App(config, web_config=web_config, registry=registry)
        self.monitor = Monitor.of(self.app)
        self.sampler = self.app.sampler
        self.web = self.app.web
        self.server = self.app.server(address)

    def start(self) -> Exporter:
        self.server.start()
        self.app.start()
        return self

    def stop(self) -> None:
        self.app.stop()
        self.server.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def scrape(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        response = self.get("/metrics")
        response.raise_for_status()
        return parse(response.text)

    def value(self, name: str, **labels: str) -> float | None:
        return value(self.scrape(), name, **labels)


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Exposition text -> {sample name: [(labels, value), ...]}."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float | None:
    for sample_labels, v in samples.get(name, []):
        if all(sample_labels.get(k) == want for k, want in labels.items()):
            return v
    return None


@contextmanager
def running_exporter(config: Config) -> Iterator[Exporter]:
    exporter = Exporter(config).start()
    try:
        yield exporter
    finally:
        exporter.stop()


def wait_until(check: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.1,
               message: str = "condition") -> T:
    """Poll *check* until it returns something truthy; fail with *message* after *timeout*."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


class LocalHTTPServer:
    """A stand-in HTTP server on a free loopback port, serving *handler* in a thread while
    used as a context manager."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
