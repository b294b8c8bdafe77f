"""The store writer: every accepted sample reaches the store, in order, or waits on disk.

Each sample's rows (a ``SampleBatch``, built from the snapshot when it is taken) are
handed over with ``submit`` and join the backlog (:mod:`pgperf.store.spool`): a short
queue in memory, or the on-disk spool while the store is unreachable or anything waits
there, so that samples are written in the order they were taken, with their original
timestamps. A thread writes each batch in one transaction (:mod:`pgperf.store.tables`)
and, when idle, runs the maintenance (:mod:`pgperf.store.maintenance`). ``stop()`` writes
what it can within its timeout and leaves the rest in the spool for the next start.

The store is in one of four states: ``starting`` (no session yet), ``up``,
``unreachable`` (no session: samples go to the spool, the writer reconnects) and
``refusing`` (a session, but writes fail for a reason retrying fixes once someone acts:
read-only, a missing privilege or table, a full disk; it stays so until a write
succeeds). ``pgperf_store_up`` is 1 only when ``up``; the log says once per kind what to do.

A batch the store refuses for its content (a data or integrity error, which retrying
cannot fix) is moved to ``<spool>/rejected`` and counted, never silently discarded. The
thread never dies of an error: an unexpected one is logged once, counted, and the loop
goes on with the next item; ``alive`` tells /healthz. Every accepted sample that cannot be
kept (spool bound, spool not writable, rejected/ bound) is counted in
``pgperf_store_spool_dropped_samples_total``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psycopg

from ..collectors import Family
from ..config import Config
from ..db import classify_error
from ..redact import redact
from .maintenance import Maintenance
from .metrics import Counters, StoreStats, families
from .rows import SampleBatch
from .schema import migrate
from .session import StoreSessions
from .spool import Backlog, Pending, Spool, default_spool_dir
from .tables import TableWriter

__all__ = ["StoreWriter", "store_problem"]

log = logging.getLogger(__name__)

State = Literal["starting", "up", "unreachable", "refusing"]
_DOWN: tuple[State, ...] = ("unreachable", "refusing")

# Errors the sample itself causes (SQLSTATE classes 22 and 23): retrying cannot help.
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError)


def store_problem(exc: BaseException, schema: str) -> tuple[str, str]:
    """The kind of a store error and, when retrying can fix it once someone acts, what to
    do ("" for a connection problem)."""
    errors = psycopg.errors
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return "read_only", ("the store is read-only (default_transaction_read_only = on, or a standby): point "
                             "store.dsn at a writable primary or turn default_transaction_read_only off")
    if isinstance(exc, errors.InsufficientPrivilege):
        return "permission_denied", (f"grant the store role its rights on schema {schema} (run docs/setup-role.sql "
                                     f"as a superuser, or GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO the role)")
    if isinstance(exc, (errors.UndefinedTable, errors.UndefinedColumn, errors.InvalidSchemaName)) or (
            isinstance(exc, errors.CheckViolation) and "no partition of relation" in str(exc)):
        return "missing_table", (f"a table or partition of schema {schema} is missing (dropped by hand?): restore "
                                 f"it, or drop schema {schema} for pgperf to create it again")
    if isinstance(exc, errors.DiskFull):
        return "disk_full", "the store's disk is full: free space on the store server"
    return classify_error(exc), ""


def _spool_dir(config: Config, sessions: StoreSessions) -> Path:
    if config.store.spool_dir is not None:
        return Path(config.store.spool_dir)
    # One spool per store, schema and first target, so that two pgperf processes on one
    # machine do not meet in the same directory by default.
    name = f"{sessions.describe()}-{sessions.schema}-{config.resolved_targets()[0].name}"
    return default_spool_dir() / "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class StoreWriter:
    """Writes batches to ``config.store`` in a background thread; see the module docstring.

    *sessions* opens the store's sessions and *clock* (monotonic seconds) schedules the
    maintenance: both can be replaced, in tests for instance."""

    def __init__(self, config: Config, *, spool_dir: str | Path | None = None, sessions: StoreSessions | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions = sessions or StoreSessions(config)
        self.dsn = self.sessions.dsn
        self.schema = self.sessions.schema
        self.stats = StoreStats()
        store = config.store
        self.spool = Spool(Path(spool_dir) if spool_dir is not None else _spool_dir(config, self.sessions),
                           store.spool_max_bytes, store.rejected_max_bytes)
        self.backlog = Backlog(self.spool, self.stats)
        self.tables = TableWriter(self.schema)
        self.maintenance = Maintenance(config, self.tables, clock=clock)
        self._config = config
        self.retry_delay = min(5.0, max(0.5, config.sampling_interval / 2))
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._state: State = "starting"
        self._kind: str | None = None  # the kind of error while unreachable or refusing
        self._stop_deadline = float("inf")

    @property
    def config(self) -> Config:
        return self._config

    @config.setter
    def config(self, config: Config) -> None:
        """A reloaded configuration (retention, partitions ahead) for the next maintenance."""
        self._config = config
        self.maintenance.config = config

    # -- intake (sampler threads) ----------------------------------------------------------

    def submit(self, batch: SampleBatch) -> None:
        """Accept one sample's rows; never blocks on the store."""
        self.backlog.put(batch, store_down=self._state in _DOWN)
        self._wake.set()

    # -- the thread --------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what can be written within *timeout*; spool the rest for the next start."""
        self._stop_deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout + 5)
            if self._thread.is_alive():
                log.warning("store writer still busy after %.0fs; remaining samples stay in the spool", timeout)
        moved = self.backlog.drain(include_in_hand=self._thread is None or not self._thread.is_alive())
        if moved or len(self.spool):
            log.info("store: %d sample(s) left in the spool %s for the next start", len(self.spool), self.spool.dir)
        if self._conn is not None:
            self._conn.close()
        self.spool.close()

    @property
    def alive(self) -> bool:
        """False when the writer thread was started and has ended before ``stop()`` (/healthz)."""
        thread = self._thread
        return thread is None or thread.is_alive() or self._stopping.is_set()

    def _run(self) -> None:
        try:
            self._connected()  # migrate and create partitions before the first sample arrives
        except Exception as exc:  # never let the thread die before it started
            self._unexpected(exc)
        while True:
            try:
                if self._step():
                    return
            except Exception as exc:
                self._unexpected(exc)
                self.backlog.spill_in_hand()  # a batch taken from memory: keep it in the spool
                if self._stopping.is_set():
                    return
                self._stopping.wait(self.retry_delay)

    def _step(self) -> bool:
        """Handle one item (or wait for one); True when the thread should end."""
        if self._stopping.is_set() and time.monotonic() > self._stop_deadline:
            return True
        item = self.backlog.take()
        if item is None:
            if self._stopping.is_set():
                return True
            self._maintain()
            self._wake.wait(min(self.retry_delay * 4, 30.0))
            self._wake.clear()
            return False
        conn = self._connected()
        if conn is None:
            self.backlog.spill(item)
            if self._stopping.is_set():
                return True
            self._stopping.wait(self.retry_delay)
            return False
        if not self._write_one(conn, item) and not self._stopping.is_set():
            self._stopping.wait(self.retry_delay)  # the store refuses writes: retry later
        return False

    def _unexpected(self, exc: BaseException) -> None:
        """An error no branch expected: logged once per kind, counted, never fatal."""
        self.stats.error("internal")
        self.stats.log_once(f"internal:{type(exc).__name__}:{str(exc)[:100]}", logging.ERROR,
                            "store writer: unexpected error, the writer goes on with the next item: %s: %s",
                            type(exc).__name__, redact(str(exc)).strip(), exc_info=exc, logger=log)

    def _write_one(self, conn: psycopg.Connection[Any], item: Pending) -> bool:
        """Write one batch; False when it could not be written (it is kept, or rejected)."""
        batch = item.batch
        started = time.monotonic()
        try:
            self.tables.write(conn, batch)
        except _DATA_ERRORS as exc:
            # The batch itself is at fault (bad data): retrying cannot help. Keep it aside.
            log.error("store refused the sample of %s taken at %s: %s", batch.target,
                      datetime.fromtimestamp(batch.taken_at, UTC).isoformat(), redact(str(exc)).strip())
            self.stats.error("rejected")
            self.backlog.reject(item)
            return False
        except psycopg.Error as exc:
            # Connection lost, or the store refuses writes (read-only, privileges, a missing
            # table, disk full): keep the batch in the spool and retry.
            self._lost(exc)
            self.backlog.spill(item)
            return False
        self.backlog.written(item)
        self.maintenance.written(batch.target, batch.taken_at)
        self.stats.written(len(batch.queries), time.monotonic() - started, time.time())
        if self._state in _DOWN:
            log.info("store %s: writes work again; writing %d spooled sample(s)", self.sessions.describe(),
                     len(self.spool))
        self._state, self._kind = "up", None
        return True

    def write_now(self, batch: SampleBatch) -> None:
        """Write one batch synchronously, bypassing queue and spool (benchmarks, tools).

        Raises psycopg errors as they come; the background thread must not be running."""
        conn = self._connected()
        if conn is None:
            raise psycopg.OperationalError(f"store {self.sessions.describe()} unreachable ({self._kind})")
        self.tables.write(conn, batch)
        self.maintenance.written(batch.target, batch.taken_at)

    def roll_up(self) -> None:
        """Sum the complete hours into query_metrics_hourly (see store.rollup); called by the
        hourly maintenance, and by tools and tests with the background thread stopped."""
        conn = self._connected()
        if conn is not None:
            self.maintenance.roll_up(conn)

    # -- the session ----------------------------------------------------------------------

    def _connected(self) -> psycopg.Connection[Any] | None:
        """The writer's session, opened (and the schema migrated) when there is none;
        None while the store cannot be reached."""
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        conn = None
        try:
            conn = self.sessions.connect()
            migrate(conn, self.schema)
            self.tables.read_partitions(conn)
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            self._lost(exc)
            return None
        self._conn = conn
        if self._state == "unreachable":
            log.info("store %s reachable again; writing %d spooled sample(s)", self.sessions.describe(),
                     len(self.spool))
        if self._state != "refusing":  # a store that refused writes stays so until a write succeeds
            self._state, self._kind = "up", None
        self.maintenance.soon()
        self.stats.touch()
        return conn

    def _lost(self, exc: BaseException) -> None:
        """The store cannot take samples: closed connection, or a store problem (see
        ``store_problem``); either way samples wait in the spool and the writer retries."""
        kind, hint = store_problem(exc, self.schema)
        self.stats.error(kind)
        if self._conn is not None:
            self._conn.close()  # a new session sees a fixed setting (read-only) or grant
        self._conn = None
        if self._state not in _DOWN or kind != self._kind:
            detail = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else kind
            if hint:
                log.error("store %s refuses writes (%s): %s; %s; samples wait in the spool %s and are retried",
                          self.sessions.describe(), kind, detail, hint, self.spool.dir)
            else:
                log.error("store %s unreachable (%s): %s; samples go to the spool %s", self.sessions.describe(), kind,
                          detail, self.spool.dir)
        self._state, self._kind = ("refusing" if hint else "unreachable"), kind
        self.stats.touch()

    def _maintain(self) -> None:
        """The maintenance, when it is due and the store takes writes."""
        if self._conn is None or self._state != "up" or not self.maintenance.due():
            return
        try:
            self.maintenance.run(self._conn)
        except psycopg.OperationalError as exc:
            self._lost(exc)

    # -- metrics --------------------------------------------------------------------------

    def families(self) -> Iterable[Family]:
        return families(self.stats, self.spool, self.up)

    @property
    def counters(self) -> Counters:
        return self.stats.counters

    @property
    def version(self) -> int:
        """Changes whenever a metric changes (the exposition's cache key)."""
        return self.stats.version

    @property
    def up(self) -> bool:
        """True once connected and while writes succeed."""
        return self._state == "up" and self._conn is not None
