"""All targets of one process: one ``TargetSampler`` thread per target, spread over the
sampling interval, added, changed and removed while the others go on (a reload, a change
of the target file)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from .. import collectors
from ..collectors import CollectorSpec
from ..config import Config, Target
from .between import BetweenSamples
from .snapshot import Snapshot
from .target import Listener, TargetSampler
from .visit import ConnectionBudget

__all__ = ["Sampler", "spread"]

log = logging.getLogger(__name__)

_GOLDEN = (5 ** 0.5 - 1) / 2


def spread(k: int) -> float:
    """Where the *k*-th target started samples in the interval, as a fraction of it.

    The fractional parts of k times the golden ratio spread any number of targets about
    evenly, and each new one lands in one of the largest gaps left (the three-gap
    theorem), so a target added later needs no new schedule for the others.
    """
    return (k * _GOLDEN) % 1.0


class Sampler:
    """All targets of one process, each sampled in its own thread.

    Targets are spread over the sampling interval rather than sampled all at once, and can
    be added, changed and removed while the others go on (``set_targets``).

    *registry* is the collector set every target enables collectors from; *between*
    gives each target its work between samples (None: none).
    """

    def __init__(self, config: Config, *, listeners: tuple[Listener, ...] = (),
                 registry: Sequence[CollectorSpec] = collectors.REGISTRY,
                 between: Callable[[Target], BetweenSamples | None] | None = None) -> None:
        self.config = config
        self.listeners = listeners
        self.registry = tuple(registry)
        #: One cap on the connections held while visiting databases, for every target.
        self.budget = ConnectionBudget(config.connection.max_database_connections)
        self.between = between
        #: name -> sampler; replaced, never changed in place, so readers need no lock.
        self.targets: Mapping[str, TargetSampler] = MappingProxyType({
            t.name: self._sampler(t) for t in config.resolved_targets()
        })
        self._lock = threading.Lock()  # one change of the targets at a time
        self._started = False
        self._placed = 0  # targets started so far: the next one's place in the interval
        self._stops: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}

    def _sampler(self, target: Target) -> TargetSampler:
        return TargetSampler(target, self.config, listeners=self.listeners, budget=self.budget,
                             registry=self.registry,
                             between=self.between(target) if self.between is not None else None)

    def _start(self, sampler: TargetSampler) -> None:
        name = sampler.target.name
        offset = spread(self._placed) * sampler.interval
        self._placed += 1
        sampler.open()
        stop = threading.Event()
        thread = threading.Thread(target=sampler.run, args=(stop, offset), name=f"sampler-{name}", daemon=True)
        thread.start()
        self._stops[name] = stop
        self._threads[name] = thread

    def start(self) -> None:
        with self._lock:
            self._started = True
            for sampler in self.targets.values():
                self._start(sampler)

    def threads_alive(self) -> dict[str, bool]:
        with self._lock:
            return {name: thread.is_alive() for name, thread in self._threads.items()}

    def apply_config(self, config: Config) -> tuple[list[str], list[str]]:
        """Take a reloaded configuration, its targets included (see ``set_targets``)."""
        self.config = config
        changes = self.set_targets(config.resolved_targets())
        for sampler in self.targets.values():
            sampler.apply_config(config)
        return changes

    def set_targets(self, targets: Sequence[Target]) -> tuple[list[str], list[str]]:
        """Monitor *targets* from now on: start the new ones, stop those left out (their
        series leave the exposition; what the store has of them stays), restart those
        whose DSN changed and hand the others their new definition. Returns the names
        (added, removed); a target whose DSN changed counts as both."""
        with self._lock:
            current = dict(self.targets)
            wanted = {t.name: t for t in targets}
            added, removed = [], []
            for name, sampler in list(current.items()):
                target = wanted.get(name)
                if target is not None and target.dsn == sampler.target.dsn:
                    if target != sampler.target:
                        sampler.apply_target(target)
                    continue
                del current[name]
                removed.append(name)
                if self._started:
                    self._retire(name, sampler)
            for name, target in wanted.items():
                if name not in current:
                    sampler = self._sampler(target)
                    current[name] = sampler
                    added.append(name)
                    if self._started:
                        self._start(sampler)
            self.targets = MappingProxyType(current)
        for name in added:
            if name not in removed:
                log.info("target %s: added", name)
        for name in removed:
            log.info("target %s: %s", name, "restarted with its new DSN" if name in added else "removed")
        return added, removed

    def _retire(self, name: str, sampler: TargetSampler) -> None:
        """Stop *sampler*'s thread; once its sample under way is done, close its pool."""
        self._stops.pop(name).set()
        thread = self._threads.pop(name)

        def finish() -> None:
            thread.join(self.config.connection.statement_timeout * 4 + 10)
            sampler.close()

        threading.Thread(target=finish, name=f"retire-{name}", daemon=True).start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            for stop in self._stops.values():
                stop.set()
            deadline = time.monotonic() + timeout
            for thread in self._threads.values():
                thread.join(max(0.0, deadline - time.monotonic()))
            for sampler in self.targets.values():
                sampler.close()

    def snapshots(self) -> list[Snapshot]:
        return [s.latest for s in self.targets.values() if s.latest is not None]
