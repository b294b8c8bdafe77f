"""pg_stat_statements: per-statement execution statistics and their change per interval.

Each sample reads every entry once (``pg_stat_statements(showtext := false)``, so the query
text file is not read) and compares it with the previous sample's entries to get what
happened in the interval. From that it serves:

* per-``queryid`` counters (postgres_exporter's names and labels) for the top N statements
  by time spent in the interval, with hysteresis so the set is stable between samples;
* totals per database and user over *all* statements, kept by pgperf as monotonic counters
  (a sum of pg_stat_statements' counters would go backwards whenever an entry is evicted);
* the number of statements whose mean time in the interval exceeded the slow-query
  threshold, and the slowest mean;
* for the sample store, one record per statement that ran in the interval.

Texts are read once per statement and kept in the target's cache. pg_stat_statements keeps
utility statements as they were sent (``ALTER ROLE ... PASSWORD '...'``): each text is
passed through :func:`pgperf.redact.redact_statement` as it is read, before the cache, so
that no part of pgperf (metrics, store, reports, API, logs) ever holds such a literal.

Resets (``pg_stat_statements_reset()``, ``pg_stat_statements_info.stats_reset`` on 14+)
and evictions are detected so a change is never negative. pgperf never resets the
statistics itself: other tools depend on them.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from pydantic import Field

from ..redact import redact_statement
from ._base import (
    CollectContext,
    CollectorDisabled,
    CollectorOptions,
    CollectorResult,
    CollectorSpec,
    Family,
    MetricDef,
    Record,
    TextCache,
)


class StatementsOptions(CollectorOptions):
    #: Per-queryid series are served for this many statements (by time in the interval).
    top_n: int = Field(100, ge=0, le=10000)
    #: Also serve pg_stat_statements_query_id{queryid,query} with the (truncated) text.
    include_query: bool = False
    query_length: int = Field(120, ge=16, le=4096)


# Longest query text kept for the store; pg_stat_statements keeps whole texts, which can be
# megabytes for generated IN lists.
MAX_STORED_TEXT = 16384
# An incumbent of the top-N set keeps its place unless a newcomer spends this many times
# more time: avoids series flapping in and out when statements are close.
HYSTERESIS = 2.0


def statements_sql(schema: str, version: tuple[int, ...]) -> sql.Composed:
    """The query for the installed extension version (columns renamed in 1.8 and 1.11)."""
    v18, v19, v111 = version >= (1, 8), version >= (1, 9), version >= (1, 11)
    exec_ = "exec_time" if v18 else "time"
    cols = [
        "s.userid", "s.dbid", "s.queryid",
        "s.toplevel" if v19 else "true",
        # A dropped database or role keeps its entries until they are evicted: named by
        # oid, so two of them never share one label set.
        "coalesce(d.datname, 'oid:' || s.dbid)", "coalesce(r.rolname, 'oid:' || s.userid)",
        "s.calls", f"s.total_{exec_}", f"s.min_{exec_}", f"s.max_{exec_}",
        f"s.stddev_{exec_}", "s.rows", "s.shared_blks_hit", "s.shared_blks_read",
        "s.shared_blk_read_time + s.local_blk_read_time" if v111 else "s.blk_read_time",
        "s.shared_blk_write_time + s.local_blk_write_time" if v111 else "s.blk_write_time",
        "s.temp_blks_written",
        "s.total_plan_time" if v18 else "0::float8",
        "s.wal_bytes" if v18 else "NULL::numeric",
        "s.stats_since" if v111 else "NULL::timestamptz",
    ]
    names = [
        "userid", "dbid", "queryid", "toplevel", "datname", "username", "calls", "total_ms",
        "min_ms", "max_ms", "stddev_ms", "rows", "hit", "read", "read_ms", "write_ms",
        "temp_written", "plan_ms", "wal_bytes", "stats_since",
    ]
    select = ", ".join(f"{c} AS {n}" for c, n in zip(cols, names, strict=True))
    return sql.SQL(
        "SELECT " + select + " FROM {}.pg_stat_statements(false) s"
        " LEFT JOIN pg_database d ON d.oid = s.dbid"
        " LEFT JOIN pg_roles r ON r.oid = s.userid"
        " WHERE s.queryid IS NOT NULL"
    ).format(sql.Identifier(schema))


def info_sql(schema: str) -> sql.Composed:
    return sql.SQL("SELECT dealloc, stats_reset FROM {}.pg_stat_statements_info").format(
        sql.Identifier(schema)
    )


def text_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "SELECT DISTINCT ON (queryid) queryid, query FROM {}.pg_stat_statements(true)"
        " WHERE queryid = ANY(%s)"
    ).format(sql.Identifier(schema))


class Entry(NamedTuple):
    """One pg_stat_statements entry; counters are cumulative since the entry was created."""

    datname: str
    username: str
    calls: int
    total_ms: float
    min_ms: float
    max_ms: float
    stddev_ms: float
    rows: int
    hit: int
    read: int
    read_ms: float
    write_ms: float
    temp_written: int
    plan_ms: float
    wal_bytes: float
    stats_since: float | None

    @property
    def sum_squares(self) -> float:
        """Sum of squared execution times (pg_stat_statements keeps the population variance)."""
        if self.calls <= 0:
            return 0.0
        mean = self.total_ms / self.calls
        return self.calls * (self.stddev_ms**2 + mean**2)


Key = tuple[int, int, int, bool]  # (dbid, userid, queryid, toplevel)
StatementId = tuple[int, int, int]  # (dbid, userid, queryid)


@dataclass(frozen=True)
class StatementDelta:
    """What one statement did during one sampling interval (toplevel and nested summed)."""

    dbid: int
    userid: int
    queryid: int
    datname: str
    username: str
    calls: int
    total_ms: float
    rows: int
    hit: int
    read: int
    temp_written: int
    plan_ms: float
    sum_squares: float
    min_ms: float  # extremes since the entry's min/max were last reset (not per interval)
    max_ms: float
    restarted: bool  # the entry was reset or evicted and re-created during the interval

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.calls if self.calls else 0.0

    @property
    def stddev_ms(self) -> float:
        if self.calls <= 0:
            return 0.0
        mean = self.mean_ms
        return math.sqrt(max(0.0, self.sum_squares / self.calls - mean * mean))


@dataclass(frozen=True)
class StatementRecords(Record):
    """The statements part of a sample, for the store."""

    interval_seconds: float
    deltas: tuple[StatementDelta, ...]
    texts: Mapping[int, str]  # queryid -> text, of the statements in deltas (and those served)
    stats_reset: bool  # pg_stat_statements was reset (all entries) during the interval
    deallocations: int  # entries evicted during the interval (14+), None-safe 0


@dataclass(frozen=True)
class _State:
    entries: dict[Key, Entry]
    totals: dict[tuple[str, str], tuple[float, ...]]
    selected: frozenset[StatementId]
    stats_reset: float | None
    dealloc: int | None


_L = ("user", "datname", "queryid")
_S = "pg_stat_statements"
CALLS = MetricDef(f"{_S}_calls_total", "counter", "Number of times the statement was executed.", _L, _S, compat=True)
SECONDS = MetricDef(f"{_S}_seconds_total", "counter", "Total time spent executing the statement, in seconds.", _L, _S, compat=True)
ROWS = MetricDef(f"{_S}_rows_total", "counter", "Total number of rows retrieved or affected by the statement.", _L, _S, compat=True)
READ_SECONDS = MetricDef(
    f"{_S}_block_read_seconds_total", "counter",
    "Total time the statement spent reading blocks, in seconds (needs track_io_timing).", _L, _S, compat=True,
)
WRITE_SECONDS = MetricDef(
    f"{_S}_block_write_seconds_total", "counter",
    "Total time the statement spent writing blocks, in seconds (needs track_io_timing).", _L, _S, compat=True,
)
HITS = MetricDef(f"{_S}_shared_blocks_hit_total", "counter", "Shared buffer hits of the statement.", _L, _S)
READS = MetricDef(f"{_S}_shared_blocks_read_total", "counter", "Shared blocks the statement read from disk or the OS cache.", _L, _S)
TEMP = MetricDef(f"{_S}_temp_blocks_written_total", "counter", "Temporary blocks written by the statement.", _L, _S)
MAX_SECONDS = MetricDef(
    f"{_S}_max_seconds", "gauge",
    "Longest execution of the statement since its statistics were last reset, in seconds.", _L, _S,
)
QUERY_ID = MetricDef(f"{_S}_query_id", "gauge", "Query text of a queryid (only with include_query).", ("queryid", "query"), _S)

_T = ("datname", "user")
ALL_CALLS = MetricDef(f"{_S}_all_calls_total", "counter", "Executions of all statements of this database and user.", _T, _S)
ALL_SECONDS = MetricDef(f"{_S}_all_seconds_total", "counter", "Execution time of all statements of this database and user, in seconds.", _T, _S)
ALL_ROWS = MetricDef(f"{_S}_all_rows_total", "counter", "Rows retrieved or affected by all statements of this database and user.", _T, _S)
ALL_HITS = MetricDef(f"{_S}_all_shared_blocks_hit_total", "counter", "Shared buffer hits of all statements of this database and user.", _T, _S)
ALL_READS = MetricDef(f"{_S}_all_shared_blocks_read_total", "counter", "Shared blocks read by all statements of this database and user.", _T, _S)
SLOW = MetricDef(
    f"{_S}_slow_statements", "gauge",
    "Statements whose mean execution time during the last sampling interval exceeded the "
    "slow-query threshold (slow_query_time_ms).", _T, _S,
)
SLOWEST = MetricDef(
    f"{_S}_slowest_mean_seconds", "gauge",
    "Highest mean execution time of a statement during the last sampling interval, in seconds.", _T, _S,
)
ENTRIES = MetricDef(f"{_S}_entries", "gauge", "Entries currently held by pg_stat_statements.", (), _S)
SELECTED = MetricDef(f"{_S}_selected_statements", "gauge", "Statements currently served with per-queryid series (top N).", (), _S)
DEALLOC = MetricDef(
    f"{_S}_deallocations_total", "counter",
    "Entries evicted because pg_stat_statements.max was reached (PostgreSQL 14+).", (), _S, min_version=140000,
)
RESET = MetricDef(
    f"{_S}_stats_reset_timestamp_seconds", "gauge",
    "Time pg_stat_statements was last reset, in seconds since the epoch (PostgreSQL 14+).", (), _S, min_version=140000,
)
_TOTAL_FIELDS = ("calls", "total_ms", "rows", "hit", "read")


def _read_entries(ctx: CollectContext, schema: str, version: tuple[int, ...]) -> dict[Key, Entry]:
    assert ctx.conn is not None
    entries: dict[Key, Entry] = {}
    with ctx.conn.cursor(row_factory=tuple_row) as cur:
        # fetchall() converts the rows in one call; iterating the cursor costs a Python
        # call per row, and there can be thousands (pg_stat_statements.max).
        for r in cur.execute(statements_sql(schema, version)).fetchall():
            since = r[19].timestamp() if r[19] is not None else None
            entries[(r[1], r[0], r[2], r[3])] = Entry(
                r[4] or "", r[5] or "", r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
                r[14] or 0.0, r[15] or 0.0, r[16], r[17] or 0.0, float(r[18] or 0), since,
            )
    return entries


def _restarted(prev: Entry | None, cur: Entry) -> bool:
    """True when *cur* cannot be a continuation of *prev* (reset, evicted and re-created)."""
    if prev is None:
        return True
    if cur.stats_since is not None and cur.stats_since != prev.stats_since:
        return True
    return cur.calls < prev.calls or cur.total_ms + 1e-6 < prev.total_ms or cur.rows < prev.rows


def compute_deltas(
    previous: dict[Key, Entry], current: dict[Key, Entry], all_reset: bool
) -> list[StatementDelta]:
    """Per-statement change between two readings, never negative, nested+toplevel summed."""
    acc: dict[StatementId, StatementDelta] = {}
    for key, cur in current.items():
        prev = previous.get(key)
        restarted = all_reset or _restarted(prev, cur)
        base = None if restarted else prev
        calls = cur.calls - (base.calls if base else 0)
        if calls <= 0:
            continue
        d = StatementDelta(
            dbid=key[0], userid=key[1], queryid=key[2], datname=cur.datname,
            username=cur.username, calls=calls,
            total_ms=max(0.0, cur.total_ms - (base.total_ms if base else 0.0)),
            rows=max(0, cur.rows - (base.rows if base else 0)),
            hit=max(0, cur.hit - (base.hit if base else 0)),
            read=max(0, cur.read - (base.read if base else 0)),
            temp_written=max(0, cur.temp_written - (base.temp_written if base else 0)),
            plan_ms=max(0.0, cur.plan_ms - (base.plan_ms if base else 0.0)),
            sum_squares=max(0.0, cur.sum_squares - (base.sum_squares if base else 0.0)),
            min_ms=cur.min_ms, max_ms=cur.max_ms, restarted=restarted and prev is not None,
        )
        sid = key[:3]
        other = acc.get(sid)
        acc[sid] = d if other is None else _merge(other, d)
    return list(acc.values())


def _merge(a: StatementDelta, b: StatementDelta) -> StatementDelta:
    return StatementDelta(
        dbid=a.dbid, userid=a.userid, queryid=a.queryid, datname=a.datname,
        username=a.username, calls=a.calls + b.calls, total_ms=a.total_ms + b.total_ms,
        rows=a.rows + b.rows, hit=a.hit + b.hit, read=a.read + b.read,
        temp_written=a.temp_written + b.temp_written, plan_ms=a.plan_ms + b.plan_ms,
        sum_squares=a.sum_squares + b.sum_squares, min_ms=min(a.min_ms, b.min_ms),
        max_ms=max(a.max_ms, b.max_ms), restarted=a.restarted or b.restarted,
    )


def select_top(
    scores: dict[StatementId, float],
    slow: set[StatementId],
    incumbents: frozenset[StatementId],
    n: int,
) -> frozenset[StatementId]:
    """The statements to serve per-queryid series for.

    Slow statements come first (an alert on one needs its series), then by time spent in
    the interval, incumbents weighted by HYSTERESIS so that near ties do not flap.
    """
    if n <= 0:
        return frozenset()

    def rank(sid: StatementId) -> tuple[bool, float, StatementId]:
        score = scores.get(sid, 0.0) * (HYSTERESIS if sid in incumbents else 1.0)
        return (sid in slow, score, sid)

    # The keys are distinct (the id is part of them): the n largest are the first n of
    # the whole ranking, found without sorting every statement.
    return frozenset(heapq.nlargest(n, scores, key=rank))


def _per_statement(entries: dict[Key, Entry]) -> dict[StatementId, Entry]:
    """Sum toplevel and nested entries of the same statement (for per-queryid series)."""
    out: dict[StatementId, Entry] = {}
    for key, e in entries.items():
        sid: StatementId = key[:3]
        if (o := out.get(sid)) is None:
            out[sid] = e
        else:
            out[sid] = o._replace(
                calls=o.calls + e.calls, total_ms=o.total_ms + e.total_ms, rows=o.rows + e.rows,
                hit=o.hit + e.hit, read=o.read + e.read, read_ms=o.read_ms + e.read_ms,
                write_ms=o.write_ms + e.write_ms, temp_written=o.temp_written + e.temp_written,
                max_ms=max(o.max_ms, e.max_ms),
            )
    return out


def _fetch_texts(ctx: CollectContext, schema: str, wanted: Iterable[int], cache: TextCache) -> dict[int, str]:
    texts: dict[int, str] = {}
    missing = []
    for qid in wanted:
        if (t := cache.get(qid)) is not None:
            texts[qid] = t
        else:
            missing.append(qid)
    if missing and ctx.conn is not None:
        with ctx.conn.cursor(row_factory=tuple_row) as cur:
            for qid, query in cur.execute(text_sql(schema), (missing,)):
                # Cut, redacted, cut again (a mask can be longer than what it hides). Cutting
                # first is safe: the redaction reads left to right, so a secret before the cut
                # is found the same way, and a literal the cut leaves open is masked to the
                # end; it bounds the cost of a megabyte-long text to that of 16 KiB.
                text = redact_statement((query or "")[:MAX_STORED_TEXT])[:MAX_STORED_TEXT]
                cache.put(qid, text)
                texts[qid] = text
    return texts


def collect(ctx: CollectContext) -> CollectorResult:
    server = ctx.server
    assert ctx.conn is not None and server is not None
    options: StatementsOptions = ctx.options
    if not server.pgss_schema:
        if server.pgss_preloaded or server.pgss_preloaded is None:
            unknown = " (this role cannot read shared_preload_libraries: check it lists pg_stat_statements)"
            raise CollectorDisabled(
                "extension_missing",
                "pg_stat_statements is preloaded but not created in this database: "
                "run CREATE EXTENSION IF NOT EXISTS pg_stat_statements;"
                + (unknown if server.pgss_preloaded is None else ""),
            )
        raise CollectorDisabled(
            "not_preloaded",
            "pg_stat_statements is not loaded: add shared_preload_libraries = "
            "'pg_stat_statements' to postgresql.conf, restart, then run "
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;",
        )
    not_loaded = CollectorDisabled(
        "not_preloaded",
        f"pg_stat_statements is created (schema {server.pgss_schema}) but not loaded: add "
        "shared_preload_libraries = 'pg_stat_statements' to postgresql.conf and restart PostgreSQL",
    )
    if server.pgss_preloaded is False:
        raise not_loaded
    schema, version = server.pgss_schema, server.pgss_version_tuple
    previous: _State | None = ctx.previous
    try:
        entries = _read_entries(ctx, schema, version)
    except psycopg.errors.ObjectNotInPrerequisiteState:
        raise not_loaded from None  # the role could not read shared_preload_libraries

    stats_reset: float | None = None
    dealloc: int | None = None
    if version >= (1, 9):
        with ctx.conn.cursor(row_factory=tuple_row) as cur:
            row = cur.execute(info_sql(schema)).fetchone()
        if row is not None:
            dealloc, stats_reset = row[0], row[1].timestamp() if row[1] else None

    slow_ms = ctx.thresholds.slow_query_time_ms
    per_statement = _per_statement(entries)
    deltas: list[StatementDelta] = []
    all_reset = False
    if previous is not None:
        all_reset = (
            stats_reset is not None
            and previous.stats_reset is not None
            and stats_reset != previous.stats_reset
        )
        deltas = compute_deltas(previous.entries, entries, all_reset)

    # Totals per (datname, user): start from the cumulative sums, then grow by the deltas.
    totals: dict[tuple[str, str], tuple[float, ...]] = {}
    present = {(e.datname, e.username) for e in entries.values()}
    if previous is None:
        acc: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * len(_TOTAL_FIELDS))
        for e in entries.values():
            row_acc = acc[(e.datname, e.username)]
            for i, f in enumerate(_TOTAL_FIELDS):
                row_acc[i] += getattr(e, f)
        totals = {k: tuple(v) for k, v in acc.items()}
    else:
        grown: dict[tuple[str, str], list[float]] = {
            k: list(v) for k, v in previous.totals.items() if k in present
        }
        for d in deltas:
            row_acc = grown.setdefault((d.datname, d.username), [0.0] * len(_TOTAL_FIELDS))
            for i, f in enumerate(_TOTAL_FIELDS):
                row_acc[i] += getattr(d, f)
        totals = {k: tuple(v) for k, v in grown.items()}

    slow_count: dict[tuple[str, str], int] = defaultdict(int)
    slowest: dict[tuple[str, str], float] = defaultdict(float)
    slow_ids: set[StatementId] = set()
    for d in deltas:
        key = (d.datname, d.username)
        slowest[key] = max(slowest[key], d.mean_ms / 1000.0)
        if d.mean_ms > slow_ms:
            slow_count[key] += 1
            slow_ids.add((d.dbid, d.userid, d.queryid))
    for key in present:
        slow_count.setdefault(key, 0)

    if previous is None:
        scores = {sid: e.total_ms for sid, e in per_statement.items()}
        incumbents: frozenset[StatementId] = frozenset()
    else:
        scores = {sid: 0.0 for sid in per_statement}
        for d in deltas:
            scores[(d.dbid, d.userid, d.queryid)] = d.total_ms
        incumbents = previous.selected
    selected = select_top(scores, slow_ids, incumbents, options.top_n)

    chosen = [(sid, per_statement[sid]) for sid in sorted(selected)]

    def per_query(metric: MetricDef, value: Any) -> Family:
        return metric.family(((e.username, e.datname, sid[2]), value(e)) for sid, e in chosen)

    families = [
        per_query(CALLS, lambda e: e.calls),
        per_query(SECONDS, lambda e: e.total_ms / 1000.0),
        per_query(ROWS, lambda e: e.rows),
        per_query(READ_SECONDS, lambda e: e.read_ms / 1000.0),
        per_query(WRITE_SECONDS, lambda e: e.write_ms / 1000.0),
        per_query(HITS, lambda e: e.hit),
        per_query(READS, lambda e: e.read),
        per_query(TEMP, lambda e: e.temp_written),
        per_query(MAX_SECONDS, lambda e: e.max_ms / 1000.0),
    ]
    for i, metric in enumerate((ALL_CALLS, ALL_SECONDS, ALL_ROWS, ALL_HITS, ALL_READS)):
        scale = 1000.0 if metric is ALL_SECONDS else 1.0
        families.append(metric.family((k, v[i] / scale) for k, v in sorted(totals.items())))
    families += [
        SLOW.family(sorted(slow_count.items())),
        SLOWEST.family((k, slowest.get(k, 0.0)) for k in sorted(present)),
        ENTRIES.single(len(entries)),
        SELECTED.single(len(selected)),
    ]
    if version >= (1, 9):
        families += [DEALLOC.single(dealloc), RESET.single(stats_reset)]

    # The texts of the statements that ran (for the store and the Python API) and of those
    # served, through the target's cache: only texts never seen are read from the file.
    texts: dict[int, str] = {}
    if deltas or (options.include_query and chosen):
        wanted = {d.queryid for d in deltas}
        if options.include_query:
            wanted |= {sid[2] for sid, _ in chosen}
        texts = _fetch_texts(ctx, schema, wanted, ctx.text_cache)
    if options.include_query:
        families.append(QUERY_ID.family(
            ((sid[2], texts.get(sid[2], "")[: options.query_length]), 1) for sid, _ in chosen
        ))

    record = None
    if previous is not None and ctx.interval is not None:
        record = StatementRecords(
            interval_seconds=ctx.interval,
            deltas=tuple(deltas),
            texts=texts,
            stats_reset=all_reset,
            deallocations=max(0, (dealloc or 0) - (previous.dealloc or 0))
            if dealloc is not None and not all_reset else (dealloc or 0),
        )
    state = _State(entries, totals, selected, stats_reset, dealloc)
    return CollectorResult(tuple(families), state=state, record=record)


SPEC = CollectorSpec(
    name="statements",
    description="pg_stat_statements: per-statement calls, time, rows and I/O for the top N "
    "statements, totals per database and user, slow statements.",
    collect=collect,
    metrics=(CALLS, SECONDS, ROWS, READ_SECONDS, WRITE_SECONDS, HITS, READS, TEMP, MAX_SECONDS,
             QUERY_ID, ALL_CALLS, ALL_SECONDS, ALL_ROWS, ALL_HITS, ALL_READS, SLOW, SLOWEST,
             ENTRIES, SELECTED, DEALLOC, RESET),
    options=StatementsOptions,
)
