"""The store's schema: versioned migrations, daily partitions, retention.

Migrations are the numbered ``migrations/NNN_name.sql`` files, applied in order, each in
its own transaction, under an advisory lock so that two pgperf processes starting
together do not race; applied versions are recorded in ``<schema>.schema_migrations``.
Running them again does nothing. Each version is looked up on its own, not compared with
the highest applied one: a migration numbered below one already applied (two lines of
work each adding one) is applied when it arrives.

The sample tables (``query_samples``, under the view ``query_performance_metrics``,
``resource_metrics`` and ``statement_wait_profiles``) are partitioned by UTC day. Partitions for today and the next
``partitions_ahead`` days are created with ``CREATE TABLE IF NOT EXISTS``, so a restart
adds none; a sample from an older day (written from the spool) gets its partition on
demand. Retention drops whole partitions whose day ended before the cut-off, never
deleting rows one by one — except in a store shared by processes with different
retentions (see :func:`apply_retention`). Alerts and reports are small: their retention
deletes rows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
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
PARTITIONED = {"query_samples": "recorded_at", "resource_metrics": "timestamp",
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


def migrate(conn: psycopg.Connection[Any], schema: str, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Create the schema and apply the *migrations* not applied yet, in order of version;
    return the versions applied."""
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
    for migration in sorted(migrations, key=lambda m: m.version):
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
    #: Sample rows of the given targets deleted from partitions kept for other targets.
    rows_deleted: int = 0


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def apply_retention(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    query_days: int,
    resource_days: int,
    alerts_days: int,
    reports_days: int,
    targets: Collection[str] = (),
    now: datetime | None = None,
) -> RetentionResult:
    """Drop the partitions whose whole day is older than the retention; delete old alerts
    (resolved ones only) and reports.

    *targets* are the targets whose samples this process writes. With them, the retention
    is per target in a store that several processes share: their retention is recorded in
    ``store_retention``, a partition is dropped only once the longest retention recorded
    there has passed (a registration counts until its own retention has passed since it was
    last recorded: by then every row of its targets has expired), and the rows of *targets*
    older than their own cut-off day are deleted from the partitions kept for the others.
    Alerts and reports are then deleted for *targets* and for rows without a target only.
    Without *targets* (tools, tests), the given days apply to every target."""
    now = now or datetime.now(UTC)
    ident = sql.Identifier(schema)
    own = {"query_samples": query_days, "resource_metrics": resource_days}
    keep = dict(own)
    if targets:
        with conn.transaction():
            conn.execute(sql.SQL(
                "INSERT INTO {}.store_retention AS r (target, query_days, resource_days, updated_at)"
                " SELECT t, %s, %s, %s FROM unnest(%s::text[]) AS t"
                " ON CONFLICT (target) DO UPDATE SET query_days = EXCLUDED.query_days,"
                " resource_days = EXCLUDED.resource_days, updated_at = EXCLUDED.updated_at"
            ).format(ident), (query_days, resource_days, now, list(targets)))
    longest = conn.execute(sql.SQL(
        "SELECT max(query_days) FILTER (WHERE updated_at > %(now)s - make_interval(days => query_days)),"
        " max(resource_days) FILTER (WHERE updated_at > %(now)s - make_interval(days => resource_days))"
        " FROM {}.store_retention").format(ident), {"now": now}).fetchone()
    if longest is not None:
        keep["query_samples"] = max(query_days, longest[0] or 0)
        keep["resource_metrics"] = max(resource_days, longest[1] or 0)
    # Wait profiles explain the statements' rows: they are kept as long.
    keep["statement_wait_profiles"] = keep["query_samples"]
    dropped = []
    for (table, day), name in sorted(list_partitions(conn, schema).items()):
        cutoff = (now - timedelta(days=keep[table])).date()
        if day + timedelta(days=1) <= cutoff:  # the partition's last instant is before the cut-off day
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))
            dropped.append(name)
    rows = 0
    if targets:
        # The cut-off is a day boundary, as for partitions: nothing is deleted where all
        # writers keep the same number of days (those partitions are gone already).
        if keep["query_samples"] > query_days:
            rows += conn.execute(sql.SQL(
                "DELETE FROM {s}.query_samples WHERE recorded_at < %s"
                " AND statement_id IN (SELECT id FROM {s}.query_statements WHERE target = ANY(%s))").format(s=ident),
                (_day_start((now - timedelta(days=query_days)).date()), list(targets))).rowcount
        if keep["resource_metrics"] > resource_days:
            rows += conn.execute(sql.SQL(
                'DELETE FROM {}.resource_metrics WHERE "timestamp" < %s AND target = ANY(%s)').format(ident),
                (_day_start((now - timedelta(days=resource_days)).date()), list(targets))).rowcount
    mine = sql.SQL(" AND (target = ANY(%s) OR target IS NULL)" if targets else "")
    extra = [list(targets)] if targets else []
    alerts = conn.execute(sql.SQL(
        "DELETE FROM {}.performance_alerts WHERE status = 'resolved' AND \"timestamp\" < %s{}"
    ).format(ident, mine), [now - timedelta(days=alerts_days), *extra]).rowcount
    reports = conn.execute(sql.SQL(
        "DELETE FROM {}.performance_reports WHERE generated_at < %s{}"
    ).format(ident, mine), [now - timedelta(days=reports_days), *extra]).rowcount
    if dropped or alerts or reports or rows:
        log.info("store retention: dropped %d partition(s) %s; deleted %d sample row(s) kept for other targets, "
                 "%d alert(s), %d report(s)", len(dropped), ", ".join(dropped), rows, alerts, reports)
    return RetentionResult(tuple(dropped), alerts, reports, rows)
