"""The store's hourly maintenance: partitions ahead, retention, hourly rollups.

The writer's thread runs it when it has nothing to write, at most once per
``MAINTENANCE_EVERY`` (and soon after every new connection), on the writer's session:

* the daily partitions of today and the next ``store.partitions_ahead`` days;
* retention (:func:`~pgperf.store.schema.apply_retention`) for this process's targets,
  then the statements and texts no sample refers to any more, and the expired rollups;
* the hourly rollups of this process's targets (:mod:`pgperf.store.rollup`): the
  complete hours since each target's watermark, and the hours that samples written from
  the spool landed in. While rollups are behind (a run does at most 48 hours per target),
  the next run comes after ``ROLLUP_CATCH_UP`` seconds.

Only this process's targets: in a store that several processes share, each maintains its
own rows (retention also records its targets' retention for the others; see
``apply_retention``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from ..config import Config
from ..redact import redact
from .rollup import delete_expired, roll_up
from .schema import apply_retention, ensure_partitions, upcoming_days
from .tables import TableWriter, forget_unused_statements

__all__ = ["MAINTENANCE_EVERY", "ROLLUP_CATCH_UP", "Maintenance"]

log = logging.getLogger(__name__)

MAINTENANCE_EVERY = 3600.0  # seconds between partition/retention/rollup runs
ROLLUP_CATCH_UP = 60.0  # seconds to the next run while the hourly rollups are behind
RETRY_AFTER_ERROR = 300.0  # seconds to the next run after a failed one


class Maintenance:
    """Schedules and runs the maintenance; *clock* (monotonic seconds) decides when."""

    def __init__(self, config: Config, tables: TableWriter, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.schema = config.store.schema_name
        self.tables = tables
        self.clock = clock
        self._next = 0.0
        self._lock = threading.Lock()
        # Per target, the oldest sample written since the last rollup run: a sample from the
        # spool can land in an hour already rolled up, which must then be rebuilt.
        self._dirty_from: dict[str, float] = {}

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.config.resolved_targets())

    def due(self) -> bool:
        return self.clock() >= self._next

    def soon(self) -> None:
        """Run at the next occasion (a new session: partitions may be missing)."""
        self._next = 0.0

    def written(self, target: str, taken_at: float) -> None:
        """A sample of *target* taken at *taken_at* was written (any thread)."""
        with self._lock:
            seen = self._dirty_from.get(target)
            if seen is None or taken_at < seen:
                self._dirty_from[target] = taken_at

    def run(self, conn: psycopg.Connection[Any]) -> None:
        """One maintenance run. Raises psycopg.OperationalError (the session is gone: the
        writer's business); any other store error is logged, and retried later."""
        now = self.clock()
        self._next = now + MAINTENANCE_EVERY
        retention = self.config.retention
        targets = self.targets
        try:
            today = datetime.now(UTC).date()
            days = upcoming_days(today, self.config.store.partitions_ahead)
            ensure_partitions(conn, self.schema, days)
            self.tables.add_partitions(days)
            result = apply_retention(
                conn, self.schema,
                query_days=retention.query_metrics_days, resource_days=retention.resource_metrics_days,
                alerts_days=retention.alerts_days, reports_days=retention.reports_days, targets=targets,
            )
            if result.dropped or result.rows_deleted:
                self.tables.read_partitions(conn)
                before = datetime.now(UTC) - timedelta(days=retention.query_metrics_days)
                if forget_unused_statements(conn, self.schema, targets, before):
                    self.tables.forget_statements()
            delete_expired(conn, self.schema, query_days=retention.query_metrics_days, targets=targets)
            self.roll_up(conn)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            log.warning("store maintenance failed (retried in %.0f minutes): %s", RETRY_AFTER_ERROR / 60,
                        redact(str(exc)).strip())
            self._next = now + RETRY_AFTER_ERROR

    def roll_up(self, conn: psycopg.Connection[Any]) -> None:
        """Sum the complete hours of this process's targets into query_metrics_hourly."""
        with self._lock:
            dirty = dict(self._dirty_from)
            self._dirty_from.clear()
        try:
            results = roll_up(conn, self.schema, dirty_from=dirty, targets=self.targets)
        except psycopg.Error:
            with self._lock:  # keep what still needs rebuilding for the next run
                for target, at in dirty.items():
                    self._dirty_from[target] = min(at, self._dirty_from.get(target, at))
            raise
        behind = [r for r in results if not r.caught_up]
        with self._lock:
            for r in behind:
                # Hours from r.end on still need a run (maybe already rolled, but dirty).
                seen = self._dirty_from.get(r.target)
                if seen is None or r.end.timestamp() < seen:
                    self._dirty_from[r.target] = r.end.timestamp()
        if behind:
            self._next = min(self._next, self.clock() + ROLLUP_CATCH_UP)
