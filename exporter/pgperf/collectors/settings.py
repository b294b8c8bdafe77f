"""pg_settings: every numeric and boolean server setting as ``pg_settings_<name>``.

Names and unit conversion follow postgres_exporter: a setting measured in time gets the
suffix ``_seconds`` and is converted to seconds, one measured in memory gets ``_bytes``
and is converted to bytes (block units such as ``8kB`` included); -1, which PostgreSQL
uses for "disabled", is kept as -1. Booleans are 1 or 0.
"""

from __future__ import annotations

import re

from psycopg.rows import tuple_row

from ._base import CollectContext, CollectorResult, CollectorSpec, Family

SQL = """
SELECT name, setting, COALESCE(unit, ''), short_desc, vartype
FROM pg_settings
WHERE vartype IN ('bool', 'integer', 'real')
"""

_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {"B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
_UNIT = re.compile(r"^(\d*)([a-zA-Z]+)$")


def normalise(setting: str, unit: str) -> tuple[float, str]:
    """Return the value in base units and the metric name suffix for a setting."""
    value = float(setting)
    if not unit:
        return value, ""
    match = _UNIT.match(unit)
    if match is None:
        raise ValueError(f"unknown unit {unit!r}")
    factor, base = int(match[1] or 1), match[2]
    if base in _TIME_UNITS:
        multiplier, suffix = factor * _TIME_UNITS[base], "seconds"
    elif base in _SIZE_UNITS:
        multiplier, suffix = factor * _SIZE_UNITS[base], "bytes"
    else:
        raise ValueError(f"unknown unit {unit!r}")
    if value == -1:
        return value, suffix
    return value * multiplier, suffix


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    with ctx.conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(SQL).fetchall()
    families: list[Family] = []
    for name, setting, unit, short_desc, vartype in rows:
        metric = "pg_settings_" + name.replace(".", "_")
        description = short_desc or f"Server setting {name}."
        if vartype == "bool":
            value = 1.0 if setting == "on" else 0.0
        else:
            try:
                value, suffix = normalise(setting, unit)
            except ValueError:
                continue  # a unit a future release adds: skip that setting, not the rest
            if suffix:
                metric = f"{metric}_{suffix}"
                description = f"{description} [Units converted to {suffix}.]"
        families.append(Family(metric, "gauge", description, (), (((), value),)))
    return CollectorResult(tuple(families))


SPEC = CollectorSpec(
    name="settings",
    description="pg_settings: numeric and boolean server settings, in base units.",
    collect=collect,
    metrics=(),
    dynamic_metrics=(
        "pg_settings_<name>[_seconds|_bytes] (gauge): one family per numeric or boolean "
        "setting of pg_settings, time converted to seconds and memory to bytes.",
    ),
)
