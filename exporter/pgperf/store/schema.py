"""The store's schema: versioned migrations, daily partitions, retention.

Migrations are the numbered ``migrations/NNN_name.sql`` files, applied in order, each in
its own transaction, under an advisory lock so that two pgperf processes starting
together do not race; applied versions are recorded in ``<schema>.schema_migrations``.
Running them again does nothing.

The two sample tables and the wait profiles are partitioned by UTC day. Partitions for today and the next
``partitions_ahead`` days are created with ``CREATE TABLE IF NOT EXISTS``, so a restart
adds none; a sample from an older day (written from the spool) gets its partition on
demand. Retention drops whole partitions whose day ended before the cut-off, never
deleting rows one by one. Alerts and reports are small: their retention deletes rows.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

__all__ = [
    "MIGRATIONS",
    "PARTITIONED",
    "Migration",
    "apply_retention",
    "ensure_partitions",
    "list_partitions",
    "migrate",
    "partition_name",
]

log = logging.getLogger(__name__)

# Partitioned table -> its time column.
PARTITIONED = {"query_performance_metrics": "recorded_at", "resource_metrics": "timestamp",
               "statement_wait_profiles": "recorded_at"}
_ADVISORY_KEY = 0x70677065  # "pgpe": one migrator at a time per database
_PARTITION = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def _load_migrations() -> tuple[Migration, ...]:
    found = []
    folder = resources.files("pgperf.store").joinpath("migrations")
    for entry in folder.iterdir():
        match = re.match(r"^(\d{3})_(\w+)\.sql$", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    return tuple(sorted(found, key=lambda m: m.version))


MIGRATIONS = _load_migrations()


def migrate(conn: psycopg.Connection[Any], schema: str) -> list[int]:
    """Create the schema and apply pending migrations; return the versions applied."""
    applied: list[int] = []
    ident = sql.Identifier(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
        # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema
        # exists, which the role of docs/setup-role.sql (given its schema) does not have.
        if conn.execute("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        ).format(ident))
    for migration in MIGRATIONS:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
            done = conn.execute(
                sql.SQL("SELECT 1 FROM {}.schema_migrations WHERE version = %s").format(ident),
                (migration.version,),
            ).fetchone()
            if done:
                continue
            conn.execute(sql.SQL("SET LOCAL search_path TO {}, pg_catalog").format(ident))
            conn.execute(migration.sql)
            conn.execute(
                sql.SQL("INSERT INTO {}.schema_migrations (version, name) VALUES (%s, %s)").format(ident),
                (migration.version, migration.name),
            )
            applied.append(migration.version)
            log.info("store: applied migration %03d_%s in schema %s", migration.version, migration.name, schema)
    return applied


def schema_version(conn: psycopg.Connection[Any], schema: str) -> int:
    """The highest applied migration, 0 when the store was never created."""
    exists = conn.execute("SELECT to_regclass(%s)", (f"{schema}.schema_migrations",)).fetchone()
    if not exists or exists[0] is None:
        return 0
    row = conn.execute(sql.SQL("SELECT max(version) FROM {}.schema_migrations").format(sql.Identifier(schema))).fetchone()
    return int(row[0] or 0) if row else 0


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def ensure_partitions(conn: psycopg.Connection[Any], schema: str, days: list[date]) -> list[str]:
    """Create the daily partitions of the partitioned tables for *days*; return those created.

    Under the migrations' advisory lock: two pgperf processes writing to one store would
    otherwise race on CREATE TABLE IF NOT EXISTS (which is not safe against itself).
    """
    created = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
        existing = set(list_partitions(conn, schema))
        for table in PARTITIONED:
            for day in sorted(set(days)):
                name = partition_name(table, day)
                if (table, day) in existing:
                    continue
                start = datetime(day.year, day.month, day.day, tzinfo=UTC)
                # DDL takes no bind parameters: the bounds are literals.
                conn.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.{} PARTITION OF {}.{} FOR VALUES FROM ({}) TO ({})"
                ).format(sql.Identifier(schema), sql.Identifier(name), sql.Identifier(schema), sql.Identifier(table),
                         sql.Literal(start), sql.Literal(start + timedelta(days=1))))
                created.append(name)
    if created:
        log.info("store: created partitions %s", ", ".join(created))
    return created


def upcoming_days(today: date, ahead: int) -> list[date]:
    return [today + timedelta(days=i) for i in range(ahead + 1)]


def list_partitions(conn: psycopg.Connection[Any], schema: str) -> dict[tuple[str, date], str]:
    """Existing daily partitions: (table, day) -> partition name."""
    rows = conn.execute(
        """
        SELECT parent.relname, child.relname
        FROM pg_inherits i
        JOIN pg_class parent ON parent.oid = i.inhparent
        JOIN pg_class child ON child.oid = i.inhrelid
        JOIN pg_namespace n ON n.oid = parent.relnamespace
        WHERE n.nspname = %s AND parent.relname = ANY(%s)
        """,
        (schema, list(PARTITIONED)),
    ).fetchall()
    out: dict[tuple[str, date], str] = {}
    for parent, child in rows:
        match = _PARTITION.match(child)
        if match and match["table"] == parent:
            out[(parent, datetime.strptime(match["day"], "%Y%m%d").date())] = child
    return out


@dataclass(frozen=True)
class RetentionResult:
    dropped: tuple[str, ...]
    alerts_deleted: int
    reports_deleted: int


def apply_retention(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    query_days: int,
    resource_days: int,
    alerts_days: int,
    reports_days: int,
    now: datetime | None = None,
) -> RetentionResult:
    """Drop the partitions whose whole day is older than the retention; delete old alerts
    (resolved ones only) and reports."""
    now = now or datetime.now(UTC)
    # Wait profiles explain the statements' rows: they are kept as long.
    keep = {"query_performance_metrics": query_days, "resource_metrics": resource_days,
            "statement_wait_profiles": query_days}
    dropped = []
    for (table, day), name in sorted(list_partitions(conn, schema).items()):
        cutoff = (now - timedelta(days=keep[table])).date()
        if day + timedelta(days=1) <= cutoff:  # the partition's last instant is before the cut-off day
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))
            dropped.append(name)
    ident = sql.Identifier(schema)
    alerts = conn.execute(sql.SQL(
        "DELETE FROM {}.performance_alerts WHERE status = 'resolved' AND \"timestamp\" < %s"
    ).format(ident), (now - timedelta(days=alerts_days),)).rowcount
    reports = conn.execute(sql.SQL(
        "DELETE FROM {}.performance_reports WHERE generated_at < %s"
    ).format(ident), (now - timedelta(days=reports_days),)).rowcount
    if dropped or alerts or reports:
        log.info("store retention: dropped %d partition(s) %s; deleted %d alert(s), %d report(s)",
                 len(dropped), ", ".join(dropped), alerts, reports)
    return RetentionResult(tuple(dropped), alerts, reports)
