"""Capacity advice from forecasts: what to do, and the date to do it by.

Each forecast that reaches its limit within ``within`` (90 days by default) gives one
recommendation: "Grow the disk before 2027-01-15: disk full in 46 days, between 41 and 52".
The date is the interval's low end — the earliest date the limit is plausibly reached —
or the forecast's own date when the interval has no low end. The severity follows the
days left until that date: high within a week, medium within 30 days, low beyond.
Forecasts that are not growing, not dated, or that could not be made give no advice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from ..models import Recommendation
from .forecast import Forecast, NoForecast, describe
from .model import iso

__all__ = ["ACT_WITHIN", "ADVICE", "advise"]

ACT_WITHIN = timedelta(days=90)
HIGH_DAYS = 7.0
MEDIUM_DAYS = 30.0

# metric -> (rule name, what to do; {date} is the date to act by, {subject} the statement or database)
ADVICE: dict[str, tuple[str, str]] = {
    "disk_usage_bytes": ("capacity_disk",
                         "Grow the disk before {date}, or free space on it: archive or drop old data, remove bloat"),
    "database_size_bytes": ("capacity_database_size",
                            "Plan storage for the database before {date}: grow its volume or archive old data"),
    "connections": ("capacity_connections", "Raise max_connections or add a connection pooler (PgBouncer) before {date}"),
    "transaction_id_age": ("capacity_wraparound",
                           "Make sure the oldest tables are frozen before {date}: run VACUUM (FREEZE) on them and "
                           "check that autovacuum keeps up"),
    "statement_mean_time_ms": ("capacity_statement_time",
                               "Optimize statement {subject} before {date}: look at its plan (EXPLAIN (ANALYZE, "
                               "BUFFERS)) and at the growth of the tables it reads"),
}
_DEFAULT = ("capacity", "Plan capacity for {metric} before {date}")


def _act_by(f: Forecast) -> datetime | None:
    return f.interval.low or f.reaches_limit_at


def advise(forecasts: Iterable[Forecast | NoForecast], *, within: timedelta = ACT_WITHIN) -> list[Recommendation]:
    """One recommendation per forecast that reaches its limit within ``within``, soonest first."""
    found: list[tuple[datetime, Recommendation]] = []
    for f in forecasts:
        if not isinstance(f, Forecast) or f.reaches_limit_at is None or f.last_at is None:
            continue
        act_by = _act_by(f)
        if act_by is None:
            continue
        days = (act_by - f.last_at).total_seconds() / 86400
        if days > within.total_seconds() / 86400:
            continue
        rule, advice = ADVICE.get(f.metric, _DEFAULT)
        date = "now" if days <= 0 else act_by.date().isoformat()
        text = advice.format(date=date, subject=f.subject or "", metric=f.metric.replace("_", " "))
        if days <= 0:
            text = text.replace(" before now", " now")
        severity = "high" if days <= HIGH_DAYS else "medium" if days <= MEDIUM_DAYS else "low"
        evidence = {**f.to_dict(), "act_by": iso(act_by), "days_left": round(max(days, 0.0), 1)}
        found.append((act_by, Recommendation(rule, f"{text}. {_capital(describe(f))}", severity, evidence)))
    return [rec for _, rec in sorted(found, key=lambda item: (item[0], item[1].rule))]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
