"""The report as a typed model: what the builder makes, the renderers, the recommendation
rules and the routes read, and ``performance_reports.report_data`` stores.

The model is the JSON form documented in docs/report-schema.md and ``report.schema.json``
(a test holds the two to the same fields, types and nullability). Its fields are in the
order of the JSON form, so that ``to_json()`` writes a report exactly as before; times are
aware datetimes, written as UTC ISO 8601 with milliseconds and ``Z``. ``Report.from_json``
validates a stored report (pydantic), so a renderer never meets a missing key.

Numbers keep the type they were made with where the schema says "number" but the value is
configured (``settings.baseline_days``): a configured 7 stays 7.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, ValidationError

from ..config import Config, Forecasts, Thresholds
from ..models import Anomaly, PerformanceReport, Recommendation
from ..redact import redact_statements_in

__all__ = [
    "KINDS", "SCHEMA_VERSION", "AdviceEntry", "AlertsInWindow", "AnomalyEntry", "AppliedSettings", "ForecastBand",
    "ForecastDetail", "ForecastEntry", "ForecastInterval", "ForecastPoint", "InvalidReport", "Queries",
    "RecommendationEntry", "Report", "ReportSettings", "Resources", "Statement", "Summary", "iso",
]

SCHEMA_VERSION = 1
KINDS = ("daily", "weekly", "on_demand", "periodic")

Kind = Literal["daily", "weekly", "on_demand", "periodic"]
StatementType = Literal["SELECT", "INSERT", "UPDATE", "DELETE", "OTHER"]
Severity = Literal["high", "medium", "low"]
CpuBasis = Literal["wait_samples", "execution_less_waits", "execution_less_io"]


def iso(at: datetime | None) -> str | None:
    """UTC ISO 8601 with milliseconds and Z, as in the requirement's sample report."""
    if at is None:
        return None
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: A time of the report: an aware datetime, written ``2024-01-01T00:00:00.000Z``.
Timestamp = Annotated[datetime, PlainSerializer(_iso, return_type=str)]


class InvalidReport(ValueError):
    """A stored report that does not have the report's form (written by something else)."""


class _Part(BaseModel):
    # defer_build: the validators are built with the first report, not when serve starts.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# -- settings: the thresholds a report applies ----------------------------------------------

@dataclass(frozen=True)
class ReportSettings:
    """What a report applies: the profile's thresholds, as configured (one source: they are
    the configuration's own object), and the analysis settings of ``reports.*``."""

    thresholds: Thresholds
    top_n: int = 10
    baseline_days: float = 7.0
    anomaly_z: float = 3.5
    forecast: Forecasts = Forecasts()

    @classmethod
    def from_config(cls, config: Config) -> ReportSettings:
        r = config.reports
        return cls(config.thresholds, top_n=r.top_n, baseline_days=r.baseline_days, anomaly_z=r.anomaly_z,
                   forecast=r.forecast)


class AppliedSettings(_Part):
    """The report's record of the settings it applied (``settings``). Two thresholds carry
    their unit in their name here: ``cache_hit_ratio_min_percent`` is
    ``thresholds.cache_hit_ratio_min``, ``error_rate_max_percent`` ``thresholds.error_rate_max``."""

    slow_query_time_ms: float
    query_spike_factor: float
    cache_hit_ratio_min_percent: float
    cpu_usage_max_percent: float
    memory_usage_max_percent: float
    connection_utilization_warning_percent: float
    error_rate_max_percent: float
    dead_tuple_max_percent: float
    top_n: int
    anomaly_z: float
    baseline_days: float | int

    @classmethod
    def of(cls, settings: ReportSettings) -> AppliedSettings:
        t = settings.thresholds
        return cls(
            slow_query_time_ms=t.slow_query_time_ms, query_spike_factor=t.query_spike_factor,
            cache_hit_ratio_min_percent=t.cache_hit_ratio_min, cpu_usage_max_percent=t.cpu_usage_max_percent,
            memory_usage_max_percent=t.memory_usage_max_percent,
            connection_utilization_warning_percent=t.connection_utilization_warning_percent,
            error_rate_max_percent=t.error_rate_max, dead_tuple_max_percent=t.dead_tuple_max_percent,
            top_n=settings.top_n, anomaly_z=settings.anomaly_z, baseline_days=settings.baseline_days,
        )


