"""pgperf: PostgreSQL performance monitoring.

A Prometheus exporter that samples PostgreSQL (pg_stat_statements and the statistics
views) and its host, serves ``/metrics``, stores its samples in PostgreSQL, and comes with
alert rules, Alertmanager routes, Grafana dashboards and performance reports.
"""

from __future__ import annotations

from ._version import __version__

__all__ = ["__version__"]
