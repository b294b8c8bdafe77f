"""``pgperf advise``: index advice for one target, worked out now.

The target's pg_stat_statements gives the statements (the slow ones and the top ones by
total time, ``insight.plans.max_statements``); each database's are planned and advised on in
a session of pgperf's own (``refresh``), as ``pgperf serve`` does on its schedule. Where the
sample store is configured, the advice kept there joins in: advice applied since (an index
starting with its columns exists) shows as applied, with its statements' observed mean time
before and after from the stored samples. A store that cannot be reached is said, and the
advice of the moment is given without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import psycopg

from ..config import Config, Target
from ..db import ConnectionFailed, SessionSettings, connect, describe_dsn, detect_server
from ..redact import redact
from ..store.client import StoreClient, StoreUnavailable
from . import store as insight_store
from .advice import IndexAdvice, rank
from .refresh import DatabaseRefresh, by_database, insight_settings, refresh_database, top_statements

__all__ = ["ADVISE_KEYS", "AdviseResult", "TargetUnreachable", "UnknownTarget", "advise_target", "render_text"]

#: The keys of each advice in ``pgperf advise --format json``, in order: the issue's, then
#: the weighing of its write cost (``advice``'s module docstring).
ADVISE_KEYS = ("kind", "table", "columns", "sql", "query_ids", "cost_before", "cost_after", "verified", "status",
               "observed_mean_ms_before", "observed_mean_ms_after", "saving_per_second", "maintenance_per_second",
               "write_verdict")


class UnknownTarget(ValueError):
    """The target named is not in the configuration."""


class TargetUnreachable(RuntimeError):
    """The target's database cannot be reached or read; the message says why."""


@dataclass(frozen=True)
class AdviseResult:
    target: str
    advice: tuple[IndexAdvice, ...]
    databases: tuple[DatabaseRefresh, ...]
    statements: int
    #: Why the stored advice is missing (no store configured, unreachable), or None.
    store_problem: str | None

    def to_json(self) -> dict[str, Any]:
        return {"advice": [{k: a.to_json()[k] for k in ADVISE_KEYS} for a in self.advice]}


def _target(config: Config, name: str | None) -> Target:
    targets = config.resolved_targets()
    if name is None:
        return targets[0]
    for t in targets:
        if t.name == name:
            return t
    raise UnknownTarget(f"unknown target {name!r}; configured targets: {', '.join(t.name for t in targets)}")


def _settings(config: Config) -> SessionSettings:
    c = config.connection
    return insight_settings(SessionSettings(
        connect_timeout=c.connect_timeout, statement_timeout=c.statement_timeout, lock_timeout=c.lock_timeout,
        idle_in_transaction_session_timeout=c.idle_in_transaction_session_timeout))


def advise_target(config: Config, name: str | None = None) -> AdviseResult:
    """The advice for target *name* (default: the first). Raises UnknownTarget or
    TargetUnreachable."""
    target = _target(config, name)
    settings = _settings(config)
    where = describe_dsn(target.dsn)
    try:
        with connect(target.dsn, settings) as conn:
            server = detect_server(conn)
            if server.pgss_schema is None:
                raise TargetUnreachable(f"target {target.name} ({where}): pg_stat_statements is not created in "
                                        f"database {server.current_database}: run CREATE EXTENSION "
                                        "pg_stat_statements there (pgperf check says more)")
            statements = top_statements(conn, server.pgss_schema, config.insight.plans.max_statements,
                                        config.thresholds.slow_query_time_ms)
    except ConnectionFailed as exc:
        raise TargetUnreachable(f"cannot reach target {target.name} ({where}): {exc.kind}: {exc}") from None
    except psycopg.Error as exc:
        detail = redact(str(exc)).strip().splitlines()
        raise TargetUnreachable(f"cannot read pg_stat_statements of target {target.name} ({where}): "
                                f"{detail[0] if detail else type(exc).__name__}") from None
    client = StoreClient(config, pool_size=1) if config.store.enabled else None
    try:
        known, problem = _known(client, target.name)
        selection = target.databases or config.databases
        results = tuple(refresh_database(target.dsn, datname, stmts, settings, config.insight,
                                         [a for a in known if (a.datname or "") == datname])
                        for datname, stmts in by_database(statements).items() if selection.matches(datname))
        advice = _merge(results, known)
        if client is not None and problem is None:
            advice, problem = _observed(client, target.name, advice)
    finally:
        if client is not None:
            client.close()
    return AdviseResult(target.name, tuple(advice), results, len(statements), problem)


