"""Building blocks of the configuration schema, shared by the schema and the collectors.

Kept outside the config package and free of pgperf imports, so that collector modules can declare their
own option models without an import cycle.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = ["MAX_YEAR", "MIN_YEAR", "CommaList", "Duration", "Model", "Percent", "PositiveInt", "bounded_time",
           "parse_duration", "split_commas"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: Any) -> Any:
    """Accept seconds as a number, or a duration string such as ``500ms``, ``10s``, ``1m30s``.

    Anything else is returned unchanged, so that the float validator reports it.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10s, 500ms or 1m, not a boolean")
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            return float(text)
        except ValueError:
            pass
        pos, total = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            total += float(match[1]) * _UNITS[match[2]]
            pos = match.end()
        if pos == 0 or pos != len(text):
            raise ValueError(f"expected a duration such as 10s, 500ms or 1m, got {value!r}")
        return total
    return value


def split_commas(value: Any) -> Any:
    """Accept a list as one comma-separated string (``a, b``), the form an environment
    variable gives it; an empty string is the empty list. Anything else is returned unchanged."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",")) if value.strip() else ()
    return value


#: The years a time given to pgperf (an API parameter, a report window, an alert's start)
#: may lie in: samples and alerts lie well inside, and arithmetic on the bounds cannot
#: leave what Python's datetime and PostgreSQL's timestamptz can hold.
MIN_YEAR, MAX_YEAR = 1970, 9000


def bounded_time(value: datetime, name: str) -> datetime:
    """*value* (aware) in UTC; ValueError naming *name* when it lies outside MIN_YEAR to MAX_YEAR."""
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 east of UTC, year 9999 west of it
        utc = None
    if utc is None or not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise ValueError(f"{name}: {value.isoformat()} is out of range; times must lie between the years "
                         f"{MIN_YEAR} and {MAX_YEAR}")
    return utc


class Model(BaseModel):
    """Base of every configuration object: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


#: A duration in seconds; written as a number of seconds or as ``10s``, ``500ms``, ``1m``.
Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
#: A percentage, 0 to 100.
Percent = Annotated[float, Field(ge=0, le=100)]
PositiveInt = Annotated[int, Field(gt=0)]
#: A list of strings, in a file as a YAML list and in an environment variable comma-separated;
#: the configuration loader gives a setting of this type a ``PGPERF_*`` variable.
CommaList = Annotated[tuple[str, ...], BeforeValidator(split_commas)]
