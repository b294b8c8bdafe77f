"""Generating, storing and reading reports: what ``Monitor``, ``pgperf report``, the
scheduler and the HTTP API share.

A report is built on one store connection, its catalog facts read from the monitored
database of its target (when that target is configured and reachable), and stored in
``performance_reports`` with ``report_data`` = its JSON form.

It applies the thresholds its target was sampled with in the window, as ``pgperf serve``
recorded them (``store.target_settings``), not those of the configuration building it:
the command line's default profile is not the target's. A window over a change applies the
latest, and its notes say so; a window before any recorded thresholds applies the
configuration's, and its notes say that too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from .._types import bounded_time
from ..config import Config, Thresholds
from ..models import Anomaly
from ..store.client import StoreClient, where
from ..store.target_settings import in_window
from .model import KINDS, Report, ReportSettings, iso

if TYPE_CHECKING:
    from .builder import CatalogReading
    from .catalog import CatalogFacts
    from .forecasting import Made

# What builds a report (the queries, the builder, the forecasts and anomaly detection; with
# them numpy) is imported when the first report is built, not when ``pgperf serve`` starts:
# an exporter that samples and serves /metrics does not hold it (bench/README.md).

__all__ = [
    "KINDS", "ReportNotFound", "ReportService", "ReportSummary", "UnknownTarget", "check_target", "report_id_for",
]

log = logging.getLogger(__name__)
# Reports sort and group hundreds of thousands of rows (medians per statement): with the
# server's default work_mem (4 MB) those sorts go to disk and take several times longer.
_WORK_MEM = "SET LOCAL work_mem = '128MB'"
#: The longest window a report may cover (retention keeps query samples at most this long anyway).
MAX_WINDOW = timedelta(days=400)


@dataclass(frozen=True)
class ReportSummary:
    """A stored report without its body: what the list of reports shows."""

    report_id: str
    kind: str
    target: str | None
    generated_at: datetime
    period_start: datetime
    period_end: datetime
    recommendations: int
    anomalies: int
    total_queries: int | None

    def to_json(self) -> dict[str, Any]:
        return {"report_id": self.report_id, "kind": self.kind, "target": self.target,
                "generated_at": iso(self.generated_at), "period_start": iso(self.period_start),
                "period_end": iso(self.period_end), "recommendations": self.recommendations,
                "anomalies": self.anomalies, "total_queries": self.total_queries,
                "url": f"/reports/{self.report_id}"}


class ReportNotFound(LookupError):
    def __init__(self, report_id: str) -> None:
        super().__init__(f"no report with id {report_id!r}")
        self.report_id = report_id


class UnknownTarget(ValueError):
    """A report was asked for a target the configuration does not name."""

    def __init__(self, target: str, known: list[str]) -> None:
        super().__init__(f"unknown target {target!r}; configured targets: {', '.join(known) or 'none'}")
        self.target = target
        self.known = known


def check_target(config: Config, target: str | None) -> str | None:
    """*target* when the configuration names it (a target, or ``reports.target``), None for
    the default; raises UnknownTarget otherwise."""
    if target is None:
        return None
    known = [t.name for t in config.resolved_targets()]
    if config.reports.target and config.reports.target not in known:
        known.append(config.reports.target)
    if target not in known:
        raise UnknownTarget(target, known)
    return target


def report_id_for(kind: str, end: datetime, target: str | None = None, *, unique: bool = False) -> str:
    """``perf-report-<period end in ms>`` as in the requirement's sample; scheduled kinds are
    prefixed with the kind so that a daily and a weekly report ending together differ, and
    on-demand ids get a random suffix so that two requests in one millisecond do not clash.
    A target other than the default adds a short hash of its name."""
    ms = int(end.timestamp() * 1000)
    parts = ["perf-report"]
    if kind in ("daily", "weekly"):
        parts.append(kind)
    parts.append(str(ms))
    if target is not None:
        parts.append(hashlib.sha1(target.encode()).hexdigest()[:8])
    if unique:
        parts.append(secrets.token_hex(3))
    return "-".join(parts)


class ReportService:
    """Reports of the targets of one configuration, stored in its store."""

    def __init__(self, config: Config, client: StoreClient) -> None:
        self.config = config
        self.client = client
        self.settings = ReportSettings.from_config(config)
        self.table = sql.SQL("{}.performance_reports").format(sql.Identifier(client.schema))

    def apply_config(self, config: Config) -> None:
        """Use a reloaded configuration's thresholds and report settings from the next report."""
        self.config = config
        self.settings = ReportSettings.from_config(config)

    # -- targets -----------------------------------------------------------------------

    def default_target(self) -> str:
        return self.config.reports.target or self.config.resolved_targets()[0].name

    def _dsn_of(self, target: str) -> str | None:
        for t in self.config.resolved_targets():
            if t.name == target:
                return t.dsn
        return None

    def catalog(self, target: str) -> CatalogReading:
        from .builder import CatalogReading
        from .catalog import try_read_catalog

        if not self.config.reports.catalog:
            return CatalogReading(None, "reading catalog facts is turned off (reports.catalog: false)")
        facts, error = try_read_catalog(self._dsn_of(target), connect_timeout=self.config.connection.connect_timeout,
                                        statement_timeout=max(10.0, self.config.connection.statement_timeout))
        return CatalogReading(facts, error)

    # -- generating ----------------------------------------------------------------------

    @staticmethod
    def check_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
        """Both times aware, within the years pgperf accepts and in order, returned in UTC;
        raises ValueError with the reason otherwise."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end need a time zone (for example 2024-01-01T00:00:00Z)")
        start, end = bounded_time(start, "start"), bounded_time(end, "end")
        if end <= start:
            raise ValueError(f"the end ({end.isoformat()}) must be after the start ({start.isoformat()})")
        if end - start > MAX_WINDOW:
            raise ValueError(f"a report covers at most {MAX_WINDOW.days} days")
        return start, end

    def generate(
        self,
        start: datetime,
        end: datetime,
        target: str | None = None,
        kind: str = "on_demand",
        *,
        report_id: str | None = None,
        now: datetime | None = None,
        catalog: CatalogFacts | None | bool = True,
        store: bool = True,
    ) -> Report:
        """Build the report of *target* over ``[start, end)`` and store it.

        *catalog*: True reads the live facts, False skips them, a CatalogFacts uses those."""
        from .builder import CatalogReading, ReportRequest, build_report
        from .catalog import CatalogFacts
        from .queries import ReportQueries

        if kind not in KINDS:
            raise ValueError(f"unknown report kind {kind!r}; choose one of {', '.join(KINDS)}")
        start, end = self.check_window(start, end)
        target = check_target(self.config, target) or self.default_target()
        now = now or datetime.now(UTC)
        if report_id is None:
            extra = None if target == self.config.resolved_targets()[0].name else target
            report_id = report_id_for(kind, end if kind in ("daily", "weekly") else now, extra,
                                      unique=kind not in ("daily", "weekly"))
        if isinstance(catalog, CatalogFacts):
            reading = CatalogReading(catalog)
        elif catalog:
            reading = self.catalog(target)
        else:
            reading = CatalogReading(None, "not requested")
        request = ReportRequest(target, start, end, kind, report_id, now)
        with self.client.connection() as conn:
            # One snapshot for every part, so that samples written meanwhile cannot make them disagree.
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                conn.execute(_WORK_MEM)
                settings, note = self.settings_for(conn, target, start, end)
                report = build_report(ReportQueries(conn, self.client.schema, settings), request, reading)
            if note:
                quality = report.data_quality
                report = report.model_copy(update={"data_quality": quality.model_copy(
                    update={"notes": [*quality.notes, note]})})
            if store:
                conn.execute(sql.SQL(
                    "INSERT INTO {} (report_id, target, kind, generated_at, period_start, period_end, report_data)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (report_id) DO UPDATE SET generated_at = EXCLUDED.generated_at,"
                    " report_data = EXCLUDED.report_data"
                ).format(self.table), (report.report_id, target, kind, now, start, end, Jsonb(report.to_json())))
        log.info("report %s (%s, %s, %s to %s): %d recommendation(s), %d anomal%s", report.report_id, kind, target,
                 start.isoformat(), end.isoformat(), len(report.recommendations), len(report.anomalies),
                 "y" if len(report.anomalies) == 1 else "ies")
        return report

    def detect_anomalies(self, start: datetime, end: datetime, target: str | None = None) -> list[Anomaly]:
        """Anomalies of ``[start, end)`` against the baseline before it, without building a report."""
        from . import anomalies as anomaly_detection
        from .queries import ReportQueries

        start, end = self.check_window(start, end)
        target = check_target(self.config, target) or self.default_target()
        with self.client.connection() as conn, conn.transaction():
            conn.execute(_WORK_MEM)
            settings, _ = self.settings_for(conn, target, start, end)
            inputs = ReportQueries(conn, self.client.schema, settings).anomaly_inputs(target, start, end)
        return anomaly_detection.detect(inputs, settings, target)

    def forecasts(self, target: str | None = None, *, since: datetime | None = None, until: datetime | None = None,
                  metric: str | None = None) -> tuple[str, datetime, datetime, list[Made]]:
        """The forecasts of *target* from its history ``[since, until)`` (by default the
        ``reports.forecast.history_days`` before now), as a report would make them at *until*:
        the target, the history's bounds and the forecasts (only *metric*'s when given). The
        statements forecast are the top ``reports.forecast.statements`` by total time of the
        history's last day."""
        from .forecasting import make_forecasts
        from .queries import ReportQueries

        target = check_target(self.config, target) or self.default_target()
        until = until or datetime.now(UTC)
        since = since or until - timedelta(days=self.settings.forecast.history_days)
        since, until = self.check_window(since, until)
        with self.client.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute(_WORK_MEM)
            settings, _ = self.settings_for(conn, target, since, until)
            queries = ReportQueries(conn, self.client.schema, settings)
            statements = []
            if metric in (None, "statement_mean_time_ms"):
                statements = queries.top_statements(target, max(since, until - timedelta(days=1)), until,
                                                    settings.forecast.statements)
            made = make_forecasts(queries, target, until, statements, start=since, metric=metric)
        return target, since, until, made

    def settings_for(self, conn: psycopg.Connection[Any], target: str, start: datetime,
                     end: datetime) -> tuple[ReportSettings, str | None]:
        """The settings to apply to *target* over ``[start, end)``: this configuration's
        analysis settings with the thresholds the target was sampled with (the latest in
        force in the window), and the note that says where they come from, or None when
        they are this configuration's own and recorded as such."""
        own = self.settings
        recorded = in_window(conn, self.client.schema, target, start, end)
        if not recorded:
            return own, (f"No thresholds are recorded for target {target} in or before this window (pgperf serve "
                         f"records them when it starts and reloads): this configuration's, profile "
                         f"{self.config.profile}, were applied.")
        latest = recorded[-1]
        known = {k: v for k, v in latest.thresholds.items() if k in Thresholds.model_fields}
        try:
            thresholds = Thresholds.model_validate({**own.thresholds.model_dump(), **known})
        except ValidationError:
            return own, (f"The thresholds recorded for target {target} ({iso(latest.valid_from)}) are not valid "
                         f"for this pgperf: this configuration's, profile {self.config.profile}, were applied.")
        settings = dataclasses.replace(own, thresholds=thresholds)
        if len(recorded) > 1:
            changes = ", ".join(f"profile {r.profile} from {iso(r.valid_from)}" for r in recorded)
            return settings, (f"The thresholds target {target} was sampled with changed in this window ({changes}): "
                              f"the latest, profile {latest.profile}, were applied.")
        if thresholds != own.thresholds or latest.profile != self.config.profile:
            return settings, (f"The thresholds of profile {latest.profile} were applied, with which pgperf serve "
                              f"samples target {target} (recorded {iso(latest.valid_from)}), not this "
                              f"configuration's (profile {self.config.profile}).")
        return settings, None

    # -- reading --------------------------------------------------------------------------

    def exists(self, report_id: str) -> bool:
        with self.client.connection() as conn:
            return conn.execute(sql.SQL("SELECT 1 FROM {} WHERE report_id = %s").format(self.table),
                                (report_id,)).fetchone() is not None

    def get(self, report_id: str) -> Report:
        """The stored report *report_id*; ReportNotFound, or InvalidReport for a stored body
        that is not a report."""
        with self.client.connection() as conn:
            row = conn.execute(sql.SQL("SELECT report_data FROM {} WHERE report_id = %s").format(self.table),
                               (report_id,)).fetchone()
        if row is None:
            raise ReportNotFound(report_id)
        return Report.from_json(row[0])

    def list(self, *, target: str | None = None, kind: str | None = None, limit: int = 100) -> list[ReportSummary]:
        """The newest reports first, without their bodies: id, kind, target, period, counts."""
        filters, params = where(("target = %s", target), ("kind = %s", kind))
        query = sql.SQL(
            "SELECT report_id, kind, target, generated_at, period_start, period_end,"
            " jsonb_array_length(coalesce(report_data->'recommendations', '[]')),"
            " jsonb_array_length(coalesce(report_data->'anomalies', '[]')),"
            " (report_data->'summary'->>'total_queries')::bigint FROM {}{}"
            " ORDER BY generated_at DESC, report_id LIMIT %s").format(self.table, filters)
        params.append(limit)
        with self.client.connection() as conn:
            rows = conn.execute(query, params).fetchall()
        return [ReportSummary(*r) for r in rows]
