"""A peer that keeps the TCP connection open but never answers (a stuck proxy or pooler).

The kernel acknowledges everything, so neither statement_timeout (the server never sees the
query) nor TCP keepalives notice; pgperf's stall guard must end the connection and the
sampler must report it and recover on its own.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from helpers import make_config
from pgperf.sampling import Snapshot, TargetSampler
from tools.cluster import Cluster

pytestmark = pytest.mark.faults


class FreezingProxy:
    """A TCP proxy to PostgreSQL that, once *trigger* passes through it from the client
    (or after freeze()), stops forwarding in both directions without closing anything."""

    def __init__(self, upstream_port: int, trigger: bytes | None = None) -> None:
        self.upstream_port = upstream_port
        self.trigger = trigger
        self.frozen = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while not self.closed:
                while self.frozen.is_set() and not self.closed:
                    time.sleep(0.05)  # read nothing, forward nothing, close nothing
                data = src.recv(65536)
                if not data:
                    return
                if from_client and self.trigger is not None and self.trigger in data:
                    self.trigger = None
                    self.frozen.set()
                    continue  # swallowed: the server never sees it
                dst.sendall(data)
        except OSError:
            return

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        for s in self.sockets:
            s.close()


def sample_within(sampler: TargetSampler, seconds: float) -> Snapshot:
    """One sample, which must end within *seconds* (a hung sample fails the test, not the suite)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(sampler.sample(wait=True)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the sample did not end within {seconds:.0f}s"
    assert out and out[0] is not None
    return out[0]


def test_a_peer_that_never_answers_is_cut_off_and_sampling_recovers(pg_cluster: Cluster) -> None:
    proxy = FreezingProxy(pg_cluster.port, trigger=b"pg_locks")
    dsn = f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres"
    config = make_config(dsn, connection={"statement_timeout": "0.5s", "connect_timeout": "1s"},
                         collectors={"tables": {"enabled": False}})
    sampler = TargetSampler(config.resolved_targets()[0], config)
    limit = sampler.db.settings.no_answer_after
    assert limit == 14.0
    sampler.open()
    try:
        # The locks collector's query is swallowed: no answer ever comes.
        started = time.monotonic()
        stalled = sample_within(sampler, limit + 15)
        elapsed = time.monotonic() - started
        assert proxy.frozen.is_set()
        assert not stalled.up and stalled.error_kind == "no_answer", (stalled.error_kind, stalled.error_message)
        assert limit - 1 <= elapsed <= limit + 5, elapsed
        locks = {s.name: s for s in stalled.statuses}["locks"]
        assert not locks.success and locks.error == "no_answer"
        # Still frozen: new connections get no answer either, and the sample still ends.
        again = sample_within(sampler, limit + 15)
        assert not again.up
        # The proxy answers again: sampling recovers without a restart.
        proxy.frozen.clear()
        deadline = time.monotonic() + 60
        while True:
            snap = sample_within(sampler, limit + 15)
            if snap.up or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert snap.up, (snap.error_kind, snap.error_message)
    finally:
        proxy.frozen.clear()
        sampler.close()
        proxy.close()
