"""The ``insight.*`` settings: wait sampling, plan capture and index advice.

Models in the style of the rest of the schema (frozen, unknown keys refused); ``Config``
includes them as ``insight``. They live in the configuration package, which everything may
import, and the insight package (``pgperf.insight.options``) takes them from here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .._types import Duration, Model

__all__ = ["AdviceOptions", "InsightOptions", "PlansOptions", "WaitsOptions"]


class WaitsOptions(Model):
    """Active session history: one look at the active sessions every ``interval``."""

    enabled: bool = True
    interval: Duration = 1.0
    #: ``auto`` reads pg_wait_sampling's profile where that extension is created and
    #: preloaded, pg_stat_activity elsewhere.
    source: Literal["auto", "pg_stat_activity", "pg_wait_sampling"] = "auto"


class PlansOptions(Model):
    """Generic plans of the top statements, refreshed every ``interval``."""

    enabled: bool = True
    interval: Duration = 300.0
    #: Statements planned per refresh: the slow ones first, then by total time.
    max_statements: int = Field(50, ge=1, le=2000)


class AdviceOptions(Model):
    """Index candidates taken from the plans, verified with HypoPG where it is installed."""

    enabled: bool = True
    #: A sequential scan or sort is a candidate only on a table of at least this many rows
    #: (pg_class.reltuples).
    min_table_rows: int = Field(10_000, ge=0)
    #: Advice is kept only when the hypothetical index lowers the summed planner cost of
    #: the statements that use it to at most this fraction (0.5: by at least half).
    max_cost_ratio: float = Field(0.5, gt=0, lt=1)
    #: At most this many columns per candidate index.
    max_columns: int = Field(3, ge=1, le=8)


class InsightOptions(Model):
    waits: WaitsOptions = WaitsOptions()
    plans: PlansOptions = PlansOptions()
    advice: AdviceOptions = AdviceOptions()
