"""The values the Python API returns: one dataclass per stored row kind and per report part.

They mirror the monitoring tables (times in milliseconds, as stored) and the report's
JSON form, so what a program receives from ``pgperf.Monitor`` is what the store and the
HTTP API hold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "Anomaly",
    "PerformanceAlert",
    "PerformanceReport",
    "QueryPerformanceMetric",
    "Recommendation",
    "ResourceMetric",
]


@dataclass(frozen=True)
class QueryPerformanceMetric:
    """What one statement did during one sampling interval (a query_performance_metrics row)."""

    target: str
    query_id: str
    query_text: str
    datname: str | None
    username: str | None
    calls: int
    total_time: float  # ms in the interval
    mean_time: float
    min_time: float  # pg_stat_statements' extremes since the entry's min/max were reset
    max_time: float
    stddev_time: float
    rows_affected: int
    cache_hits: int
    cache_misses: int
    recorded_at: datetime
    interval_seconds: float
    spans_reset: bool = False
    is_remainder: bool = False

    @property
    def cache_hit_ratio(self) -> float | None:
        total = self.cache_hits + self.cache_misses
        return self.cache_hits / total if total else None


@dataclass(frozen=True)
class ResourceMetric:
    """The database host and server at one sample (a resource_metrics row)."""

    target: str
    timestamp: datetime
    pg_up: bool
    cpu_usage_percent: float | None
    memory_usage_bytes: int | None
    memory_usage_percent: float | None
    disk_usage_bytes: int | None
    disk_usage_percent: float | None
    network_bytes_sent: int | None
    network_bytes_received: int | None
    connection_count: int | None
    connection_utilization: float | None  # percent of max_connections
    interval_seconds: float | None = None


@dataclass(frozen=True)
class PerformanceAlert:
    """One alert and its lifecycle (a performance_alerts row)."""

    alert_id: str
    severity: str
    metric: str
    message: str
    status: str  # firing, acknowledged, resolved
    timestamp: datetime
    target: str | None = None
    threshold_value: float | None = None
    current_value: float | None = None
    acknowledged: bool = False
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    silence_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Anomaly:
    """A statistical outlier: a statement's mean time or a resource series against its own
    baseline (robust z-score over median/MAD), with the spike factor of the requirement's
    example ("47.5x average")."""

    kind: str  # query_performance, cpu, memory, connections
    subject: str  # query id or resource name
    message: str
    observed: float  # the highest value in the window (ms, percent or connections)
    baseline: float  # the median over the baseline period
    factor: float | None  # observed / baseline (None when the baseline is 0)
    score: float  # robust z-score: (observed - median) / (1.4826 * MAD)
    impact: str  # high, medium, low
    recommendation: str
    at: datetime | None = None
    target: str | None = None
    query_text: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    #: The baseline that flagged it: the same hour of the week or of the day in the other
    #: weeks or days, or the global one (the whole baseline period); and in words.
    baseline_kind: str = "global"
    flagged_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Recommendation:
    """A rule-based suggestion with the numbers that triggered it."""

    rule: str
    message: str
    severity: str  # high, medium, low
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PerformanceReport:
    """A generated report; ``data`` is its JSON form, as stored in performance_reports."""

    report_id: str
    target: str | None
    kind: str  # daily, weekly, on_demand
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    data: dict[str, Any]
    recommendations: tuple[Recommendation, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
