"""The ``insight.*`` settings (defined with the rest of the configuration schema)."""

from __future__ import annotations

from ..config.insight import AdviceOptions, InsightOptions, PlansOptions, WaitsOptions

__all__ = ["AdviceOptions", "InsightOptions", "PlansOptions", "WaitsOptions"]
