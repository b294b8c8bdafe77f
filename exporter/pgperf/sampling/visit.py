"""The per-database visit: database-scoped collectors run in every selected database.

The target's own database is read through the target's connection; every other one
through a connection opened for the visit and closed after it, by at most ``permits - 1``
worker threads, so that the connections open at once (the target's own included) never
exceed the permits taken from the budget shared by every target of the process
(``connection.max_database_connections``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ..collectors import CollectorSpec
from ..config import Databases
from ..db import STALL_GUARD, ConnectionFailed, SessionSettings, close_and_wait, connect, database_dsn
from .runner import Outcome, first_line

__all__ = ["DISCOVER_SQL", "ConnectionBudget", "DatabaseVisitor", "RunIn", "Visit", "discover"]

log = logging.getLogger(__name__)

#: Runs one collector on a connection to the database named: the sampler's closure that
#: builds the collector's context (its state of that database) and invokes it.
RunIn = Callable[[CollectorSpec, psycopg.Connection[Any], str], Outcome]


class ConnectionBudget:
    """How many connections the samplers of one process may hold while visiting databases.

    One budget is shared by every target. A target visiting databases takes at least two
    permits at once (its own connection, already open, and one for the database being
    visited) and at most one per database; taking them in one step means two targets can
    never each hold one and wait for the other's.
    """

    def __init__(self, limit: int) -> None:
        if limit < 2:
            raise ValueError("a connection budget needs at least 2 connections")
        self.limit = limit
        self._free = limit
        self._cond = threading.Condition()

    def acquire(self, wanted: int, minimum: int = 2, timeout: float | None = None) -> int:
        """Take between *minimum* and *wanted* permits; 0 if *minimum* were not free in time."""
        minimum = min(minimum, self.limit)
        wanted = max(minimum, min(wanted, self.limit))
        with self._cond:
            if not self._cond.wait_for(lambda: self._free >= minimum, timeout):
                return 0
            taken = min(wanted, self._free)
            self._free -= taken
            return taken

    def release(self, permits: int) -> None:
        with self._cond:
            self._free = min(self.limit, self._free + permits)
            self._cond.notify_all()

    @property
    def in_use(self) -> int:
        return self.limit - self._free


@dataclass(frozen=True)
class Visit:
    """What one visit of the selected databases gave."""

    #: collector name -> (datname, outcome) of each database it ran in, by database name
    runs: Mapping[str, tuple[tuple[str, Outcome], ...]] = field(default_factory=dict)
    #: datname -> None, or the kind of error that kept pgperf out of it
    databases: Mapping[str, str | None] = field(default_factory=dict)
    #: (kind, detail) when no database could be visited at all (no connection free in time)
    error: tuple[str, str] | None = None


class DatabaseVisitor:
    """Visits the selected databases of one target; logs each database's error once."""

    def __init__(self, target: str, dsn: str, settings: SessionSettings, budget: ConnectionBudget) -> None:
        self.target = target
        self.dsn = dsn
        self.settings = settings
        self.budget = budget
        self._errors: dict[str, str] = {}  # datname -> error kind, to log changes only

    def visit(self, specs: Sequence[CollectorSpec], conn: psycopg.Connection[Any], own: str | None,
              databases: Sequence[str], run: RunIn, wait: float) -> Visit:
        """Run *specs* in every database of *databases*: *own* (the database of *conn*)
        through *conn*, the others through connections of their own, taken from the
        budget within *wait* seconds."""
        others = [d for d in databases if d != own]
        permits = 0
        if others:
            permits = self.budget.acquire(1 + len(others), minimum=2, timeout=wait)
            if not permits:
                return Visit(error=("connection_cap",
                                    f"no connection free within {wait:g}s (connection.max_database_connections)"))
        results: list[tuple[str, dict[str, Outcome], tuple[str, str] | None]] = []
        try:
            mine = own if own is not None and own in databases else None
            if others:
                with ThreadPoolExecutor(max_workers=permits - 1, thread_name_prefix=f"visit-{self.target}") as pool:
                    futures = [pool.submit(self._visit_other, d, specs, run) for d in others]
                    if mine is not None:
                        results.append((mine, self._run_all(specs, conn, mine, run), None))
                    results += [f.result() for f in futures]
            elif mine is not None:
                results.append((mine, self._run_all(specs, conn, mine, run), None))
        finally:
            if permits:
                self.budget.release(permits)
        results.sort(key=lambda r: r[0])

        visited: dict[str, str | None] = {}
        for datname, _, error in results:
            visited[datname] = error[0] if error else None
            self._log(datname, error)
        for datname in list(self._errors):
            if datname not in visited:
                del self._errors[datname]  # dropped or no longer selected
        runs = {spec.name: tuple((d, o[spec.name]) for d, o, _ in results if spec.name in o) for spec in specs}
        return Visit(runs, visited)

    def _visit_other(self, datname: str, specs: Sequence[CollectorSpec], run: RunIn
                     ) -> tuple[str, dict[str, Outcome], tuple[str, str] | None]:
        try:
            conn = connect(database_dsn(self.dsn, datname), self.settings)
        except ConnectionFailed as exc:
            text = str(exc).strip()
            return datname, {}, (exc.kind, text.splitlines()[0] if text else exc.kind)
        try:
            return datname, self._run_all(specs, conn, datname, run), None
        finally:
            close_and_wait(conn)  # its permit is free only once its backend is gone

    @staticmethod
    def _run_all(specs: Sequence[CollectorSpec], conn: psycopg.Connection[Any], datname: str,
                 run: RunIn) -> dict[str, Outcome]:
        """Run *specs* in one database, until its connection breaks."""
        outcomes: dict[str, Outcome] = {}
        for spec in specs:
            outcomes[spec.name] = run(spec, conn, datname)
            if conn.broken:
                break
        return outcomes

    def _log(self, datname: str, error: tuple[str, str] | None) -> None:
        known = self._errors.get(datname)
        if error is None:
            if known is not None:
                log.info("target %s: database %s readable again", self.target, datname,
                         extra={"target": self.target, "database": datname})
                del self._errors[datname]
        elif known != error[0]:
            log.warning("target %s: cannot visit database %s (%s): %s", self.target, datname, *error,
                        extra={"target": self.target, "database": datname, "error_kind": error[0]})
            self._errors[datname] = error[0]


# Catalog query for database discovery: templates and databases refusing connections are
# never visited (see pg_database.datallowconn in the PostgreSQL documentation).
DISCOVER_SQL = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"


def discover(conn: psycopg.Connection[Any], settings: SessionSettings, selection: Databases,
             target: str) -> tuple[str, ...] | None:
    """The databases of *conn*'s server that *selection* selects, or None when the catalog
    could not be read (logged; a lost connection is raised for the sample to end)."""
    try:
        with STALL_GUARD.guard(conn, settings.no_answer_after):
            rows = conn.execute(DISCOVER_SQL).fetchall()
    except psycopg.Error as exc:
        if conn.broken:
            raise
        log.warning("target %s: cannot list databases: %s", target, first_line(exc), extra={"target": target})
        return None
    return tuple(r[0] for r in rows if selection.matches(r[0]))
