"""Rows of ``statement_wait_profiles`` (migration 004): the per-statement wait profiles of
query insight, carried by a sample's batch and written in its transaction.

A row is ``WAIT_COLUMNS`` in order, times as epoch seconds (UTC) so that a batch waiting in
the spool keeps them as JSON. The insight package makes the rows (``pgperf.insight``); the
store writer only copies them, so that wait profiles take the samples' path to the store —
one transaction, the spool while the store is away — without the store knowing insight.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["WAIT_COLUMNS", "copy_wait_rows"]

WAIT_COLUMNS = ("target", "recorded_at", "interval_seconds", "source", "query_id", "wait_event_type",
                "wait_event", "samples", "seconds")
_AT = WAIT_COLUMNS.index("recorded_at")


def copy_wait_rows(cur: psycopg.Cursor[Any], schema: str, rows: Sequence[Sequence[Any]]) -> int:
    """COPY *rows* into the wait profiles on *cur* (inside the caller's transaction; the
    day's partition exists: the writer makes the batch's). Returns the rows written."""
    if not rows:
        return 0
    statement = sql.SQL("COPY {}.statement_wait_profiles ({}) FROM STDIN").format(
        sql.Identifier(schema), sql.SQL(", ").join(map(sql.Identifier, WAIT_COLUMNS)))
    with cur.copy(statement) as copy:
        for row in rows:
            values = list(row)
            values[_AT] = datetime.fromtimestamp(float(values[_AT]), UTC)
            copy.write_row(values)
    return len(rows)