# -- the parts -------------------------------------------------------------------------------

class Period(_Part):
    start: Timestamp
    end: Timestamp


class AnomalyBaseline(_Part):
    start: Timestamp
    resolution: Literal["sample", "hour"]


class CatalogState(_Part):
    available: bool
    database: str | None
    read_at: Timestamp | None
    stats_reset: Timestamp | None
    error: str | None


class DataQuality(_Part):
    samples: int
    first_sample: Timestamp | None
    last_sample: Timestamp | None
    sampling_interval_seconds: float | None
    statistics_resets: list[Timestamp]
    server_restarts: list[Timestamp]
    spans_statistics_reset: bool
    spans_server_restart: bool
    rollup_hours: int
    anomaly_baseline: AnomalyBaseline
    catalog: CatalogState
    notes: list[str]


class StatementRef(_Part):
    query_id: str
    query_text: str
    mean_time_ms: float | None
    calls: int
    total_time_ms: float | None


class Errors(_Part):
    rollbacks: int
    deadlocks: int
    commits: int
    error_rate_percent: float | None


class Cache(_Part):
    blocks_hit: int
    blocks_read: int
    statements_hit_ratio_percent: float | None
    statements_blocks: int


class Summary(_Part):
    total_queries: int
    total_time_ms: float
    average_query_time_ms: float | None
    queries_per_second: float | None
    distinct_statements: int
    slowest_query: StatementRef | None
    fastest_query: StatementRef | None
    max_execution_time_ms: float | None
    error_count: int
    errors: Errors
    uptime_percent: float | None
    samples: int
    cache_hit_ratio_percent: float | None
    cache: Cache
    temp_bytes: int


class Statement(_Part):
    query_id: str
    datname: str | None
    username: str | None
    query_text: str
    statement_type: StatementType
    table: str | None
    calls: int
    total_time_ms: float
    mean_time_ms: float | None
    peak_interval_mean_ms: float | None
    max_time_ms: float | None
    rows: int
    cache_hit_ratio_percent: float | None
    temp_blocks_written: int
    share_of_time_percent: float | None
    intervals: int
    spans_reset: bool
    # Query insight's cost analysis (None in reports made before it): the percent of the
    # statement's time per wait event type, CPU included; its CPU-seconds per day; and
    # what the CPU share rests on. Defaults keep older stored reports readable.
    time_split_percent: dict[str, float] | None = None
    cpu_seconds_per_day: float | None = None
    cpu_basis: CpuBasis | None = None

    def ref(self) -> StatementRef:
        return StatementRef(query_id=self.query_id, query_text=self.query_text, mean_time_ms=self.mean_time_ms,
                            calls=self.calls, total_time_ms=self.total_time_ms)


class StatementTypeShare(_Part):
    statement_type: StatementType
    statements: int
    calls: int
    total_time_ms: float | None
    share_of_time_percent: float | None


class TableShare(_Part):
    table: str | None
    statement_types: list[str]
    statements: int
    calls: int
    total_time_ms: float | None
    share_of_time_percent: float | None


class SlowStatement(_Part):
    query_id: str
    mean_time_ms: float | None
    calls: int
    total_time_ms: float | None


class SlowStatements(_Part):
    threshold_ms: float
    count: int
    statements: list[SlowStatement]


class Remainder(_Part):
    calls: int
    total_time_ms: float | None


class AdviceEntry(_Part):
    """An index advice of query insight (``pgperf advise``'s shape, with its database, its
    table's write rate and when it was applied). The weighing of its write cost defaults to
    unknown in reports made before it existed."""

    kind: Literal["index"]
    table: str
    columns: list[str]
    sql: str
    query_ids: list[str]
    cost_before: float
    cost_after: float | None
    verified: Literal["hypopg", "heuristic"]
    status: Literal["open", "applied"]
    observed_mean_ms_before: float | None
    observed_mean_ms_after: float | None
    saving_per_second: float | None = None
    maintenance_per_second: float | None = None
    write_verdict: Literal["pays", "write_heavy", "unknown"] = "unknown"
    datname: str | None
    writes_per_second: float | None
    applied_at: Timestamp | None


