"""Everything insight knows of one statement, from the store: what
``GET /api/v1/statements/<query_id>`` answers (and what a statement page can show).

* ``statement``: its database, user and — where ``expose_query_text`` allows — its text;
* ``cost``: over the window, its calls, total and mean time, share of the target's database
  time, CPU-seconds per day and how its time splits between CPU and each wait class
  (``costs``);
* ``waits``: its wait samples per source and wait event in the window;
* ``plans``: its stored plans, the newest first, each with ``plan_hash``, ``first_seen``,
  ``last_seen`` and ``plan`` — EXPLAIN's JSON, or without its expressions (conditions and
  outputs are the statement's text) where texts are hidden;
* ``advice``: the index advice that names it (the shape of ``pgperf advise``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import psycopg

from .costs import StatementTotals, statement_cost
from .plans import plan_without_expressions
from .store import read_advice, read_plans, read_waits, statement_window
from .waits import CPU

__all__ = ["QUERY_ID_RANGE", "parse_query_id", "statement_detail"]

#: pg_stat_statements' queryid is a bigint.
QUERY_ID_RANGE = (-(2**63), 2**63 - 1)
_QUERY_ID = re.compile(r"-?[0-9]{1,19}")


def parse_query_id(text: str) -> int:
    """*text* as a query id (a 64-bit signed integer, as pg_stat_statements writes it);
    ValueError saying what is expected otherwise."""
    value = text.strip()
    if not _QUERY_ID.fullmatch(value):
        raise ValueError(f"query id: expected a pg_stat_statements queryid (an integer), got {text[:40]!r}")
    number = int(value)
    if not QUERY_ID_RANGE[0] <= number <= QUERY_ID_RANGE[1]:
        raise ValueError(f"query id: {text[:40]} is out of the range of a queryid (64-bit signed)")
    return number


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def statement_detail(conn: psycopg.Connection[Any], schema: str, target: str, query_id: int, *,
                     since: datetime, until: datetime, expose_text: bool) -> dict[str, Any] | None:
    """The statement's detail (see the module docstring), None when the store knows nothing
    of it for *target*."""
    window = statement_window(conn, schema, target, query_id, since=since, until=until)
    plans = read_plans(conn, schema, target, query_id)
    waits = read_waits(conn, schema, target, query_id, since=since, until=until)
    advice = read_advice(conn, schema, target, query_id=query_id)
    if window is None and not plans and not waits and not advice:
        return None
    by_type: dict[str, float] = defaultdict(float)
    for w in waits:
        by_type[w.wait_event_type] += w.seconds
    cost = None
    if window is not None:
        totals = StatementTotals(query_id, window.calls, window.total_ms, wait_seconds=dict(by_type),
                                 waits_include_cpu=CPU in by_type)
        c = statement_cost(totals, window.db_total_ms, window.sampled_seconds or 1.0)
        cost = {
            "calls": c.calls, "total_time_ms": round(c.total_ms, 3),
            "mean_time_ms": round(c.mean_ms, 3) if c.calls else None,
            "share_of_db_time_percent": round(c.share_of_db_time_percent, 2),
            "cpu_seconds_per_day": round(c.cpu_seconds_per_day, 3) if window.sampled_seconds else None,
            "cpu_basis": c.cpu_basis,
            "time_split_percent": {k: round(v, 2) for k, v in c.time_split.items()},
            "sampled_seconds": round(window.sampled_seconds, 3),
        }
    return {
        "query_id": str(query_id),
        "target": target,
        "window": {"from": _iso(since), "to": _iso(until)},
        "datname": window.datname if window else next((p.datname or None for p in plans), None),
        "username": window.username if window else None,
        "query_text": window.query_text if window is not None and expose_text else None,
        "query_text_hidden": not expose_text,
        "cost": cost,
        "waits": [{"source": w.source, "wait_event_type": w.wait_event_type, "wait_event": w.wait_event,
                   "samples": w.samples, "seconds": round(w.seconds, 3)} for w in waits],
        "plans": [{"plan_hash": p.plan_hash, "first_seen": _iso(p.first_seen), "last_seen": _iso(p.last_seen),
                   "datname": p.datname or None, "total_cost": p.total_cost, "method": p.method,
                   "plan": p.plan if expose_text else plan_without_expressions(p.plan)} for p in plans],
        "advice": [a.to_json() for a in advice],
    }
