"""The configuration schema: frozen, typed, unknown keys refused.

Every value has one home here; the three profiles in ``profiles/*.yaml`` give the
environment-specific ones (sampling interval, thresholds, retention, notifications) and
the same thresholds drive the exporter, the Prometheus rules and the dashboards.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, SecretStr, create_model, field_validator, model_validator

from .._types import CommaList, Duration, Model, Percent, PositiveInt, parse_duration
from ..collectors import REGISTRY
from ..db import describe_dsn
from ..redact import redact
from .insight import InsightOptions

PROFILES = ("development", "production", "analytics")
ProfileName = Literal["development", "production", "analytics"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$")
_NAME_RULE = "up to 128 letters, digits and _ . : / @ - (starting with a letter or digit)"


@cache
def _profile_text(name: str) -> str:
    return resources.files("pgperf.config").joinpath("profiles", f"{name}.yaml").read_text("utf-8")


def load_profile(name: str) -> dict[str, Any]:
    """The built-in values of a profile (development, production, analytics)."""
    data = yaml.safe_load(_profile_text(name))
    assert isinstance(data, dict)
    return data


def fill_target_thresholds(targets: Any, base: Any) -> Any:
    """Targets as written (a list of mappings) with complete ``thresholds`` where a target
    sets some: those it sets over *base* (the process's thresholds, as written). A target
    with a ``profile`` starts from that profile's instead (``Target``)."""
    if not isinstance(targets, list | tuple) or not isinstance(base, Mapping):
        return targets
    out = []
    for target in targets:
        if (isinstance(target, Mapping) and target.get("profile") is None
                and isinstance(target.get("thresholds"), Mapping)):
            target = {**target, "thresholds": {**base, **target["thresholds"]}}
        out.append(target)
    return out


class Thresholds(Model):
    """Alert thresholds. Percentages are 0-100 as in the seed configuration."""

    slow_query_time_ms: float = Field(gt=0)
    slow_queries_error_count: PositiveInt
    query_spike_factor: float = Field(gt=1)
    cache_hit_ratio_min: Percent
    cpu_usage_max_percent: Percent
    memory_usage_max_percent: Percent
    disk_usage_max_percent: Percent
    disk_full_within_hours: float = Field(gt=0)
    connection_utilization_warning_percent: Percent
    connection_utilization_critical_percent: Percent
    error_rate_max: Percent
    replication_lag_max_seconds: float = Field(gt=0)
    long_running_query_seconds: float = Field(gt=0)
    idle_in_transaction_seconds: float = Field(gt=0)
    xid_age_max_percent: Percent
    dead_tuple_max_percent: Percent
    checkpoints_requested_max_percent: Percent
    #: Estimated bloat (collectors.bloat) above which a table, or a b-tree index, is reported,
    #: for tables and indexes with at least bloat_min_size_mb of bloat.
    table_bloat_max_percent: Percent
    index_bloat_max_percent: Percent
    bloat_min_size_mb: float = Field(gt=0)
    #: An index never scanned is reported from this size, once scans have been counted this long.
    unused_index_min_size_mb: float = Field(gt=0)
    unused_index_min_days: float = Field(gt=0)
    #: A root blocker's transaction older than this, with sessions waiting behind it.
    blocking_max_seconds: float = Field(gt=0)
    #: Alert when, at the last hour's rate of transaction ID consumption, a database's
    #: transaction ID age reaches xid_age_max_percent within this many hours.
    xid_exhaustion_within_hours: float = Field(gt=0)
    #: A VACUUM of one table running longer than this.
    vacuum_max_hours: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.connection_utilization_warning_percent >= self.connection_utilization_critical_percent:
            raise ValueError(
                f"connection_utilization_warning_percent ({self.connection_utilization_warning_percent:g}) must be "
                f"below connection_utilization_critical_percent ({self.connection_utilization_critical_percent:g})"
            )
        return self


class Retention(Model):
    """Days each kind of stored data is kept; whole expired partitions are dropped."""

    query_metrics_days: PositiveInt
    resource_metrics_days: PositiveInt
    alerts_days: PositiveInt
    reports_days: PositiveInt


class Notifications(Model):
    """Which notification channels the profile turns on: the Alertmanager receivers of the
    same names (``python -m tools.bundle alertmanager --profile NAME`` renders the
    routes; alertmanager/README.md)."""

    email: bool = False
    slack: bool = False
    pagerduty: bool = False
    webhook: bool = False


class Connection(Model):
    pool_size: int = Field(2, ge=1, le=20)
    connect_timeout: Duration = 5.0
    statement_timeout: Duration = 5.0
    lock_timeout: Duration = 1.0
    idle_in_transaction_session_timeout: Duration = 30.0
    #: Connections the samplers of all targets may hold at once while database-scoped
    #: collectors (tables) visit databases; the target's own connection counts against it.
    max_database_connections: int = Field(3, ge=2, le=100)


class Databases(Model):
    """Which databases database-scoped collectors (tables) visit, and database_size measures.

    Patterns are shell-style globs (``app_*``), or regular expressions written between
    slashes (``/^shard_[0-9]+$/``, matched with ``re.search``). A database is visited when
    it matches an ``include`` pattern and no ``exclude`` pattern; templates and databases
    that refuse connections (``datallowconn = false``) are never visited.
    """

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
                try:
                    re.compile(pattern[1:-1])
                except re.error as exc:
                    raise ValueError(f"invalid regular expression {pattern}: {exc}") from None
        return value

    def matches(self, datname: str) -> bool:
        """True when *datname* is selected by these patterns."""
        return any(_match(p, datname) for p in self.include) and not any(
            _match(p, datname) for p in self.exclude
        )


def _match(pattern: str, name: str) -> bool:
    if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
        return re.search(pattern[1:-1], name) is not None
    return fnmatch.fnmatchcase(name, pattern)


class Store(Model):
    enabled: bool = True
    #: Where samples are stored; default: the (first) monitored database.
    dsn: str | None = None
    schema_name: str = Field("pgperf", alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$")

    _check_dsn = field_validator("dsn")(classmethod(lambda cls, v: _dsn(v)))
    #: Directory of the on-disk spool used while the store is unreachable.
    spool_dir: str | None = None
    spool_max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    #: Bound of <spool_dir>/rejected (samples the store refused, unreadable spool files);
    #: beyond it the oldest are removed and counted as dropped.
    rejected_max_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    #: Statement rows per sample; the rest is summed into one remainder row.
    max_query_rows: int = Field(500, ge=1)
    partitions_ahead: int = Field(3, ge=1, le=60)


class Compat(Model):
    """Compatibility with dashboards and rules written for postgres_exporter."""

    #: Also serve the family names older postgres_exporter releases and their example query
    #: files made common (``pg_replication_lag``, ``pg_replication_slot_*`` ...), listed as
    #: aliases in docs/metrics.md. Off: fewer series, only pgperf's and postgres_exporter
    #: 0.20's names.
    legacy_aliases: bool = True


class Web(Model):
    listen_address: str = ":9187"
    config_file: str | None = None
    max_request_bytes: int = Field(1024 * 1024, ge=1024)
    threads: int = Field(16, ge=2, le=256)

    @field_validator("listen_address")
    @classmethod
    def _address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("expected HOST:PORT or :PORT, for example :9187 or 127.0.0.1:9187")
        return value


class ApiToken(Model):
    """A named API token with its role (viewer: read; operator: also acknowledge, resolve,
    receive Alertmanager's webhook, generate reports, reload the configuration)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    role: Literal["viewer", "operator"]
    token: SecretStr = Field(min_length=16)


class Api(Model):
    #: Operator token (PGPERF_API_TOKEN, at least 16 characters); recorded in the audit log as "operator".
    token: SecretStr | None = Field(default=None, min_length=16)
    #: Read-only token (PGPERF_API_VIEWER_TOKEN, at least 16 characters); recorded as "viewer".
    viewer_token: SecretStr | None = Field(default=None, min_length=16)
    tokens: tuple[ApiToken, ...] = ()


_AT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class Forecasts(Model):
    """Capacity forecasts of every report and of ``GET /api/v1/forecasts`` (``reports/forecast.py``)."""

    #: Days of history before a report's end that its forecasts read (as far as the store
    #: keeps it: retention.resource_metrics_days, and retention.query_metrics_days for statements).
    history_days: float = Field(30, gt=0, le=400)
    #: The shortest history a forecast is made from, a duration (two daily cycles by default;
    #: shorter ones give a growth from minutes of samples, and dates only hours ahead).
    min_history: Duration = 172800.0
    #: How far ahead a forecast looks at most (and at most ten times the history it rests on).
    horizon_days: float = Field(365, gt=0, le=3650)
    #: Statements (the top ones by total time in the window) whose mean time is forecast.
    statements: int = Field(5, ge=0, le=50)
    #: Forecast disk usage against this many bytes instead of the filesystem's size: a quota,
    #: the size of a volume to move to, or the filesystem less the blocks reserved for root.
    disk_limit_bytes: int | None = Field(None, gt=0)
    #: Recommend acting on a limit plausibly reached within this many days.
    advise_within_days: float = Field(90, gt=0, le=3650)


class Reports(Model):
    """Scheduled performance reports (``pgperf serve``) and the analysis settings of every report."""

    #: A report of the previous UTC day, generated every day at ``at``.
    daily: bool = True
    #: A report of the previous seven UTC days, generated on Mondays at ``at``.
    weekly: bool = True
    #: Time of day (UTC, HH:MM) at which daily and weekly reports are generated.
    at: str = "00:15"
    #: When set, also a report of the last ``every`` period, each ``every`` (a duration such as 1h).
    every: float | None = Field(None, gt=0)
    #: Target the scheduled reports describe (default: every configured target).
    target: str | None = None
    #: POST each scheduled report's JSON to this URL.
    webhook_url: str | None = None
    #: File holding a Slack incoming-webhook URL: a message with a link is posted for each report.
    slack_webhook_url_file: str | None = None
    #: Base URL of this exporter as seen by readers, for links in delivered reports.
    public_url: str | None = None
    #: Statements listed in each top list.
    top_n: int = Field(10, ge=1, le=100)
    #: Days before a report's window used with it as the anomaly baseline.
    baseline_days: float = Field(7, ge=0, le=90)
    #: Robust z-score (median/MAD) above which a value is an anomaly.
    anomaly_z: float = Field(3.5, gt=0)
    #: Read live catalog facts (indexes, dead tuples, settings) from the monitored database.
    catalog: bool = True
    forecast: Forecasts = Forecasts()

    _every = field_validator("every", mode="before")(classmethod(lambda cls, v: parse_duration(v)))

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        if not _AT.match(value):
            raise ValueError("expected a UTC time of day as HH:MM, for example 00:15")
        return value


def _dsn(value: str | None) -> str | None:
    """A connection string libpq can parse (URI or keyword/value); the password never
    appears in the error."""
    if value is None or value == "":
        return value
    try:
        conninfo_to_dict(value)
    except ProgrammingError as exc:
        # libpq's message quotes the rest of the string, which can hold the password: only
        # the name of an unknown option is repeated.
        named = re.search(r'invalid (?:connection option|URI query parameter:) "([A-Za-z_]+)"', str(exc))
        why = (f"unknown option {named.group(1)!r}" if named
               else "cannot be parsed: check the scheme, the quoting and the key=value pairs")
        raise ValueError(f"not a valid PostgreSQL connection string ({why}); expected a URI such as "
                         "postgresql://user@host:5432/dbname or keywords such as 'host=... dbname=...'") from None
    return value


def _target_name(value: str | None) -> str | None:
    if value is not None and not _NAME.match(value):
        raise ValueError(f"use {_NAME_RULE}")
    return value


_HTTP_URL = re.compile(r"^https?://[^\s/]+")


def _alertmanager_url(value: str, where: str = "") -> str:
    if not _HTTP_URL.match(value):
        shown = f" ({where}: {redact(value)!r})" if where and value else f" ({where} is empty)" if where else ""
        raise ValueError(f"expected an http:// or https:// URL, for example http://alertmanager:9093{shown}")
    return value.rstrip("/")


class Alerts(Model):
    """The alert lifecycle: where Alertmanager is (silences on acknowledge, reconciliation)."""

    #: Alertmanager base URLs, tried in this order: the members of one gossip cluster (an
    #: HA pair), e.g. [http://alertmanager-1:9093, http://alertmanager-2:9093]; the flag
    #: --alertmanager.url URL, once per member. A silence is created on the first that
    #: answers and reaches the others through the cluster. None: the API's acknowledging
    #: records who and when but creates no silence (the command line refuses), and nothing
    #: is reconciled.
    alertmanager_urls: CommaList = ()
    #: One Alertmanager: the one-element case of ``alertmanager_urls``; set one of the two.
    alertmanager_url: str | None = None
    silence_duration: Duration = 86400.0
    #: How often open alerts are compared with Alertmanager's (a silenced alert gets no
    #: resolved notification, so pgperf looks for itself).
    reconcile_interval: Duration = 30.0
    #: An open alert absent from Alertmanager this long is resolved by "alertmanager".
    resolve_after: Duration = 120.0
    #: Per request to one Alertmanager; connecting gives up after at most 2 s, so that a
    #: member that is down costs little before the next one is tried.
    request_timeout: Duration = 5.0

    @field_validator("alertmanager_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _alertmanager_url(value) if value else value

    @field_validator("alertmanager_urls")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        urls = tuple(_alertmanager_url(url, f"item {i + 1}") for i, url in enumerate(value))
        repeated = sorted({redact(url) for url in urls if urls.count(url) > 1})
        if repeated:
            raise ValueError(f"each Alertmanager once: {', '.join(repeated)} is listed more than once")
        return urls

    @model_validator(mode="after")
    def _one_form(self) -> Alerts:
        if self.alertmanager_url and self.alertmanager_urls:
            raise ValueError("alertmanager_url and alertmanager_urls are both set: list every Alertmanager in "
                             "alertmanager_urls (PGPERF_ALERTS_ALERTMANAGER_URLS, comma-separated) and remove "
                             "alertmanager_url (PGPERF_ALERTS_ALERTMANAGER_URL)")
        return self

    @property
    def alertmanagers(self) -> tuple[str, ...]:
        """The Alertmanagers to talk to, in order, whichever of the two settings names them."""
        if self.alertmanager_urls:
            return self.alertmanager_urls
        return (self.alertmanager_url,) if self.alertmanager_url else ()


class Target(Model):
    name: str
    dsn: str
    #: This target's own database selection, replacing the top-level ``databases``.
    databases: Databases | None = None
    #: This target's environment profile: its alert thresholds are that profile's (the
    #: sampling interval, retention and notifications stay the process's).
    profile: ProfileName | None = None
    #: This target's own thresholds, over those of its ``profile`` (or of the process's
    #: thresholds when it has none); None: the process's.
    thresholds: Thresholds | None = None

    _check_name = field_validator("name")(classmethod(lambda cls, v: _target_name(v)))
    _check_dsn = field_validator("dsn")(classmethod(lambda cls, v: _dsn(v)))

    @model_validator(mode="before")
    @classmethod
    def _profile_thresholds(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("profile") in PROFILES:
            given = data.get("thresholds")
            base = load_profile(data["profile"])["thresholds"]
            return {**data, "thresholds": {**base, **given} if isinstance(given, Mapping) else given or base}
        return data


def _collectors_model() -> type[Model]:
    fields: dict[str, Any] = {
        spec.name: (spec.options, spec.options()) for spec in REGISTRY
    }
    return create_model("Collectors", __base__=Model, **fields)


Collectors = _collectors_model()


class Config(Model):
    """The whole, validated configuration of one pgperf process."""

    profile: ProfileName
    sampling_interval: Duration
    #: Shorthand for one target (flag --dsn, PGPERF_DSN or DATA_SOURCE_NAME).
    dsn: str | None = None
    target_name: str | None = None
    targets: tuple[Target, ...] = ()
    #: A YAML file of more targets (``targets:``, as in this file), read again on reload
    #: and when it changes: targets are added and removed without a restart.
    targets_file: str | None = None
    #: A directory of such files (every ``*.yml`` and ``*.yaml`` in it).
    targets_dir: str | None = None
    #: How often the target files are checked for changes (names, sizes, modification times).
    targets_check_interval: Duration = 5.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: How log lines are written on standard error: logfmt or JSON lines (pgperf.logs).
    log_format: Literal["logfmt", "json"] = "logfmt"
    web: Web = Web()
    api: Api = Api()
    connection: Connection = Connection()
    databases: Databases = Databases()
    store: Store = Store()
    collectors: Collectors = Collectors()  # type: ignore[valid-type]
    compat: Compat = Compat()
    thresholds: Thresholds
    retention: Retention
    notifications: Notifications = Notifications()
    alerts: Alerts = Alerts()
    #: Show statement texts in the API and reports (they can hold literals: off by default).
    expose_query_text: bool = False
    reports: Reports = Reports()
    #: Query insight: wait sampling, plans and index advice (``pgperf.insight``).
    insight: InsightOptions = InsightOptions()

    _check_target_name = field_validator("target_name")(classmethod(lambda cls, v: _target_name(v)))
    _check_dsn = field_validator("dsn")(classmethod(lambda cls, v: _dsn(v)))

    @model_validator(mode="before")
    @classmethod
    def _target_thresholds(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "targets" in data:
            return {**data, "targets": fill_target_thresholds(data["targets"], data.get("thresholds"))}
        return data

    @model_validator(mode="after")
    def _targets(self) -> Config:
        names = [t.name for t in self.targets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"targets: duplicate target names {duplicates}")
        return self

    @property
    def target_files(self) -> bool:
        """Whether targets also come from files (``targets_file``, ``targets_dir``; a ``dsn``
        names the one target instead)."""
        return bool(self.targets_file or self.targets_dir) and self.dsn is None

    @property
    def several_targets(self) -> bool:
        """Whether this process watches, or may come to watch, more than one target: then
        every family it serves carries a ``target`` label."""
        return self.target_files or len(self.resolved_targets()) > 1

    def resolved_targets(self) -> tuple[Target, ...]:
        """The targets to monitor: ``dsn`` if set, else ``targets`` (with those of the
        target files, once the application has read them), else libpq defaults.

        Raises ValueError, saying what to set, when the one target has no ``target_name``
        and the name made from its DSN (``host:port/dbname``) is not a valid target name,
        for instance a database name with a space; ``load_config`` reports that as a
        configuration problem."""
        if self.dsn is not None or not (self.targets or self.target_files):
            dsn = self.dsn or ""
            name = self.target_name or describe_dsn(dsn)
            if not _NAME.match(name):
                raise ValueError(
                    f"the target is named after its DSN's host, port and database, {redact(name)[:140]!r}, which is "
                    f"not a valid target name ({_NAME_RULE}): set target_name (PGPERF_TARGET_NAME) to a name "
                    "of your choice")
            return (Target(name=name, dsn=dsn),)
        return self.targets

    def thresholds_for(self, target: Target) -> Thresholds:
        """The thresholds *target* is judged by: its own, else the process's."""
        return target.thresholds or self.thresholds

    def thresholds_of(self, name: str) -> Thresholds:
        """The thresholds of the target named *name* (the process's for a name not known)."""
        for target in self.targets:
            if target.name == name:
                return self.thresholds_for(target)
        return self.thresholds

    def store_dsn(self) -> str:
        return self.store.dsn if self.store.dsn is not None else self.resolved_targets()[0].dsn