def _known(client: StoreClient | None, target: str) -> tuple[list[IndexAdvice], str | None]:
    if client is None:
        return [], "no sample store (store.enabled: false): applied advice is not known"
    try:
        with client.connection() as conn:
            return insight_store.read_advice(conn, client.schema, target), None
    except (StoreUnavailable, psycopg.Error) as exc:
        return [], f"the sample store could not be read ({redact(str(exc)).strip().splitlines()[0]}): " \
                   "applied advice and observed mean times are not shown"


def _merge(results: Sequence[DatabaseRefresh], known: Sequence[IndexAdvice]) -> list[IndexAdvice]:
    """Fresh advice, then the known advice as checked now (or as stored, for a database
    not planned this time), each once."""
    out: dict[tuple[str, str, str, tuple[str, ...]], IndexAdvice] = {}
    for r in results:
        for a in r.advice:
            out.setdefault(a.key, a)
        for a in r.checked:
            out.setdefault(a.key, a)
    refreshed = {r.datname for r in results if r.error is None}
    for a in known:
        if (a.datname or "") not in refreshed:
            out.setdefault(a.key, a)
    return sorted(out.values(), key=lambda a: (a.status != "open", rank(a)))


def _observed(client: StoreClient, target: str, advice: list[IndexAdvice]) -> tuple[list[IndexAdvice], str | None]:
    """Applied advice with its statements' mean times before and after, from the store."""
    now = datetime.now(UTC)
    try:
        with client.connection() as conn:
            out = []
            for a in advice:
                if a.status == "applied" and a.applied_at is not None:
                    before, after = insight_store.observed_means(conn, client.schema, target, a.query_ids,
                                                                 a.applied_at, until=now)
                    a = replace(a, observed_mean_ms_before=before, observed_mean_ms_after=after)
                out.append(a)
            return out, None
    except (StoreUnavailable, psycopg.Error) as exc:
        return advice, f"observed mean times not read from the store: {redact(str(exc)).strip().splitlines()[0]}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.3f} ms"


def render_text(result: AdviseResult) -> str:
    """The advice as text for a terminal."""
    planned = sum(len(d.plans) for d in result.databases)
    lines = [f"Index advice for target {result.target}: {planned} of {result.statements} statement(s) planned in "
             f"{len(result.databases)} database(s)."]
    for d in result.databases:
        state = d.error or (f"{len(d.plans)} planned" + (f", skipped: {', '.join(f'{k} {v}' for k, v in sorted(d.skipped.items()))}"
                                                          if d.skipped else "")
                            + ("; HypoPG verifies" if d.hypopg else "; without HypoPG: advice is unverified"))
        lines.append(f"  database {d.datname}: {state}")
    if result.store_problem:
        lines.append(f"  note: {result.store_problem}")
    if not result.advice:
        lines.append("No index advice: no sequential scan or sort of a large table that an index would serve.")
        return "\n".join(lines) + "\n"
    for i, a in enumerate(result.advice, 1):
        after = "n/a" if a.cost_after is None else f"{a.cost_after:,.2f}"
        how = "verified by HypoPG" if a.verified == "hypopg" else "heuristic, not verified"
        heavy = a.status == "open" and a.write_verdict == "write_heavy"
        lines += ["", f"{i}. {a.sql};" + (" -- would cost more to maintain than it saves at the current rates" if heavy else ""),
                  f"   database {a.datname or '-'}, statements {', '.join(str(q) for q in a.query_ids)}",
                  f"   planner cost {a.cost_before:,.2f} -> {after} ({how}); {a.status}"
                  + (f" since {a.applied_at:%Y-%m-%d %H:%M} UTC" if a.applied_at else "")]
        if a.status == "applied":
            lines.append(f"   observed mean time: {_ms(a.observed_mean_ms_before)} before, "
                         f"{_ms(a.observed_mean_ms_after)} after")
        if a.note:
            lines.append(f"   {a.note}")
    return "\n".join(lines) + "\n"
