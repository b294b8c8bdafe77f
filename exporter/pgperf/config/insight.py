"""The ``insight.*`` settings: wait sampling, plan capture and index advice.

Models in the style of the rest of the schema (frozen, unknown keys refused); ``Config``
includes them as ``insight``. They live in the configuration package, which everything may
import, and the insight package (``pgperf.insight.options``) takes them from here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .._types import Duration, Model

__all__ = ["PLANS_EVERY_SAMPLES", "WAITS_PER_SAMPLE", "AdviceOptions", "InsightOptions", "PlansOptions",
           "WaitsOptions"]

#: Without ``insight.waits.interval``: this many looks at pg_stat_activity per sampling
#: interval, at most one a second (15 s sampling: every 3.75 s; 60 s: every 15 s — about
#: pgsentinel's default period of 10 s). A look costs the same whatever the sampling
#: interval, so a fixed period would cost more than the sampling itself at long intervals.
WAITS_PER_SAMPLE = 4
#: Without ``insight.plans.interval``: one plans refresh every this many sampling
#: intervals, at most one every 5 minutes (15 s sampling: every 20 minutes). Both keep
#: insight under a tenth of the sampling cost (bench/README.md, "Query insight").
PLANS_EVERY_SAMPLES = 80


class WaitsOptions(Model):
    """Active session history: one look at the active sessions every ``interval``."""

    enabled: bool = True
    #: Seconds between two looks; none: a quarter of the sampling interval, at least 1 s.
    interval: Duration | None = None
    #: ``auto`` reads pg_wait_sampling's profile where that extension is created and
    #: preloaded, pg_stat_activity elsewhere.
    source: Literal["auto", "pg_stat_activity", "pg_wait_sampling"] = "auto"

    def every(self, sampling_interval: float) -> float:
        """Seconds between two looks with sampling every *sampling_interval* seconds."""
        if self.interval is not None:
            return float(self.interval)
        return max(1.0, sampling_interval / WAITS_PER_SAMPLE)


class PlansOptions(Model):
    """Generic plans of the top statements, refreshed every ``interval``."""

    enabled: bool = True
    #: Seconds between two refreshes; none: 80 sampling intervals, at least 5 minutes.
    interval: Duration | None = None
    #: Statements planned per refresh: the slow ones first, then by total time.
    max_statements: int = Field(50, ge=1, le=2000)

    def every(self, sampling_interval: float) -> float:
        """Seconds between two refreshes with sampling every *sampling_interval* seconds."""
        if self.interval is not None:
            return float(self.interval)
        return max(300.0, sampling_interval * PLANS_EVERY_SAMPLES)


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
