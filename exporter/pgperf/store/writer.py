"""The store writer: every accepted sample reaches the store, in order, or waits on disk.

Each sample's rows (a ``SampleBatch``, built from the snapshot when it is taken) are
handed over with ``submit`` and queued in memory. A writer thread writes each batch in one transaction with COPY. While
the store is unreachable every batch goes to the on-disk spool instead, and while the
spool holds anything new batches join it, so that samples are written in the order they
were taken, with their original timestamps, when the store returns. ``stop()`` writes
what it can within its timeout and leaves the rest in the spool for the next start.

A batch the store refuses for its content (a data or integrity error, which retrying
cannot fix) is moved to ``<spool>/rejected`` and counted, never silently discarded. Any
other error is a problem of the store (read-only, a missing privilege or table, a full
disk): the batch stays in the spool and is retried, ``pgperf_store_up`` is 0 and the log
says what to do. The thread never dies of an error: an unexpected one is logged once,
counted, and the loop goes on with the next item; ``alive`` tells /healthz.
Every accepted sample that cannot be kept (spool bound, spool not writable, rejected/
bound) is counted in ``pgperf_store_spool_dropped_samples_total``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ..collectors import Family, MetricDef
from ..config import Config
from ..db import SessionSettings, classify_error, describe_dsn
from ..redact import redact
from .rollup import delete_expired, roll_up
from .rows import QUERY_COLUMNS, RESOURCE_COLUMNS, SampleBatch
from .schema import apply_retention, ensure_partitions, list_partitions, migrate, upcoming_days
from .spool import Spool, default_spool_dir
from .waits import copy_wait_rows

__all__ = ["STORE_METRICS", "StoreWriter"]

log = logging.getLogger(__name__)

MEMORY_QUEUE = 64  # batches kept in memory before they go to the spool
MAINTENANCE_EVERY = 3600.0  # seconds between partition/retention/rollup runs
ROLLUP_CATCH_UP = 60.0  # seconds to the next run while the hourly rollups are behind
_TIME_COLUMNS = {"recorded_at", "timestamp", "server_start_time"}


def _def(name: str, kind: str, help_text: str, labels: tuple[str, ...] = ()) -> MetricDef:
    return MetricDef(name, kind, help_text, labels, source="pgperf store")  # type: ignore[arg-type]


STORE_UP = _def("pgperf_store_up", "gauge", "Whether the last write to the sample store succeeded (1) or the store is unreachable (0).")
ACCEPTED = _def("pgperf_store_samples_accepted_total", "counter", "Samples handed to the store writer.")
WRITTEN = _def("pgperf_store_samples_written_total", "counter", "Samples written to the store.")
ROWS = _def("pgperf_store_rows_written_total", "counter", "Rows written to the store, by table.", ("table",))
SPOOLED = _def("pgperf_store_samples_spooled_total", "counter", "Samples that went to the on-disk spool because the store was unreachable or behind.")
SPOOL_SAMPLES = _def("pgperf_store_spool_samples", "gauge", "Samples waiting in the on-disk spool.")
SPOOL_BYTES = _def("pgperf_store_spool_bytes", "gauge", "Size of the on-disk spool, in bytes.")
DROPPED = _def("pgperf_store_spool_dropped_samples_total", "counter", "Samples lost: dropped because the spool reached store.spool_max_bytes (oldest first), could not be written to the spool (disk full), or removed from rejected/ at store.rejected_max_bytes.")
REJECTED = _def("pgperf_store_rejected_samples_total", "counter", "Samples the store refused for their content, and spool files that could not be read, kept in the spool's rejected/ directory.")
ERRORS = _def("pgperf_store_errors_total", "counter", "Failed attempts to reach or write the store, by kind of error.", ("kind",))
WRITE_SECONDS = _def("pgperf_store_write_duration_seconds", "gauge", "Time the last sample took to write (one transaction), in seconds.")
LAST_WRITE = _def("pgperf_store_last_write_timestamp_seconds", "gauge", "Time of the last successful write, in seconds since the epoch.")

STORE_METRICS = (STORE_UP, ACCEPTED, WRITTEN, ROWS, SPOOLED, SPOOL_SAMPLES, SPOOL_BYTES, DROPPED, REJECTED,
                 ERRORS, WRITE_SECONDS, LAST_WRITE)


# Errors the sample itself causes (SQLSTATE classes 22 and 23): retrying cannot help.
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError)


def store_problem(exc: BaseException, schema: str) -> tuple[str, str]:
    """The kind of a store error that retrying can fix once someone acts, and what to do."""
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


@dataclass
class _Counters:
    accepted: int = 0
    written: int = 0
    spooled: int = 0
    rejected: int = 0
    dropped: int = 0  # lost before reaching the spool (spool not writable)
    query_rows: int = 0
    resource_rows: int = 0
    last_write_seconds: float | None = None
    last_write_at: float | None = None


class StoreWriter:
    """Writes batches to ``config.store`` in a background thread; see the module docstring."""

    def __init__(self, config: Config, *, spool_dir: str | Path | None = None) -> None:
        store = config.store
        self.config = config
        self.dsn = config.store_dsn()
        self.schema = store.schema_name
        self.settings = SessionSettings(
            application_name="pgperf-store",
            connect_timeout=config.connection.connect_timeout,
            statement_timeout=max(30.0, config.connection.statement_timeout),
            lock_timeout=5.0,
            idle_in_transaction_session_timeout=60.0,
        )
        if spool_dir is None and store.spool_dir is None:
            # One spool per store, schema and first target, so that two pgperf processes on
            # one machine do not meet in the same directory by default.
            name = f"{describe_dsn(self.dsn)}-{self.schema}-{config.resolved_targets()[0].name}"
            spool_dir = default_spool_dir() / "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        self.spool = Spool(spool_dir or store.spool_dir or default_spool_dir(), store.spool_max_bytes,
                           store.rejected_max_bytes)
        self.retry_delay = min(5.0, max(0.5, config.sampling_interval / 2))
        self._queue: deque[SampleBatch] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._known_days: set[date] = set()
        # Per target, the oldest sample written since the last rollup run: a sample from the
        # spool can land in an hour already rolled up, which must then be rebuilt.
        self._dirty_from: dict[str, float] = {}
        self._down = False
        self._down_kind: str | None = None
        self._store_problem = False  # down because writes fail, not because of the connection
        self._logged: set[str] = set()  # unexpected errors already logged (once each)
        self._in_hand: SampleBatch | None = None  # taken from the memory queue, not yet written
        self._errors: dict[str, int] = {}
        self._counters = _Counters()
        self._next_maintenance = 0.0
        self._stop_deadline = float("inf")
        self.version = 0  # changes whenever a metric changes (exposition cache key)

    # -- intake (sampler threads) ----------------------------------------------------------

    def submit(self, batch: SampleBatch) -> None:
        """Accept one sample's rows; never blocks on the store."""
        with self._lock:
            self._counters.accepted += 1
            to_spool = self._down or len(self.spool) > 0 or len(self._queue) >= MEMORY_QUEUE
            if not to_spool:
                self._queue.append(batch)
        if to_spool:
            self._to_spool([batch])
        self._touch()
        self._wake.set()

    def _to_spool(self, batches: list[SampleBatch]) -> None:
        """Append to the spool; a batch the spool cannot take (disk full) is counted as dropped."""
        for batch in batches:
            try:
                self.spool.append(batch)
            except OSError as exc:
                with self._lock:
                    self._counters.dropped += 1
                    dropped = self._counters.dropped
                self._count_error("spool_write")
                self._log_once(f"spool:{type(exc).__name__}:{getattr(exc, 'errno', None)}", logging.ERROR,
                               "store: cannot write to the spool %s (%s: %s): samples that cannot reach the store "
                               "are dropped (%d so far); free space or fix the directory's permissions",
                               self.spool.dir, type(exc).__name__, exc, dropped)
            else:
                with self._lock:
                    self._counters.spooled += 1

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
        with self._lock:
            pending = list(self._queue)
            self._queue.clear()
        if self._in_hand is not None and (self._thread is None or not self._thread.is_alive()):
            pending.insert(0, self._in_hand)
            self._in_hand = None
        self._to_spool(pending)
        if pending or len(self.spool):
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
                if self._in_hand is not None:  # a batch from memory: keep it in the spool
                    batch, self._in_hand = self._in_hand, None
                    self._to_spool([batch])
                if self._stopping.is_set():
                    return
                self._stopping.wait(self.retry_delay)

    def _step(self) -> bool:
        """Handle one item (or wait for one); True when the thread should end."""
        if self._stopping.is_set() and time.monotonic() > self._stop_deadline:
            return True
        item = self._next()
        if item is None:
            if self._stopping.is_set():
                return True
            self._maintain()
            self._wake.wait(min(self.retry_delay * 4, 30.0))
            self._wake.clear()
            return False
        path, batch = item
        if not self._connected():
            if path is None:
                self._spool_queue(batch)
            if self._stopping.is_set():
                return True
            self._stopping.wait(self.retry_delay)
            return False
        if not self._write_one(path, batch) and not self._stopping.is_set():
            self._stopping.wait(self.retry_delay)  # the store refuses writes: retry later
        return False

    def _unexpected(self, exc: BaseException) -> None:
        """An error no branch expected: logged once per kind, counted, never fatal."""
        self._count_error("internal")
        self._log_once(f"internal:{type(exc).__name__}:{str(exc)[:100]}", logging.ERROR,
                       "store writer: unexpected error, the writer goes on with the next item: %s: %s",
                       type(exc).__name__, redact(str(exc)).strip(), exc_info=exc)
        self._touch()

    def _log_once(self, key: str, level: int, message: str, *args: Any, exc_info: BaseException | None = None) -> None:
        with self._lock:
            first = key not in self._logged
            self._logged.add(key)
        log.log(level if first else logging.DEBUG, message, *args, exc_info=exc_info if first else None)

    def _next(self) -> tuple[Path | None, SampleBatch] | None:
        with self._lock:
            if self._queue:
                self._in_hand = self._queue.popleft()
                return None, self._in_hand
        oldest = self.spool.oldest()
        if oldest is not None:
            return oldest
        return None

    def _spool_queue(self, first: SampleBatch) -> None:
        """The store is down: move the batch in hand and the memory queue to the spool."""
        with self._lock:
            pending = [first, *self._queue]
            self._queue.clear()
            self._in_hand = None
        self._to_spool(pending)
        self._touch()

    def _write_one(self, path: Path | None, batch: SampleBatch) -> bool:
        """Write one batch; False when it could not be written (it is kept, or rejected)."""
        started = time.monotonic()
        try:
            self._write(batch)
        except _DATA_ERRORS as exc:
            # The batch itself is at fault (bad data): retrying cannot help. Keep it aside.
            log.error("store refused the sample of %s taken at %s: %s", batch.target,
                      datetime.fromtimestamp(batch.taken_at, UTC).isoformat(), redact(str(exc)).strip())
            self._count_error("rejected")
            self._reject(path, batch)
            return False
        except psycopg.Error as exc:
            # Connection lost, or the store refuses writes (read-only, privileges, a missing
            # table, disk full): keep the batch in the spool and retry.
            self._lost(exc)
            if path is None:
                self._spool_queue(batch)
            return False
        if path is not None:
            self.spool.remove(path)
        with self._lock:
            c = self._counters
            c.written += 1
            c.resource_rows += 1
            c.query_rows += len(batch.queries)
            c.last_write_seconds = time.monotonic() - started
            c.last_write_at = time.time()
            self._in_hand = None
        if self._down:
            log.info("store %s: writes work again; writing %d spooled sample(s)", describe_dsn(self.dsn),
                     len(self.spool))
            self._down, self._down_kind, self._store_problem = False, None, False
        self._touch()
        return True

    def _reject(self, path: Path | None, batch: SampleBatch) -> None:
        with self._lock:
            self._in_hand = None
        if path is None:
            try:
                path = self.spool.append(batch)
            except OSError as exc:
                with self._lock:
                    self._counters.dropped += 1
                log.error("store: cannot keep the refused sample in %s (%s); dropped", self.spool.rejected_dir, exc)
                self._touch()
                return
        kept = self.spool.reject(path)
        with self._lock:
            if kept:
                self._counters.rejected += 1
        self._touch()

    def write_now(self, batch: SampleBatch) -> None:
        """Write one batch synchronously, bypassing queue and spool (benchmarks, tools).

        Raises psycopg errors as they come; the background thread must not be running."""
        if not self._connected():
            raise psycopg.OperationalError(f"store {describe_dsn(self.dsn)} unreachable ({self._down_kind})")
        self._write(batch)

    # -- database -------------------------------------------------------------------------

    def _connected(self) -> bool:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return True
        conn = None
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, **self.settings.connect_kwargs(self.dsn))
            conn.execute("SET TimeZone = 'UTC'")
            migrate(conn, self.schema)
            self._known_days = {day for (_, day) in list_partitions(conn, self.schema)}
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            self._lost(exc)
            return False
        self._conn = conn
        if self._down and not self._store_problem:
            log.info("store %s reachable again; writing %d spooled sample(s)", describe_dsn(self.dsn), len(self.spool))
            self._down, self._down_kind = False, None
        # A store that refused writes stays down until a write succeeds (see _write_one).
        self._next_maintenance = 0.0
        self._touch()
        return True

    def _lost(self, exc: BaseException) -> None:
        """The store cannot take samples: closed connection, or a store problem (see
        ``store_problem``); either way samples wait in the spool and the writer retries."""
        kind, hint = store_problem(exc, self.schema)
        self._count_error(kind)
        if self._conn is not None:
            self._conn.close()  # a new session sees a fixed setting (read-only) or grant
        self._conn = None
        if not self._down or kind != self._down_kind:
            detail = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else kind
            if hint:
                log.error("store %s refuses writes (%s): %s; %s; samples wait in the spool %s and are retried",
                          describe_dsn(self.dsn), kind, detail, hint, self.spool.dir)
            else:
                log.error("store %s unreachable (%s): %s; samples go to the spool %s", describe_dsn(self.dsn), kind,
                          detail, self.spool.dir)
        self._down, self._down_kind = True, kind
        self._store_problem = bool(hint)  # the connection works; writes fail
        self._touch()

    def _touch(self) -> None:
        with self._lock:
            self.version += 1

    def _count_error(self, kind: str) -> None:
        with self._lock:
            self._errors[kind] = self._errors.get(kind, 0) + 1

    def _write(self, batch: SampleBatch) -> None:
        conn = self._conn
        assert conn is not None
        day = datetime.fromtimestamp(batch.taken_at, UTC).date()
        if day not in self._known_days:
            ensure_partitions(conn, self.schema, [day])
            self._known_days.add(day)
        ident = sql.Identifier(self.schema)
        with conn.transaction(), conn.cursor() as cur:
            resource_copy = sql.SQL("COPY {}.resource_metrics ({}) FROM STDIN").format(
                ident, sql.SQL(", ").join(map(sql.Identifier, RESOURCE_COLUMNS)))
            with cur.copy(resource_copy) as copy:
                copy.write_row([_value(col, batch.resource.get(col)) for col in RESOURCE_COLUMNS])
            if batch.queries:
                at = datetime.fromtimestamp(batch.taken_at, UTC)
                query_copy = sql.SQL("COPY {}.query_performance_metrics ({}) FROM STDIN").format(
                    ident, sql.SQL(", ").join(map(sql.Identifier, QUERY_COLUMNS)))
                with cur.copy(query_copy) as copy:
                    for row in batch.queries:
                        copy.write_row([row[0], at, *row[2:]])
            copy_wait_rows(cur, self.schema, batch.waits)
        with self._lock:
            seen = self._dirty_from.get(batch.target)
            if seen is None or batch.taken_at < seen:
                self._dirty_from[batch.target] = batch.taken_at

    def _maintain(self) -> None:
        """Partitions ahead and retention, at most once per MAINTENANCE_EVERY."""
        now = time.monotonic()
        if now < self._next_maintenance or self._conn is None or self._down:
            return
        self._next_maintenance = now + MAINTENANCE_EVERY
        retention = self.config.retention
        try:
            today = datetime.now(UTC).date()
            ensure_partitions(self._conn, self.schema, upcoming_days(today, self.config.store.partitions_ahead))
            self._known_days |= set(upcoming_days(today, self.config.store.partitions_ahead))
            result = apply_retention(
                self._conn, self.schema,
                query_days=retention.query_metrics_days, resource_days=retention.resource_metrics_days,
                alerts_days=retention.alerts_days, reports_days=retention.reports_days,
            )
            if result.dropped:
                self._known_days = {day for (_, day) in list_partitions(self._conn, self.schema)}
            delete_expired(self._conn, self.schema, query_days=retention.query_metrics_days)
            self.roll_up()
        except psycopg.OperationalError as exc:
            self._lost(exc)
        except psycopg.Error as exc:
            log.warning("store maintenance failed (will retry in an hour): %s", redact(str(exc)).strip())
            self._next_maintenance = now + 300

    def roll_up(self) -> None:
        """Sum the complete hours into query_metrics_hourly (see store.rollup); called by the
        hourly maintenance, and by tools and tests with the background thread stopped."""
        if not self._connected():
            return
        assert self._conn is not None
        with self._lock:
            dirty = dict(self._dirty_from)
            self._dirty_from.clear()
        try:
            results = roll_up(self._conn, self.schema, dirty_from=dirty,
                              targets=tuple(t.name for t in self.config.resolved_targets()))
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
            self._next_maintenance = min(self._next_maintenance, time.monotonic() + ROLLUP_CATCH_UP)

    # -- metrics --------------------------------------------------------------------------

    def families(self) -> Iterable[Family]:
        with self._lock:
            c = self._counters
            errors = dict(self._errors)
            snapshot = _Counters(**vars(c))
        yield STORE_UP.single(1 if self.up else 0)
        yield ACCEPTED.single(snapshot.accepted)
        yield WRITTEN.single(snapshot.written)
        yield ROWS.family([(("query_performance_metrics",), snapshot.query_rows),
                           (("resource_metrics",), snapshot.resource_rows)])
        yield SPOOLED.single(snapshot.spooled)
        yield SPOOL_SAMPLES.single(len(self.spool))
        yield SPOOL_BYTES.single(self.spool.bytes)
        yield DROPPED.single(self.spool.dropped + snapshot.dropped)
        yield REJECTED.single(snapshot.rejected + self.spool.unreadable)
        yield ERRORS.family(((k,), v) for k, v in sorted(errors.items()))
        yield WRITE_SECONDS.single(snapshot.last_write_seconds)
        yield LAST_WRITE.single(snapshot.last_write_at)

    @property
    def counters(self) -> _Counters:
        return self._counters

    @property
    def up(self) -> bool:
        """True once connected and while writes succeed."""
        return self._conn is not None and not self._down


def _value(column: str, value: Any) -> Any:
    if column in _TIME_COLUMNS and isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    return value
