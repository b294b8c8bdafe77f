"""Query insight: where each statement's time goes, its plans, and index advice.

* ``waits`` — active session history (pg_stat_activity or pg_wait_sampling), bounded
  Prometheus families and per-statement wait profiles;
* ``plans`` — generic plans of normalized statements (never executed) and their shape hash;
* ``advice`` — index candidates from the plans, verified with HypoPG where installed;
* ``costs`` — each statement's share of database time and CPU-seconds per day;
* ``store`` — their rows in the sample store (migration 004);
* ``refresh`` — one plans refresh of one database, in a session of its own (shared by
  ``pgperf serve`` and ``pgperf advise``);
* ``service`` — insight in ``pgperf serve``: wait sampling between the sampler's samples,
  plans and advice on their schedule, results to the store and ``/metrics``;
* ``detail`` and ``routes`` — one statement's plans, waits, costs and advice from the store,
  and ``GET /api/v1/statements/<query_id>``.

The engine's functions (``waits``, ``plans``, ``advice``, ``costs``, ``store``) take the
connection they work on and typed inputs and keep no global state; ``refresh`` opens the
sessions it plans in, and ``service`` is the only part that schedules.
"""

from __future__ import annotations

from .advice import IndexAdvice, advise, candidates_from_plan, mark_applied
from .costs import StatementCost, StatementTotals, statement_costs, time_split
from .options import InsightOptions
from .plans import Plan, PlanRefresh, PlanSkipped, Statement, choose_statements, explain, plan_hash, refresh_plans
from .server import InsightServer, detect_insight
from .statement import ParsedStatement, StatementRefused, parse_statement
from .waits import WAIT_METRICS, StatementWaitProfile, WaitReading, WaitSampler, WaitSourceUnavailable

__all__ = [
    "WAIT_METRICS",
    "IndexAdvice",
    "InsightOptions",
    "InsightServer",
    "ParsedStatement",
    "Plan",
    "PlanRefresh",
    "PlanSkipped",
    "Statement",
    "StatementCost",
    "StatementRefused",
    "StatementTotals",
    "StatementWaitProfile",
    "WaitReading",
    "WaitSampler",
    "WaitSourceUnavailable",
    "advise",
    "candidates_from_plan",
    "choose_statements",
    "detect_insight",
    "explain",
    "mark_applied",
    "parse_statement",
    "plan_hash",
    "refresh_plans",
    "statement_costs",
    "time_split",
]
