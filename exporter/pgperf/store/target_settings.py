"""The thresholds each target is sampled with, kept in ``<schema>.target_settings``
(migration 006) so that a report applies those, wherever it is built.

``pgperf serve`` notes them when it starts and at each reload (``SettingsRecorder``); a row
is added only when a target's profile or thresholds differ from its latest row. While the
store cannot be reached, what was noted waits in memory and is written when it returns,
with the time it was noted: the samples taken meanwhile were sampled with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ..config import Config
from ..redact import redact
from .client import StoreClient, StoreUnavailable
from .schema import migrate

__all__ = ["RecordedSettings", "SettingsRecorder", "in_window", "record", "settings_of"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedSettings:
    """One row: *target* was sampled with *profile* and *thresholds* from *valid_from*."""

    target: str
    valid_from: datetime
    profile: str
    thresholds: dict[str, Any]


def settings_of(config: Config) -> list[tuple[str, str, dict[str, Any]]]:
    """(target, profile, thresholds) of every target *config* samples: its own profile and
    thresholds where it has them, else the process's."""
    return [(target.name, target.profile or config.profile, config.thresholds_for(target).model_dump(mode="json"))
            for target in config.resolved_targets()]


def record(conn: psycopg.Connection[Any], schema: str, target: str, profile: str, thresholds: Mapping[str, Any],
           at: datetime) -> bool:
    """Record that *target* is sampled with *profile* and *thresholds* from *at*, unless its
    latest row at *at* says the same already; return whether a row was added."""
    table = sql.SQL("{}.target_settings").format(sql.Identifier(schema))
    query = sql.SQL(
        "INSERT INTO {t} (target, valid_from, profile, thresholds)"
        " SELECT %(target)s, %(at)s, %(profile)s, %(thresholds)s"
        " WHERE NOT EXISTS (SELECT 1 FROM (SELECT profile, thresholds FROM {t} WHERE target = %(target)s"
        "   AND valid_from <= %(at)s ORDER BY valid_from DESC LIMIT 1) latest"
        "   WHERE latest.profile = %(profile)s AND latest.thresholds = %(thresholds)s)"
        " ON CONFLICT (target, valid_from) DO UPDATE SET profile = EXCLUDED.profile,"
        " thresholds = EXCLUDED.thresholds"
    ).format(t=table)
    cur = conn.execute(query, {"target": target, "at": at, "profile": profile, "thresholds": Jsonb(dict(thresholds))})
    return cur.rowcount > 0


def in_window(conn: psycopg.Connection[Any], schema: str, target: str, start: datetime,
              end: datetime) -> list[RecordedSettings]:
    """The rows of *target* in force during ``[start, end)``, oldest first: the one in force
    at *start* and those that took over before *end*. Empty when the store has none (or
    predates migration 006)."""
    found = conn.execute("SELECT to_regclass(%s)", (f"{schema}.target_settings",)).fetchone()
    if not found or found[0] is None:
        return []
    table = sql.SQL("{}.target_settings").format(sql.Identifier(schema))
    query = sql.SQL(
        "(SELECT target, valid_from, profile, thresholds FROM {t} WHERE target = %(target)s AND valid_from <= %(start)s"
        " ORDER BY valid_from DESC LIMIT 1)"
        " UNION ALL (SELECT target, valid_from, profile, thresholds FROM {t} WHERE target = %(target)s"
        " AND valid_from > %(start)s AND valid_from < %(end)s)"
        " ORDER BY valid_from"
    ).format(t=table)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, {"target": target, "start": start, "end": end}).fetchall()
    return [RecordedSettings(**row) for row in rows]


class SettingsRecorder:
    """Writes what ``note`` is given to the store from a thread of its own, retrying every
    *retry* seconds while the store is unreachable or refuses (logged once per outage)."""

    def __init__(self, client: StoreClient, *, retry: float = 30.0) -> None:
        self.client = client
        self.retry = retry
        self._pending: list[tuple[str, str, dict[str, Any], datetime]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._migrated = False
        self._failing = False

    def note(self, config: Config, at: datetime | None = None) -> None:
        """The targets of *config* are sampled with its thresholds from *at* (now)."""
        at = at or datetime.now(UTC)
        with self._lock:
            self._pending.extend((target, profile, thresholds, at) for target, profile, thresholds
                                 in settings_of(config))
        self._wake.set()

    def flush(self) -> bool:
        """Write what is pending; return True when nothing is left. Raises StoreUnavailable
        and psycopg.Error (what is pending stays)."""
        with self._lock:
            pending = list(self._pending)
        if not pending:
            return True
        with self.client.connection() as conn:
            if not self._migrated:
                migrate(conn, self.client.schema)  # the writer may not have created the table yet
                self._migrated = True
            with conn.transaction():
                for target, profile, thresholds, at in pending:
                    if record(conn, self.client.schema, target, profile, thresholds, at):
                        log.info("thresholds of profile %s recorded for target %s from %s", profile, target,
                                 at.isoformat(timespec="seconds"))
        with self._lock:
            del self._pending[:len(pending)]
            return not self._pending

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="settings-recorder", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                done = self.flush()
            except (StoreUnavailable, psycopg.Error) as exc:
                if not self._failing:
                    log.warning("the thresholds targets are sampled with are not recorded yet (reports built "
                                "meanwhile apply their own configuration's); retrying every %gs: %s", self.retry,
                                redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                    self._failing = True
                self._stop.wait(self.retry)
                continue
            if self._failing:
                log.info("the thresholds targets are sampled with are recorded")
                self._failing = False
            if done:
                self._wake.wait()