class Queries(_Part):
    slowest_by_mean: list[Statement]
    slowest_by_total: list[Statement]
    most_frequent: list[Statement]
    spilling_to_disk: list[Statement]
    by_statement_type: list[StatementTypeShare]
    by_table: list[TableShare]
    slow_statements: SlowStatements
    remainder: Remainder | None
    #: Query insight's index advice for the target when the report was made.
    index_advice: list[AdviceEntry] = Field(default_factory=list)


class Cpu(_Part):
    samples: int
    avg_percent: float | None
    p95_percent: float | None
    max_percent: float | None
    samples_over_threshold: int
    threshold_percent: float
    trend_percent_per_day: float | None


class Memory(_Part):
    samples: int
    avg_percent: float | None
    p95_percent: float | None
    max_percent: float | None
    samples_over_threshold: int
    threshold_percent: float
    trend_percent_per_day: float | None
    avg_bytes: int | None


class Disk(_Part):
    used_bytes: int | None
    total_bytes: int | None
    used_percent: float | None
    database_size_bytes: int | None
    growth_bytes_per_day: int | None
    growth_source: Literal["database_size_bytes", "disk_usage_bytes"] | None
    days_until_full: float | None


class HourOfDay(_Part):
    hour: int
    samples: int
    connections_avg: float | None
    connections_max: int | None
    utilization_avg_percent: float | None
    utilization_max_percent: float | None


class Connections(_Part):
    samples: int
    avg: float | None
    max: int | None
    max_connections: int | None
    utilization_avg_percent: float | None
    utilization_p95_percent: float | None
    utilization_max_percent: float | None
    samples_over_warning: int
    by_hour: list[HourOfDay]


class ChartPoint(_Part):
    t: Timestamp
    cpu_percent: float | None
    memory_percent: float | None
    connections: float | None
    connections_max: int | None
    connection_utilization_percent: float | None
    errors: int | None
    database_size_bytes: int | None
    disk_used_bytes: int | None
    up: bool | None
    queries_per_second: float | None
    mean_time_ms: float | None


class Chart(_Part):
    bucket_seconds: int
    points: list[ChartPoint]


class Resources(_Part):
    cpu: Cpu
    memory: Memory
    disk: Disk
    connections: Connections
    chart: Chart


class AlertCount(_Part):
    metric: str
    alertname: str
    severity: str
    count: int
    threshold: float | None
    current_avg: float | None
    resolved_within_10m: int
    acknowledged: int


class AlertsInWindow(_Part):
    total: int
    by_metric: list[AlertCount]


class RecommendationEntry(_Part):
    rule: Literal["slow_queries", "cache_hit_ratio", "cpu_sustained", "memory_high", "connection_utilization",
                  "index_advice", "seq_scans_large_tables", "unused_indexes", "duplicate_indexes", "dead_tuples", "temp_files",
                  "alert_fatigue", "error_rate", "disk_growth", "time_concentration", "capacity_disk",
                  "capacity_database_size", "capacity_connections", "capacity_wraparound", "capacity_statement_time",
                  "capacity"]
    message: str
    severity: Severity
    evidence: dict[str, Any]

    @classmethod
    def of(cls, rec: Recommendation) -> RecommendationEntry:
        return cls.model_validate({"rule": rec.rule, "message": rec.message, "severity": rec.severity,
                                   "evidence": rec.evidence})

    def recommendation(self) -> Recommendation:
        return Recommendation(self.rule, self.message, self.severity, self.evidence)


