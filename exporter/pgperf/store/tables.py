"""One sample into the store's tables, in one transaction.

The sample's :class:`~pgperf.store.rows.ResourceRow` goes to ``resource_metrics`` by COPY.
Each :class:`~pgperf.store.rows.QueryRow` is split the way migration 005 stores it: its
statement (target, query id, database, user) becomes the integer id of its
``query_statements`` row, created the first time it is seen; its text goes to
``statement_texts`` when it is new or changed; the counters go to ``query_samples`` by COPY.

The ids and the texts known to be in the store are remembered (a bounded map each), so a
sample of known statements costs the two COPYs and nothing more. They are remembered only
once the transaction has committed: a batch that is rolled back leaves no id behind that
the store does not have.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Collection, Iterable
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import sql

from .rows import RESOURCE_COLUMNS, QueryRow, SampleBatch
from .schema import ensure_partitions, list_partitions
from .waits import copy_wait_rows

__all__ = ["REMAINDER_TEXT", "SAMPLE_COLUMNS", "StatementKey", "TableWriter", "forget_unused_statements"]

#: The stored text of the remainder row (query_id 'other'). Its number of statements
#: changes with every sample; one text per query id cannot follow it.
REMAINDER_TEXT = "(other statements)"
SAMPLE_COLUMNS = (
    "statement_id", "recorded_at", "interval_seconds", "calls", "total_time", "mean_time", "min_time", "max_time",
    "stddev_time", "rows_affected", "cache_hits", "cache_misses", "temp_blocks_written", "plan_time",
    "spans_reset", "is_remainder",
)
CACHE_SIZE = 50_000  # statements (and texts) remembered; beyond, the least recently used are looked up again

StatementKey = tuple[str, str, str | None, str | None]  # target, query_id, datname, username
K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def update(self, items: Iterable[tuple[K, V]]) -> None:
        for key, value in items:
            self._items[key] = value
            self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


def _key(row: QueryRow) -> StatementKey:
    return (row.target, row.query_id, row.datname, row.username)


def _text(row: QueryRow) -> str:
    return REMAINDER_TEXT if row.is_remainder else row.query_text


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


_NEW_STATEMENTS = """
INSERT INTO {s}.query_statements (target, query_id, datname, username, first_seen)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[])
ON CONFLICT DO NOTHING
"""
_STATEMENT_IDS = """
SELECT k.id, k.target, k.query_id, k.datname, k.username
FROM {s}.query_statements k
JOIN unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS i(target, query_id, datname, username)
  ON k.target = i.target AND k.query_id = i.query_id
 AND k.datname IS NOT DISTINCT FROM i.datname AND k.username IS NOT DISTINCT FROM i.username
