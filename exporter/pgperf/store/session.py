"""How pgperf opens sessions on its store: one place for the DSN, the schema and the
session settings, shared by the writer, its maintenance and the client's pool.

Every store session runs in UTC (a startup option, so a pooled connection and the
writer's own agree without a ``SET`` after connecting), in autocommit (transactions are
explicit), with the limits of :class:`~pgperf.db.SessionSettings`: statements may take
longer than on the monitored server (at least 30 s: a retention run or a rollup is bulk
work), locks are waited for at most 5 s.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from ..config import Config
from ..db import SessionSettings, describe_dsn

__all__ = ["API", "WRITER", "StoreSessions"]

WRITER = "pgperf-store"  # the writer and its maintenance
API = "pgperf-api"  # the client's pool: API, alerts, reports


class StoreSessions:
    """Connections to ``config.store``; see the module docstring."""

    def __init__(self, config: Config) -> None:
        self.dsn = config.store_dsn()
        self.schema = config.store.schema_name
        self._connect_timeout = config.connection.connect_timeout
        self._statement_timeout = max(30.0, config.connection.statement_timeout)

    def settings(self, application_name: str) -> SessionSettings:
        return SessionSettings(
            application_name=application_name,
            connect_timeout=self._connect_timeout,
            statement_timeout=self._statement_timeout,
            lock_timeout=5.0,
            idle_in_transaction_session_timeout=60.0,
        )

    def connect_kwargs(self, application_name: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"autocommit": True, **self.settings(application_name).connect_kwargs(self.dsn)}
        kwargs["options"] = f"{kwargs['options']} -c TimeZone=UTC"
        return kwargs

    def connect(self, application_name: str = WRITER) -> psycopg.Connection[Any]:
        """A new session; raises psycopg errors as they come."""
        return psycopg.connect(self.dsn, **self.connect_kwargs(application_name))

    def pool(self, application_name: str = API, *, size: int = 2) -> ConnectionPool:
        """A pool of at most *size* sessions, not opened yet."""
        return ConnectionPool(self.dsn, kwargs=self.connect_kwargs(application_name), min_size=0, max_size=size,
                              open=False, timeout=self._connect_timeout, name="pgperf-store-client",
                              check=ConnectionPool.check_connection, max_idle=120)

    def describe(self) -> str:
        """The store's DSN without secrets, for messages."""
        return describe_dsn(self.dsn)
