"""Configuration: schema, built-in profiles and the layered loader.

>>> from pgperf.config import load_config
>>> config = load_config(flags={"profile": "development"}, env={})
>>> config.thresholds.slow_query_time_ms
500.0
"""

from __future__ import annotations

from ._loader import ConfigError, env_variables, load_config, load_profile
from ._schema import PROFILES, Config, Databases, Forecasts, Target, Thresholds
from ._targets import TargetFiles, TargetsRead, with_file_targets

__all__ = [
    "PROFILES",
    "Config",
    "ConfigError",
    "Databases",
    "Forecasts",
    "Target",
    "TargetFiles",
    "TargetsRead",
    "Thresholds",
    "env_variables",
    "load_config",
    "load_profile",
    "with_file_targets",
]
