"""Short database work against the store (API, alerts, reports): a small pool."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from ..config import Config
from ..db import classify_error, describe_dsn
from ..redact import redact
from .schema import migrate
from .session import API, StoreSessions

__all__ = ["StoreClient", "StoreUnavailable", "where"]


class StoreUnavailable(Exception):
    """The store database cannot be reached; the message says which and why."""


class StoreClient:
    def __init__(self, config: Config, *, pool_size: int = 2, sessions: StoreSessions | None = None) -> None:
        sessions = sessions or StoreSessions(config)
        self.dsn = sessions.dsn
        self.schema = sessions.schema
        self.pool: ConnectionPool = sessions.pool(size=pool_size)
        self._sessions = sessions
        self._opened = False

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if not self._opened:
            self.pool.open(wait=False)
            self._opened = True
        try:
            with self.pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise StoreUnavailable(f"store {describe_dsn(self.dsn)} unreachable (no connection within "
                                   f"{self.pool.timeout:.0f}s)") from None
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"store {describe_dsn(self.dsn)} unreachable ({classify_error(exc)}): "
                                   f"{redact(str(exc)).strip()}") from None

    def probe(self) -> None:
        """Connect once, without the pool's retries in the background: a command run by
        hand learns at once (within ``connection.connect_timeout``) that the store cannot
        be reached, and why. Raises StoreUnavailable."""
        try:
            with self._sessions.connect(API):
                pass
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"store {describe_dsn(self.dsn)} unreachable ({classify_error(exc)}): "
                                   f"{_first_line(exc)}") from None

    def migrate(self) -> list[int]:
        with self.connection() as conn:
            return migrate(conn, self.schema)

    def close(self) -> None:
        if self._opened:
            self.pool.close(timeout=5)


def _first_line(exc: BaseException) -> str:
    lines = redact(str(exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def where(*conditions: tuple[str, Any]) -> tuple[sql.Composable, list[Any]]:
    """`` WHERE c1 AND c2 ...`` of the conditions whose value is not None (empty SQL when
    none is), and their parameters. Each condition is SQL text with one ``%s``, such as
    ``("target = %s", target)``."""
    chosen = [(sql.SQL(text), value) for text, value in conditions if value is not None]
    if not chosen:
        return sql.SQL(""), []
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(c for c, _ in chosen), [v for _, v in chosen]
