"""The server log: errors by kind, counted from PostgreSQL's own log file.

No statistics view counts statement timeouts: only the log says "canceling statement due to
statement timeout". This collector reads what the server appended to its current log file
since the last sample, through SQL (``pg_current_logfile``, ``pg_stat_file``,
``pg_read_binary_file``, so a remote server works as a local one), and counts its ERROR,
FATAL and PANIC entries by kind: the condition name of the entry's SQLSTATE (PostgreSQL
documentation, Appendix A: ``deadlock_detected``, ``unique_violation`` ...), except that a
cancelled statement is ``statement_timeout`` or ``lock_timeout`` when its message says so
(messages in English: ``lc_messages`` C or en).

It needs ``logging_collector = on`` with a ``csvlog`` or ``jsonlog`` destination (the
formats that carry the SQLSTATE) and a role that may read server files (superuser, or
``pg_read_server_files``); it is off by default (``collectors.log_errors.enabled``). Counting
starts at the end of the file at the first sample (what was logged before is not counted),
follows the server to each new log file, and reads at most ``max_bytes`` per sample
(``pg_log_unread_bytes`` says how far behind it is). Only counts leave pgperf: no message
text is kept or served.

``postgresql_errors_total`` is a legacy alias: the family mtail's PostgreSQL program counts
from the same log, which rule packs written for postgres_exporter query.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from pydantic import Field

from ._base import CollectContext, CollectorDisabled, CollectorOptions, CollectorResult, CollectorSpec, MetricDef

_V15 = 150000
FILES_SQL = "SELECT pg_current_logfile('csvlog') AS csvlog, {jsonlog} AS jsonlog"
SIZE_SQL = "SELECT size FROM pg_stat_file(%s, true)"
READ_SQL = "SELECT pg_read_binary_file(%s, %s, %s, true)"

# csvlog columns (PostgreSQL documentation, "Using CSV-Format Log Output").
_CSV_SEVERITY, _CSV_STATE, _CSV_MESSAGE = 11, 12, 13
_ERRORS = frozenset({"ERROR", "FATAL", "PANIC"})
#: Kinds served from the start (0 until one happens), so that rate() works at once.
KNOWN = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "deadlock_detected",
         "serialization_failure", "query_canceled")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class LogErrorsOptions(CollectorOptions):
    enabled: bool = False
    #: Bytes of log read per sample at most; the rest waits for the next samples.
    max_bytes: int = Field(4 * 1024 * 1024, ge=4096)


@dataclass
class State:
    """Where reading stopped, and the counts so far (kept between samples)."""

    path: str | None = None
    offset: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KNOWN, 0))


ERRORS = MetricDef("pg_log_errors_total", "counter",
                   "Errors (ERROR, FATAL and PANIC entries) PostgreSQL logged since pgperf started reading its log, "
                   "by kind (the SQLSTATE's condition name; statement_timeout and lock_timeout for those cancels).",
                   ("type",), source="server log")
UNREAD = MetricDef("pg_log_unread_bytes", "gauge",
                   "Bytes of the current log file not read yet (more than max_bytes were written since the last sample).",
                   source="server log")
LEGACY = MetricDef("postgresql_errors_total", "counter", "Errors PostgreSQL logged, by kind (mtail's name).",
                   ("type",), source="server log", alias_of=ERRORS.name)


def kind(sqlstate: str, message: str) -> str:
    """The kind an error is counted under."""
    if sqlstate in ("57014", "55P03"):  # query_canceled, lock_not_available: the message says why
        if message.startswith("canceling statement due to statement timeout"):
            return "statement_timeout"
        if message.startswith("canceling statement due to lock timeout"):
            return "lock_timeout"
    try:
        return _CAMEL.sub("_", pg_errors.lookup(sqlstate).__name__).strip("_").lower()
    except KeyError:
        return f"sqlstate_{sqlstate.lower()}" if re.fullmatch(r"[0-9A-Za-z]{5}", sqlstate) else "unknown"


def count_json(data: bytes, counts: dict[str, int]) -> int:
    """Count the errors of the complete lines of *data* (jsonlog); return the bytes consumed."""
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # not a log entry (a line some other process wrote): skipped
        if isinstance(entry, dict) and entry.get("error_severity") in _ERRORS:
            k = kind(str(entry.get("state_code", "")), str(entry.get("message", "")))
            counts[k] = counts.get(k, 0) + 1
    return end


def count_csv(data: bytes, counts: dict[str, int]) -> int:
    """Count the errors of the complete records of *data* (csvlog, whose messages may span
    lines); return the bytes consumed: up to the end of the last complete record."""
    lines = data[:data.rfind(b"\n") + 1].splitlines(keepends=True)
    text = [line.decode("utf-8", "replace") for line in lines]
    reader = csv.reader(text, strict=True)
    consumed = 0
    records: list[list[str]] = []
    try:
        for record in reader:
            records.append(record)
            consumed = reader.line_num
    except csv.Error:
        pass  # the last record goes on in bytes not written yet: read again next time
    for record in records:
        if len(record) > _CSV_MESSAGE and record[_CSV_SEVERITY] in _ERRORS:
            k = kind(record[_CSV_STATE], record[_CSV_MESSAGE])
            counts[k] = counts.get(k, 0) + 1
    return sum(len(line) for line in lines[:consumed])


def _read(conn: psycopg.Connection[Any], state: State, path: str, fmt: str, budget: int) -> tuple[int, int]:
    """Count from *state*'s offset in *path*; return (bytes read, file size)."""
    row = conn.execute(SIZE_SQL, (path,)).fetchone()
    size = int(row[0]) if row and row[0] is not None else 0
    if state.offset > size:  # truncated or replaced: from the start
        state.offset = 0
    length = min(budget, size - state.offset)
    if length <= 0:
        return 0, size
    chunk = conn.execute(READ_SQL, (path, state.offset, length)).fetchone()
    data = bytes(chunk[0]) if chunk and chunk[0] is not None else b""
    used = (count_json if fmt == "jsonlog" else count_csv)(data, state.counts)
    if used == 0 and len(data) == budget:  # one record longer than the budget: skip it
        used = len(data)
    state.offset += used
    return used, size


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None and ctx.server is not None
    options: LogErrorsOptions = ctx.options
    previous: State | None = ctx.previous
    jsonlog = "pg_current_logfile('jsonlog')" if ctx.server.version_num >= _V15 else "NULL::text"
    try:
        files = ctx.conn.execute(FILES_SQL.format(jsonlog=jsonlog)).fetchone()
        if files is None or not (files[0] or files[1]):
            raise CollectorDisabled("unsupported", "no csvlog or jsonlog log file: logging_collector is off or "
                                                   "log_destination has neither")
        fmt, path = ("jsonlog", files[1]) if files[1] else ("csvlog", files[0])
        if previous is None:  # the first sample: from the end of the file
            row = ctx.conn.execute(SIZE_SQL, (path,)).fetchone()
            state = State(path, int(row[0]) if row and row[0] is not None else 0)
            size = state.offset
        else:
            state = State(previous.path, previous.offset, dict(previous.counts))
            budget = options.max_bytes
            if state.path and state.path != path:  # the server switched files: finish the old one
                used, _ = _read(ctx.conn, state, state.path, fmt, budget)
                budget -= used
                state.path, state.offset = path, 0
            state.path = path
            _, size = _read(ctx.conn, state, path, fmt, budget)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise CollectorDisabled("insufficient_privilege", str(exc).splitlines()[0]) from exc
    families = (
        ERRORS.family(((k,), n) for k, n in sorted(state.counts.items())),
        LEGACY.family(((k,), n) for k, n in sorted(state.counts.items())),
        UNREAD.single(max(0, size - state.offset)),
    )
    return CollectorResult(families, state=state)


SPEC = CollectorSpec(
    name="log_errors",
    description="The server log (csvlog or jsonlog, read through SQL): errors by kind, statement and lock "
    "timeouts included, which no statistics view counts. Off by default: needs logging_collector and a role "
    "that may read server files (superuser or pg_read_server_files).",
    collect=collect,
    metrics=(ERRORS, UNREAD, LEGACY),
    options=LogErrorsOptions,
)
