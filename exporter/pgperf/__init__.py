"""pgperf: PostgreSQL performance monitoring.

A Prometheus exporter that samples PostgreSQL (pg_stat_statements and the statistics
views) and its host, serves ``/metrics``, stores its samples in PostgreSQL, and comes with
alert rules, Alertmanager routes, Grafana dashboards and performance reports.
``pgperf.Monitor`` is the same engine for Python programs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .monitor import Monitor

__all__ = ["Monitor", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `pgperf --version` and the config tools stay light.
    if name == "Monitor":
        from .monitor import Monitor

        return Monitor
    raise AttributeError(f"module 'pgperf' has no attribute {name!r}")
