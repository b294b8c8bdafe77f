"""The audit trail: who acknowledged, resolved or reloaded what, when, from where.

Rows go to ``<schema>.audit_log`` in the same transaction as the change they describe,
so an action is never recorded without its audit row, nor the other way round.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .store.client import where

__all__ = ["Actor", "cli_actor", "record", "search"]


@dataclass(frozen=True)
class Actor:
    """Who acts: an API token's name and role, ``cli:<user>`` or ``python``."""

    name: str
    role: str | None = None
    source: str | None = None  # the client's address, for HTTP requests


PYTHON = Actor("python")


def cli_actor() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"cli:{user}", "operator", "localhost")


def record(conn: psycopg.Connection[Any], schema: str, actor: Actor, action: str, subject: str | None,
           detail: dict[str, Any] | None = None) -> None:
    conn.execute(
        sql.SQL("INSERT INTO {}.audit_log (actor, role, action, subject, detail, source)"
                " VALUES (%s, %s, %s, %s, %s, %s)").format(sql.Identifier(schema)),
        (actor.name, actor.role, action, subject, Jsonb(detail or {}), actor.source),
    )


def search(conn: psycopg.Connection[Any], schema: str, *, since: datetime | None = None,
           action: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    filters, params = where(("at >= %s", since), ("action = %s", action))
    params.append(limit)
    query = sql.SQL("SELECT at, actor, role, action, subject, detail, source FROM {}.audit_log{}"
                    " ORDER BY at DESC, id DESC LIMIT %s").format(sql.Identifier(schema), filters)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()
