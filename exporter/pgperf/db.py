"""Connections to PostgreSQL: one small pool per target, session settings, server
capabilities detected on every new connection, and classification of connection errors.

Every session pgperf opens carries ``application_name``, ``statement_timeout``,
``lock_timeout`` and ``idle_in_transaction_session_timeout`` as startup options, so the
settings cost no round trip and hold from the first statement on. Monitoring sessions run
in autocommit mode: they never hold a snapshot or a lock between statements.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psutil
import psycopg
from psycopg import conninfo as _conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from .redact import redact

__all__ = [
    "STALL_GUARD",
    "ConnectionFailed",
    "ServerInfo",
    "SessionSettings",
    "StallGuard",
    "TargetDatabase",
    "classify_error",
    "close_and_wait",
    "connect",
    "database_dsn",
    "describe_dsn",
    "detect_server",
    "is_local",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionSettings:
    """Per-session limits applied to every connection pgperf opens."""

    application_name: str = "pgperf"
    connect_timeout: float = 5.0
    statement_timeout: float = 5.0
    lock_timeout: float = 1.0
    idle_in_transaction_session_timeout: float = 30.0

    @property
    def no_answer_after(self) -> float:
        """Seconds after which a call that got no answer at all ends its connection
        (StallGuard): well past what statement_timeout lets a collector's queries take."""
        return 4 * self.statement_timeout + 2 * self.connect_timeout + 10

    def connect_kwargs(self, dsn: str) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` that add our settings to *dsn*.

        Options already in the DSN are kept; ours are appended, so they win. The search
        path is pinned to ``pg_catalog, pg_temp`` (a startup option overrides a database's
        or role's ``search_path``): a database owner cannot shadow the statistics views
        pgperf reads with objects of their own; everything else pgperf names is
        schema-qualified. TCP keepalives and a user timeout (unless the DSN sets them)
        end a connection whose peer vanished (a half-open connection would otherwise
        hold the sampler for the kernel's two hours).
        """
        try:
            given = _conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            given = {}  # reported with context when the connection is attempted
        existing = given.get("options") or ""
        ours = " ".join(
            f"-c {name}={int(seconds * 1000)}"
            for name, seconds in (
                ("statement_timeout", self.statement_timeout),
                ("lock_timeout", self.lock_timeout),
                ("idle_in_transaction_session_timeout", self.idle_in_transaction_session_timeout),
            )
        )
        kwargs: dict[str, Any] = {
            "application_name": self.application_name,
            "connect_timeout": max(1, round(self.connect_timeout)),
            "options": f"{existing} {ours} -c search_path=pg_catalog,pg_temp".strip(),
        }
        unacked_ms = int((self.statement_timeout + 2 * self.connect_timeout + 10) * 1000)
        for key, value in (("keepalives", 1), ("keepalives_idle", 10), ("keepalives_interval", 5),
                           ("keepalives_count", 3), ("tcp_user_timeout", unacked_ms)):
            if key not in given:
                kwargs[key] = value
        return kwargs


@dataclass(frozen=True)
class ServerInfo:
    """What pgperf knows about a server; detected again after every reconnect."""

    version_num: int
    version: str
    short_version: str
    is_superuser: bool
    can_read_all_stats: bool  # superuser, pg_read_all_stats or pg_monitor
    in_recovery: bool
    data_directory: str | None
    pgss_schema: str | None  # schema of pg_stat_statements, None if not created
    pgss_version: str | None
    # None when the role may not read shared_preload_libraries (superuser or
    # pg_read_all_settings only; pg_settings then hides the row instead of failing)
    pgss_preloaded: bool | None
    max_connections: int
    reserved_connections: int  # superuser_reserved_connections (+ reserved_connections, 16+)
    current_user: str
    current_database: str
    server_address: str | None
    postmaster_start_time: datetime | None = None

    @property
    def pgss_version_tuple(self) -> tuple[int, ...]:
        if not self.pgss_version:
            return ()
        return tuple(int(p) for p in self.pgss_version.split(".") if p.isdigit())


_DETECT_SQL = """
SELECT current_setting('server_version_num')::int AS version_num,
       version() AS version,
       current_setting('server_version') AS short_version,
       r.rolsuper AS is_superuser,
       (r.rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')) AS can_read_all_stats,
       pg_is_in_recovery() AS in_recovery,
       CASE WHEN r.rolsuper OR pg_has_role(current_user, 'pg_read_all_settings', 'USAGE')
            THEN current_setting('data_directory') END AS data_directory,
       n.nspname AS pgss_schema,
       e.extversion AS pgss_version,
       'pg_stat_statements' = ANY(string_to_array(replace(
           (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), ' ', ''), ',')
       ) AS pgss_preloaded,
       current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int
         + COALESCE(current_setting('reserved_connections', true)::int, 0) AS reserved_connections,
       current_user::text AS current_user,
       current_database()::text AS current_database,
       host(inet_server_addr()) AS server_address,
       pg_postmaster_start_time() AS postmaster_start_time
FROM pg_roles r
LEFT JOIN pg_extension e ON e.extname = 'pg_stat_statements'
LEFT JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE r.rolname = current_user
"""


def detect_server(conn: psycopg.Connection[Any]) -> ServerInfo:
    """Read the server's version and capabilities on *conn* (one round trip)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_DETECT_SQL).fetchone()
    assert row is not None, "current_user has no pg_roles row"
    short = str(row["short_version"]).split(" ")[0]
    return ServerInfo(short_version=short, **{k: v for k, v in row.items() if k != "short_version"})


class ConnectionFailed(Exception):
    """No connection to a target could be obtained; ``kind`` says why in one word."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(redact(message))
        self.kind = kind


# Substrings of libpq / server messages at connection time, which carry no SQLSTATE.
_KINDS = (
    ("password authentication failed", "authentication_failed"),
    ("authentication failed", "authentication_failed"),
    ("no password supplied", "authentication_failed"),
    ("no pg_hba.conf entry", "rejected_by_pg_hba"),
    ("too many clients", "too_many_connections"),
    ("remaining connection slots are reserved", "too_many_connections"),
    ("does not exist", "database_or_role_missing"),
    ("the database system is starting up", "server_starting"),
    ("the database system is shutting down", "server_shutting_down"),
    ("the database system is in recovery mode", "server_starting"),
    ("terminating connection due to administrator command", "server_shutting_down"),
    ("connection refused", "connection_refused"),
    ("no such file or directory", "connection_refused"),
    ("timeout expired", "timeout"),
    ("could not translate host name", "dns_failure"),
    ("name or service not known", "dns_failure"),
    ("server closed the connection unexpectedly", "connection_lost"),
    ("consuming input failed", "connection_lost"),
    ("ssl", "ssl_error"),
)


class _Watch:
    __slots__ = ("conn", "deadline", "fired", "seconds")

    def __init__(self, conn: psycopg.Connection[Any], seconds: float) -> None:
        self.conn, self.seconds, self.fired = conn, seconds, False
        self.deadline = time.monotonic() + seconds


class StallGuard:
    """Ends a connection whose call got no answer in time.

    ``statement_timeout`` is enforced by the server and TCP keepalives by the kernels; a
    peer that keeps the TCP connection alive but never answers (a stuck proxy or
    pooler, a frozen server host) would hold a sampling thread forever, psycopg having no
    client-side timeout. One thread watches the guarded calls; past its deadline it shuts
    the connection's socket down, so the blocked call fails at once with a connection
    error, and marks the watch ``fired``.
    """

    def __init__(self, tick: float = 0.5) -> None:
        self.tick = tick
        self._lock = threading.Lock()
        self._watches: set[_Watch] = set()
        self._thread: threading.Thread | None = None

    @contextmanager
    def guard(self, conn: psycopg.Connection[Any], seconds: float) -> Iterator[_Watch]:
        watch = _Watch(conn, seconds)
        with self._lock:
            self._watches.add(watch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="pgperf-stall-guard", daemon=True)
                self._thread.start()
        try:
            yield watch
        finally:
            with self._lock:
                self._watches.discard(watch)

    def _loop(self) -> None:
        while True:
            time.sleep(self.tick)
            now = time.monotonic()
            with self._lock:
                expired = [w for w in self._watches if not w.fired and now >= w.deadline]
                for w in expired:
                    w.fired = True
            for w in expired:
                _shut_down(w.conn, w.seconds)


def _shut_down(conn: psycopg.Connection[Any], seconds: float) -> None:
    try:
        fd = conn.pgconn.socket
        dup = socket.socket(fileno=os.dup(fd))
    except (psycopg.Error, OSError):
        return  # already closed
    try:
        dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        dup.close()
    log.warning("a connection to %s got no answer within %.0fs: closed it (a stuck proxy, pooler or server?)",
                describe_dsn(conn.info.dsn), seconds)


#: The process's guard (one thread for every target).
STALL_GUARD = StallGuard()


def classify_error(exc: BaseException) -> str:
    """Map a connection-level error to a short kind used in metrics and logs."""
    if isinstance(exc, ConnectionFailed):
        return exc.kind
    if isinstance(exc, PoolTimeout):
        return "timeout"
    text = str(exc).lower()
    for needle, kind in _KINDS:
        if needle in text:
            return kind
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return "statement_timeout"
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return "lock_timeout"
    return "other"


def describe_dsn(dsn: str) -> str:
    """A short, password-free name for a DSN: ``host:port/dbname``."""
    try:
        params = _conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "invalid-dsn"
    env = os.environ  # what the DSN leaves out, libpq takes from PG* variables
    host = str(params.get("host") or params.get("hostaddr") or env.get("PGHOST") or env.get("PGHOSTADDR")
               or "localhost")
    if host.startswith("/"):
        host = "localhost"
    port = str(params.get("port") or env.get("PGPORT") or "5432")
    dbname = str(params.get("dbname") or env.get("PGDATABASE") or params.get("user") or env.get("PGUSER")
                 or "postgres")
    return f"{host.split(',')[0]}:{port.split(',')[0]}/{dbname}"


def is_local(dsn: str) -> bool:
    """True when the DSN's (first) host is this machine: a Unix socket, a loopback
    address or an address of one of this machine's interfaces."""
    try:
        params = _conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return False
    host = str(params.get("hostaddr") or params.get("host") or os.environ.get("PGHOST") or "")
    host = host.split(",")[0].strip()
    if not host or host.startswith(("/", "@")) or host == "localhost":
        return True
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    mine = {a.address.split("%")[0] for nics in psutil.net_if_addrs().values() for a in nics}
    for address in addresses:
        try:
            if ipaddress.ip_address(str(address)).is_loopback or address in mine:
                return True
        except ValueError:
            continue
    return False


def close_and_wait(conn: psycopg.Connection[Any], timeout: float = 2.0) -> None:
    """Close *conn* and wait until its server process has exited.

    Closing a connection only sends the server a goodbye: its backend still shows in
    pg_stat_activity for a moment. A connection cap must count backends, not client
    handles, so before the socket is released a duplicate of it is kept and read until
    the server closes its end, which it does when the backend process exits (after it
    left pg_stat_activity).
    """
    try:
        fd = os.dup(conn.fileno())
    except (OSError, psycopg.Error):
        conn.close()
        return
    conn.close()
    with socket.socket(fileno=fd) as sock:
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                if not sock.recv(4096):
                    break
        except OSError:
            pass  # timed out or reset: nothing more to wait for


def database_dsn(dsn: str, dbname: str) -> str:
    """*dsn* with its database replaced by *dbname* (every other parameter kept)."""
    return _conninfo.make_conninfo(dsn, dbname=dbname)


def connect(dsn: str, settings: SessionSettings, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open one autocommit connection with our session settings (for short-lived work)."""
    try:
        return psycopg.connect(dsn, autocommit=True, **settings.connect_kwargs(dsn), **kwargs)
    except psycopg.Error as exc:
        raise ConnectionFailed(classify_error(exc), str(exc)) from None


class TargetDatabase:
    """A monitored server: its pool, last connection error, and detected capabilities.

    The pool is small and fixed (``pool_size``, default 2) and opens connections lazily.
    Each new connection re-detects the server (version, extension, privileges), so an
    upgrade or a ``CREATE EXTENSION`` is noticed after the next reconnect.
    """

    def __init__(
        self,
        name: str,
        dsn: str,
        settings: SessionSettings,
        *,
        pool_size: int = 2,
        reconnect_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.dsn = dsn
        self.settings = settings
        self._lock = threading.Lock()
        self._server: ServerInfo | None = None
        self._generation = 0  # incremented on every new connection
        self._last_error: tuple[str, str] | None = None
        self.pool = ConnectionPool(
            dsn,
            kwargs={"autocommit": True, **settings.connect_kwargs(dsn)},
            min_size=0,
            max_size=pool_size,
            # One background worker (connects, checks) per target instead of three: a
            # fleet of targets in one process would otherwise hold four idle threads each.
            num_workers=1,
            name=f"pgperf-{name}",
            open=False,
            timeout=settings.connect_timeout,
            reconnect_timeout=reconnect_timeout,
            max_idle=300,
            connection_class=self._connection_class(),
            configure=self._configure,
            check=self._check,
        )

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        with STALL_GUARD.guard(conn, self.settings.no_answer_after):
            ConnectionPool.check_connection(conn)

    def _connection_class(self) -> type[psycopg.Connection[Any]]:
        target = self

        class TrackedConnection(psycopg.Connection[Any]):
            """Records why the pool's last connection attempt failed (for ``pg_up``)."""

            @classmethod
            def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
                try:
                    conn = super().connect(conninfo, **kwargs)
                except psycopg.Error as exc:
                    target._record_error(exc)
                    raise
                return conn

        return TrackedConnection

    def _record_error(self, exc: BaseException) -> None:
        kind = classify_error(exc)
        with self._lock:
            self._last_error = (kind, redact(str(exc)).strip())

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        with STALL_GUARD.guard(conn, self.settings.no_answer_after):
            info = detect_server(conn)
        with self._lock:
            changed = self._server is None or self._server.version_num != info.version_num
            self._server = info
            self._generation += 1
            self._last_error = None
        if changed:
            log.info(
                "target %s: connected to PostgreSQL %s as %s (pg_stat_statements %s)",
                self.name,
                info.short_version,
                info.current_user,
                info.pgss_version or "not installed",
            )

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close(timeout=5)

    @property
    def server(self) -> ServerInfo | None:
        return self._server

    @property
    def generation(self) -> int:
        """Changes whenever a new connection was made (capabilities re-detected)."""
        return self._generation

    @property
    def last_error(self) -> tuple[str, str] | None:
        return self._last_error

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a connection; raise ConnectionFailed with the reason if none comes."""
        try:
            conn = self.pool.getconn(timeout=timeout)
        except PoolTimeout as exc:
            last = self._last_error
            if last is not None:
                raise ConnectionFailed(last[0], last[1]) from None
            raise ConnectionFailed("timeout", f"no connection within {timeout}s: {exc}") from None
        try:
            yield conn
        finally:
            self.pool.putconn(conn)