"""
_TEXTS = """
INSERT INTO {s}.statement_texts AS t (target, query_id, query_text)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])
ON CONFLICT (target, query_id) DO UPDATE SET query_text = EXCLUDED.query_text, updated_at = now()
WHERE t.query_text IS DISTINCT FROM EXCLUDED.query_text
"""


class TableWriter:
    """Writes batches on a connection the caller owns; remembers partitions, statement ids
    and texts between batches (see the module docstring)."""

    def __init__(self, schema: str, *, cache_size: int = CACHE_SIZE) -> None:
        self.schema = schema
        self._ident = sql.Identifier(schema)
        self._known_days: set[date] = set()
        self._ids: _Lru[StatementKey, int] = _Lru(cache_size)
        self._texts: _Lru[tuple[str, str], bytes] = _Lru(cache_size)

    # -- what is known of the store ----------------------------------------------------------

    def read_partitions(self, conn: psycopg.Connection[Any]) -> None:
        """Learn the existing daily partitions (on connecting, and after retention)."""
        self._known_days = {day for (_, day) in list_partitions(conn, self.schema)}

    def add_partitions(self, days: Iterable[date]) -> None:
        self._known_days |= set(days)

    def forget_statements(self) -> None:
        """Statements may have been deleted (retention): look ids and texts up again."""
        self._ids.clear()
        self._texts.clear()

    # -- writing -------------------------------------------------------------------------------

    def write(self, conn: psycopg.Connection[Any], batch: SampleBatch) -> None:
        """Write *batch* in one transaction; raises psycopg errors as they come."""
        day = datetime.fromtimestamp(batch.taken_at, UTC).date()
        if day not in self._known_days:
            ensure_partitions(conn, self.schema, [day])
            self._known_days.add(day)
        new_ids: dict[StatementKey, int] = {}
        new_texts: dict[tuple[str, str], bytes] = {}
        with conn.transaction(), conn.cursor() as cur:
            resource = sql.SQL("COPY {}.resource_metrics ({}) FROM STDIN").format(
                self._ident, sql.SQL(", ").join(map(sql.Identifier, RESOURCE_COLUMNS)))
            with cur.copy(resource) as copy:
                copy.write_row(batch.resource.copy_values())
            if batch.queries:
                at = datetime.fromtimestamp(batch.taken_at, UTC)
                new_ids = self._statement_ids(cur, batch.queries, at)
                new_texts = self._write_texts(cur, batch.queries)
                samples = sql.SQL("COPY {}.query_samples ({}) FROM STDIN").format(
                    self._ident, sql.SQL(", ").join(map(sql.Identifier, SAMPLE_COLUMNS)))
                with cur.copy(samples) as copy:
                    for row in batch.queries:
                        key = _key(row)
                        statement = new_ids.get(key) or self._ids.get(key)
                        copy.write_row((
                            statement, at, row.interval_seconds, row.calls, row.total_time, row.mean_time,
                            row.min_time, row.max_time, row.stddev_time, row.rows_affected, row.cache_hits,
                            row.cache_misses, row.temp_blocks_written, row.plan_time, row.spans_reset,
                            row.is_remainder))
            copy_wait_rows(cur, self.schema, batch.waits)
        # Committed: what was written is now known.
        self._ids.update(new_ids.items())
        self._texts.update(new_texts.items())

    def _statement_ids(self, cur: psycopg.Cursor[Any], rows: list[QueryRow], at: datetime) -> dict[StatementKey, int]:
        """Ids of the statements of *rows* not remembered yet, created when missing."""
        missing = list(dict.fromkeys(k for k in map(_key, rows) if self._ids.get(k) is None))
        if not missing:
            return {}
        columns = [list(c) for c in zip(*missing, strict=True)]
        cur.execute(sql.SQL(_NEW_STATEMENTS).format(s=self._ident), [*columns, [at] * len(missing)])
        found = {(t, q, d, u): i for i, t, q, d, u in cur.execute(sql.SQL(_STATEMENT_IDS).format(s=self._ident),
                                                                   columns).fetchall()}
        if len(found) < len(missing):
            # Only a statement deleted between the two statements above can be missing.
            raise psycopg.errors.SerializationFailure(
                f"{len(missing) - len(found)} statement(s) vanished while being created; the sample is retried")
        return found

    def _write_texts(self, cur: psycopg.Cursor[Any], rows: list[QueryRow]) -> dict[tuple[str, str], bytes]:
        """Insert or update the texts not known to be in the store; return them."""
        changed: dict[tuple[str, str], tuple[str, bytes]] = {}
        for row in rows:
            text = _text(row)
            digest = _digest(text)
            if self._texts.get((row.target, row.query_id)) != digest:
                changed[(row.target, row.query_id)] = (text, digest)
        if changed:
            cur.execute(sql.SQL(_TEXTS).format(s=self._ident), [
                [target for target, _ in changed], [query_id for _, query_id in changed],
                [text for text, _ in changed.values()]])
        return {key: digest for key, (_, digest) in changed.items()}


def forget_unused_statements(conn: psycopg.Connection[Any], schema: str, targets: Collection[str],
                             before: datetime) -> int:
    """Delete the statements of *targets* first seen before *before* that no sample refers
    to any more (retention removed them), and the texts no statement has; return how many
    statements went."""
    ident = sql.Identifier(schema)
    with conn.transaction():
        gone = conn.execute(sql.SQL(
            "DELETE FROM {s}.query_statements k WHERE k.target = ANY(%s) AND k.first_seen < %s"
            " AND NOT EXISTS (SELECT FROM {s}.query_samples q WHERE q.statement_id = k.id)").format(s=ident),
            (list(targets), before)).rowcount
        if gone:
            conn.execute(sql.SQL(
                "DELETE FROM {s}.statement_texts t WHERE t.target = ANY(%s)"
                " AND NOT EXISTS (SELECT FROM {s}.query_statements k WHERE k.target = t.target"
                " AND k.query_id = t.query_id)").format(s=ident), (list(targets),))
    return gone