class AnomalyEntry(_Part):
    kind: Literal["query_performance", "cpu", "memory", "connections"]
    subject: str
    message: str
    observed: float
    baseline: float
    factor: float | None
    score: float
    impact: Severity
    recommendation: str
    at: Timestamp | None
    query_text: str | None
    evidence: dict[str, Any]
    #: Which baseline flagged it, and in words ("same hour of day over 14 days"); reports
    #: made before the seasonal baselines knew the global one only.
    baseline_kind: Literal["hour_of_week", "hour_of_day", "global"] = "global"
    flagged_by: str | None = None

    @classmethod
    def of(cls, a: Anomaly) -> AnomalyEntry:
        fields = a.to_dict()
        fields.pop("target")
        return cls.model_validate(fields)

    def anomaly(self, target: str | None) -> Anomaly:
        return Anomaly(kind=self.kind, subject=self.subject, message=self.message, observed=self.observed,
                       baseline=self.baseline, factor=self.factor, score=self.score, impact=self.impact,
                       recommendation=self.recommendation, at=self.at, target=target, query_text=self.query_text,
                       evidence=self.evidence, baseline_kind=self.baseline_kind, flagged_by=self.flagged_by)


ForecastMetric = Literal["disk_usage_bytes", "database_size_bytes", "connections", "transaction_id_age",
                         "statement_mean_time_ms"]


class ForecastInterval(_Part):
    low: Timestamp | None
    high: Timestamp | None


class ForecastEntry(_Part):
    """One forecast (``reports/forecast.py``): the growth of a series and when it reaches its
    limit, with the prediction interval of that date; or, with ``reason``, why there is none."""

    metric: ForecastMetric
    target: str | None
    subject: str | None  # the statement's query id (statement_mean_time_ms); null otherwise
    current: float | None
    growth_per_day: float | None
    limit: float | None
    reaches_limit_at: Timestamp | None
    interval: ForecastInterval
    points: int
    method: str | None
    reason: str | None


class ForecastPoint(_Part):
    t: Timestamp
    value: float


class ForecastBand(_Part):
    t: Timestamp
    low: float
    mid: float
    high: float


class ForecastDetail(_Part):
    """What the renderers show of the forecast at the same position of ``forecasts``: its
    sentence, the times it counts from, and its chart (the observed series, thinned; the
    projected band, up to where the chart ends)."""

    metric: ForecastMetric
    subject: str | None
    sentence: str
    unit: Literal["bytes", "connections", "xids", "ms"]
    last_at: Timestamp | None
    since: Timestamp | None
    horizon_end: Timestamp | None
    level: float | None
    observed: list[ForecastPoint]
    projection: list[ForecastBand]


# -- the report ------------------------------------------------------------------------------

class Report(_Part):
    """One report (see the module docstring)."""

    schema_version: Literal[1]
    report_id: str
    kind: Kind
    target: str
    period: Period
    generated_at: Timestamp
    settings: AppliedSettings
    data_quality: DataQuality
    summary: Summary
    queries: Queries
    resources: Resources
    alerts: AlertsInWindow
    recommendations: list[RecommendationEntry]
    anomalies: list[AnomalyEntry]
    #: Capacity forecasts, and what the renderers show of them (empty in reports made before them).
    forecasts: list[ForecastEntry] = Field(default_factory=list)
    forecast_details: list[ForecastDetail] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The JSON form (JSON types only: times as strings)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: Any) -> Report:
        """A report from its JSON form; InvalidReport (with the first problems) when *data*
        does not have it."""
        try:
            # A report stored by an earlier version may hold unredacted statement texts.
            return cls.model_validate(redact_statements_in(data))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'report'}: {e['msg']}"
                                 for e in exc.errors()[:3])
            report_id = data.get("report_id") if isinstance(data, dict) else None
            raise InvalidReport(f"report {report_id!r} does not have the form of a pgperf report (schema version "
                                f"{SCHEMA_VERSION}): {problems}") from None

    def performance_report(self) -> PerformanceReport:
        """The Python API's view of this report (``pgperf.models.PerformanceReport``)."""
        return PerformanceReport(
            report_id=self.report_id, target=self.target, kind=self.kind, period_start=self.period.start,
            period_end=self.period.end, generated_at=self.generated_at, data=self.to_json(),
            recommendations=tuple(r.recommendation() for r in self.recommendations),
            anomalies=tuple(a.anomaly(self.target) for a in self.anomalies),
        )
