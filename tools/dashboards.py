"""The Grafana dashboards, generated with grafana-foundation-sdk (``make dashboards``).

Writes ``grafana/dashboards/*.json``, the panel list of the README's Grafana section and
``docs/dashboards.md``; a test regenerates them in memory and compares them with the
committed files, so an edit here without ``make dashboards`` fails the test suite.

Thresholds come from the same place as the alert rules' (``pgperf_threshold_*`` served by
the exporter, from its profile) and in two forms:

* a threshold *line* on a time series is a query of the live ``pgperf_threshold_*``
  gauge, so each instance is drawn against its own profile and overrides;
* the *colours* of stat, bar and table cells are steps, which Grafana cannot read from a
  query: they take the values of the ``production`` profile (``PROFILE``).

Every query goes through a datasource variable (``${datasource}`` for Prometheus,
``${pgds}`` for the PostgreSQL store), never a fixed datasource UID, and every Prometheus
selector filters on ``job``, ``instance`` and ``target`` (the label a multi-target
exporter adds; ``.*`` also matches its absence).

    python -m tools.dashboards            # write the files
    python -m tools.dashboards --check    # exit 1 if a committed file is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal, Self

from grafana_foundation_sdk.builders import bargauge, stat, table, text, timeseries
from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import prometheus as prometheus_builder
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prometheus_model
from grafana_foundation_sdk.models import text as text_model

from pgperf.config import load_profile
from pgperf.exposition import THRESHOLD_METRICS

from . import write_generated

__all__ = [
    "DASHBOARDS", "POSTGRES_TYPE", "PROFILE", "PROMETHEUS_TYPE", "SqlQuery", "build", "generated", "render",
    "thresholds_used",
]

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_DIR = "grafana/dashboards"
README_START = "<!-- dashboards: start -->"
README_END = "<!-- dashboards: end -->"

#: The profile whose values colour stat, bar gauge and table cells.
PROFILE = "production"
TAGS = ["pgperf"]

PROMETHEUS_TYPE = "prometheus"
POSTGRES_TYPE = "grafana-postgresql-datasource"
PROMETHEUS = model.DataSourceRef(type_val=PROMETHEUS_TYPE, uid="${datasource}")
POSTGRES = model.DataSourceRef(type_val=POSTGRES_TYPE, uid="${pgds}")

# Label filters of every query: the dashboard's variables. "target" is empty (and matched
# by the ".*" of "All") when an exporter serves a single target.
SEL = 'job=~"$job", instance=~"$instance", target=~"$target"'
DB = SEL + ', datname=~"$datname"'
BY = "job, instance, target"
WHO = "{{instance}} {{target}}"

def _match(column: str, variable: str) -> str:
    """SQL filter of *column* by a dashboard variable. The store's tables carry the pgperf
    target name, not Prometheus' job and instance: SQL panels filter on target (and on the
    alerts' labels) with the variables in regex form; with "All", Grafana substitutes the
    variable's custom all value (.*) unformatted."""
    return f"coalesce({column}, '') ~ '^(${{{variable}:regex}})$'"


RED, ORANGE, GREEN, BLUE = "red", "orange", "green", "blue"
Steps = Sequence[tuple[float | None, str]]
Query = cogbuilder.Builder[cogvariants.Dataquery]


# --- profile thresholds --------------------------------------------------------------------

_USED: set[str] = set()  # threshold keys read while building, for thresholds_used()


@cache
def _scales() -> dict[str, tuple[str, float]]:
    return {key: (metric, scale) for key, metric, scale, _ in THRESHOLD_METRICS}


def limit(key: str) -> float:
    """A threshold of ``PROFILE`` in the base unit of its ``pgperf_threshold_*`` metric."""
    _USED.add(key)
    value = float(load_profile(PROFILE)["thresholds"][key]) * _scales()[key][1]
    return round(value, 9)


def live(key: str) -> str:
    """The live threshold of each exporter, read as the rules read it."""
    _USED.add(key)
    return f"max by (job, instance) ({_scales()[key][0]}{{{SEL}}})"


def thresholds_used() -> set[str]:
    """The profile thresholds (configuration keys) the dashboards draw or colour with."""
    _USED.clear()
    build()
    return set(_USED)


def above(key: str, warn: str | None = None) -> Steps:
    """Colours for a value that is bad above the profile's threshold *key* (warning
    from the threshold *warn* when given)."""
    steps: list[tuple[float | None, str]] = [(None, GREEN)]
    if warn:
        steps.append((limit(warn), ORANGE))
    steps.append((limit(key), RED))
    return steps


def below(key: str) -> Steps:
    """Colours for a value that is bad below the profile's threshold *key*."""
    return [(None, RED), (limit(key), GREEN)]


# --- queries -------------------------------------------------------------------------------

class SqlQuery(cogvariants.Dataquery):
    """A raw-SQL target of Grafana's PostgreSQL datasource, serialized as Grafana saves one
    written in the code editor. The SDK has no dataquery type for that datasource."""

    def __init__(self, raw_sql: str, format_val: Literal["table", "time_series"] = "table", ref_id: str = "") -> None:
        self.raw_sql = raw_sql
        self.format_val = format_val
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": POSTGRES,
            "editorMode": "code",
            "format": self.format_val,
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class Sql(cogbuilder.Builder[SqlQuery]):
    """Builder of a ``SqlQuery``, like the SDK's builders of other dataquery types."""

    def __init__(self, raw_sql: str, format_val: Literal["table", "time_series"] = "table") -> None:
        self._internal = SqlQuery(textwrap.dedent(raw_sql).strip(), format_val)

    def build(self) -> SqlQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self


def prom(expr: str, legend: str = "", *, instant: bool = False, table_format: bool = False) -> prometheus_builder.Dataquery:
    """A Prometheus target; *expr* is dedented and joined into one line."""
    query = (prometheus_builder.Dataquery()
             .expr(" ".join(textwrap.dedent(expr).split()))
             .datasource(PROMETHEUS)
             .editor_mode(prometheus_model.QueryEditorMode.CODE))
    if legend:
        query.legend_format(legend)
    if instant:
        query.instant()
    else:
        query.range()
    if table_format:
        query.format(prometheus_model.PromQueryFormat.TABLE)
    return query


# --- panels -------------------------------------------------------------------------------

def _thresholds(steps: Steps) -> dashboard_builder.ThresholdsConfig:
    return (dashboard_builder.ThresholdsConfig()
            .mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=v, color=c) for v, c in steps]))


def _link(title: str, url: str, *, blank: bool = False) -> dict[str, object]:
    return {"title": title, "url": url, "targetBlank": blank}


def _with_targets(panel: Any, queries: Sequence[Query]) -> None:
    for index, query in enumerate(queries):
        query.ref_id(chr(ord("A") + index))  # type: ignore[attr-defined]
        panel.with_target(query)


def _common(panel: Any, title: str, description: str, unit: str, w: int, h: int, datasource: model.DataSourceRef) -> None:
    """What every panel but text has (the builders share these methods, not a base class)."""
    panel.title(title).description(description).unit(unit).span(w).height(h).datasource(datasource)


def _datasource_of(queries: Sequence[Query]) -> model.DataSourceRef:
    return POSTGRES if any(isinstance(q, Sql) for q in queries) else PROMETHEUS


DASHED = [
    model.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
    model.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
    model.DynamicConfigValue(id_val="custom.lineWidth", value=1),
    model.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": RED}),
]
POINTS = [
    model.DynamicConfigValue(id_val="custom.drawStyle", value="points"),
    model.DynamicConfigValue(id_val="custom.pointSize", value=9),
    model.DynamicConfigValue(id_val="custom.showPoints", value="always"),
    model.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": RED}),
]


def series(title: str, description: str, unit: str, queries: Sequence[Query], *,
           lines: Sequence[prometheus_builder.Dataquery] = (), marks: Sequence[prometheus_builder.Dataquery] = (),
           steps: Steps | None = None, w: int = 12, h: int = 8, min_val: float | None = None,
           max_val: float | None = None, stack: bool = False, bars: bool = False) -> timeseries.Panel:
    """A time series panel. *lines* are threshold queries drawn dashed in red, *marks*
    anomaly queries drawn as red points; *steps* colour the values."""
    panel = timeseries.Panel()
    _common(panel, title, description, unit, w, h, _datasource_of(queries))
    panel.fill_opacity(10).line_width(1).show_points(common.VisibilityMode.NEVER).span_nulls(False)
    panel.legend(common_builder.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                 .placement(common.LegendPlacement.BOTTOM).show_legend(True))
    panel.tooltip(common_builder.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
    if bars:
        panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    if stack:
        panel.stacking(common_builder.StackingConfig().mode(common.StackingMode.NORMAL))
    if min_val is not None:
        panel.min(min_val)
    if max_val is not None:
        panel.max(max_val)
    if steps:
        panel.thresholds(_thresholds(steps))
    all_queries = [*queries, *lines, *marks]
    _with_targets(panel, all_queries)
    for index in range(len(queries), len(all_queries)):
        ref = chr(ord("A") + index)
        panel.override_by_query(ref, DASHED if index < len(queries) + len(lines) else POINTS)
    return panel


def single(title: str, description: str, unit: str, queries: Sequence[Query], *, steps: Steps | None = None,
           w: int = 4, h: int = 4, mappings: dict[str, tuple[str, str]] | None = None,
           text_mode: common.BigValueTextMode = common.BigValueTextMode.AUTO, no_value: str | None = None,
           links: Sequence[dict[str, object]] = (), decimals: int | None = None) -> stat.Panel:
    """A stat panel: one tile per series (per instance), the last value, coloured."""
    panel = stat.Panel()
    _common(panel, title, description, unit, w, h, _datasource_of(queries))
    panel.reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    panel.color_mode(common.BigValueColorMode.BACKGROUND).graph_mode(common.BigValueGraphMode.NONE)
    panel.text_mode(text_mode).orientation(common.VizOrientation.AUTO)
    panel.thresholds(_thresholds(steps or [(None, BLUE)]))
    if mappings:
        panel.mappings([model.ValueMap(options={
            value: model.ValueMappingResult(text=label, color=color, index=i)
            for i, (value, (label, color)) in enumerate(mappings.items())})])
    if no_value is not None:
        panel.no_value(no_value)
    if decimals is not None:
        panel.decimals(decimals)
    if links:
        panel.override_by_regexp(".*", [model.DynamicConfigValue(id_val="links", value=list(links))])
    _with_targets(panel, queries)
    return panel


def bars(title: str, description: str, unit: str, queries: Sequence[Query], *, steps: Steps | None = None,
         w: int = 8, h: int = 8, links: Sequence[dict[str, object]] = (), max_val: float | None = None) -> bargauge.Panel:
    """A horizontal bar gauge: one bar per series, for top-N rankings."""
    panel = bargauge.Panel()
    _common(panel, title, description, unit, w, h, _datasource_of(queries))
    panel.display_mode(common.BarGaugeDisplayMode.BASIC).orientation(common.VizOrientation.HORIZONTAL)
    panel.value_mode(common.BarGaugeValueMode.TEXT).name_placement(common.BarGaugeNamePlacement.TOP)
    panel.show_unfilled(True).min(0)
    panel.reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    panel.thresholds(_thresholds(steps or [(None, BLUE)]))
    if max_val is not None:
        panel.max(max_val)
    if links:
        panel.override_by_regexp(".*", [model.DynamicConfigValue(id_val="links", value=list(links))])
    _with_targets(panel, queries)
    return panel


def grid(title: str, description: str, unit: str, queries: Sequence[Query], *, w: int = 24, h: int = 8,
         columns: dict[str, dict[str, Any]] | None = None, hide: Sequence[str] = (), rename: dict[str, str] | None = None,
         merge: bool = False, sort: tuple[str, bool] | None = None, steps: Steps | None = None) -> table.Panel:
    """A table. *columns* sets per-column properties by final column name (``unit``,
    ``links``, ``mappings``, ``color`` for a coloured background, ``width``); *hide* and
    *rename* organize the columns; *merge* joins the rows of several instant queries on
    their labels; *sort* is (column, descending)."""
    panel = table.Panel()
    _common(panel, title, description, unit, w, h, _datasource_of(queries))
    panel.filterable(False).cell_height(common.TableCellHeight.SM)
    panel.thresholds(_thresholds(steps or [(None, BLUE)]))
    transformations = []
    if merge:
        transformations.append(model.DataTransformerConfig(id_val="merge", options={}))
    if hide or rename:
        transformations.append(model.DataTransformerConfig(id_val="organize", options={
            "excludeByName": {name: True for name in hide},
            "renameByName": dict(rename or {}),
            "indexByName": {},
        }))
    if transformations:
        panel.transformations(transformations)
    if sort:
        panel.sort_by([common_builder.TableSortByFieldState().display_name(sort[0]).desc(sort[1])])
    for name, props in (columns or {}).items():
        values = []
        for key, value in props.items():
            if key == "unit":
                values.append(model.DynamicConfigValue(id_val="unit", value=value))
            elif key == "links":
                values.append(model.DynamicConfigValue(id_val="links", value=value))
            elif key == "width":
                values.append(model.DynamicConfigValue(id_val="custom.width", value=value))
            elif key == "mappings":
                values.append(model.DynamicConfigValue(id_val="mappings", value=[{
                    "type": "value",
                    "options": {v: {"text": v, "color": c, "index": i} for i, (v, c) in enumerate(value.items())},
                }]))
            elif key == "color":
                values.append(model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}))
                if isinstance(value, list):
                    values.append(model.DynamicConfigValue(id_val="thresholds", value={
                        "mode": "absolute", "steps": [{"value": v, "color": c} for v, c in value]}))
            else:
                raise ValueError(f"unknown column property {key!r}")
        panel.override_by_name(name, values)
    _with_targets(panel, queries)
    return panel


def note(title: str, description: str, content: str, *, w: int = 24, h: int = 4) -> text.Panel:
    """A Markdown text panel."""
    return (text.Panel().title(title).description(description).span(w).height(h)
            .mode(text_model.TextMode.MARKDOWN).content(textwrap.dedent(content).strip()))


# --- dashboards ---------------------------------------------------------------------------

Panel = cogbuilder.Builder[model.Panel]


class Board:
    """A pgperf dashboard: the common variables and links, then rows of panels."""

    def __init__(self, uid: str, title: str, description: str, *, sql: bool = False, refresh: str = "1m") -> None:
        self.uid = uid
        self.builder = (dashboard_builder.Dashboard(title).uid(uid).description(description)
                        .tags(TAGS).time("now-3h", "now").refresh(refresh).timezone("browser")
                        .tooltip(model.DashboardCursorSync.CROSSHAIR).editable())
        self.builder.timepicker(dashboard_builder.TimePicker().refresh_intervals(
            ["30s", "1m", "5m", "15m", "30m", "1h"]))
        self.builder.link(dashboard_builder.DashboardLink("pgperf").type(model.DashboardLinkType.DASHBOARDS)
                          .tags(TAGS).as_dropdown(False).include_vars(True).keep_time(True)
                          .tooltip("The other pgperf dashboards, same instance and time range"))
        self.builder.with_variable(dashboard_builder.DatasourceVariable("datasource").label("Prometheus")
                                   .type(PROMETHEUS_TYPE).description("Prometheus that scrapes pgperf"))
        if sql:
            self.builder.with_variable(dashboard_builder.DatasourceVariable("pgds").label("Store")
                                       .type(POSTGRES_TYPE)
                                       .description("PostgreSQL holding pgperf's sample store (read-only role pgperf_reader)"))
        self.query_variable("job", "label_values(pg_up, job)", "Prometheus job of the pgperf exporters")
        self.query_variable("instance", 'label_values(pg_up{job=~"$job"}, instance)', "Exporter address (host:port)")
        self.query_variable("target", 'label_values(pg_up{job=~"$job", instance=~"$instance"}, target)',
                            "Server of a multi-target exporter; none with one target per exporter")
        self.query_variable("datname", f"label_values(pg_stat_database_numbackends{{{SEL}}}, datname)", "Database")
        self._next_id = 1

    def query_variable(self, name: str, query: str, description: str, *, multi: bool = True) -> Self:
        variable = (dashboard_builder.QueryVariable(name).label(name).description(description)
                    .datasource(PROMETHEUS).query(query).refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
                    .sort(model.VariableSort.ALPHABETICAL_ASC).multi(multi))
        if multi:
            variable.include_all(True).all_value(".*").current(
                model.VariableOption(selected=True, text="All", value="$__all"))
        self.builder.with_variable(variable)
        return self

    def textbox(self, name: str, label: str, default: str, description: str) -> Self:
        self.builder.with_variable(dashboard_builder.TextBoxVariable(name).label(label).default_value(default)
                                   .current(model.VariableOption(selected=True, text=default, value=default))
                                   .description(description))
        return self

    def annotation(self, name: str, expr: str, color: str) -> Self:
        self.builder.annotation(dashboard_builder.AnnotationQuery().name(name).datasource(PROMETHEUS)
                                .enable(True).icon_color(color).expr(" ".join(expr.split())))
        return self

    def row(self, title: str, *panels: Panel) -> Self:
        self.builder.with_row(dashboard_builder.Row(title).id(self._take_id()))
        for panel in panels:
            panel.id(self._take_id())  # type: ignore[attr-defined]
            self.builder.with_panel(panel)
        return self

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def build(self) -> model.Dashboard:
        return self.builder.build()


def _to_dashboard(uid: str, **variables: str) -> str:
    """A relative link to another pgperf dashboard keeping the time range and the filters."""
    keep = "&".join(f"${{{v}:queryparam}}" for v in ("datasource", "job", "instance", "target"))
    extra = "".join(f"&var-{k}={v}" for k, v in variables.items())
    return f"/d/{uid}?${{__url_time_range}}&{keep}{extra}"


CACHE_HIT = f"""
    sum by ({BY}) (rate(pg_stat_database_blks_hit{{{SEL}}}[$__rate_interval]))
      /
    (sum by ({BY}) (rate(pg_stat_database_blks_hit{{{SEL}}}[$__rate_interval]) + rate(pg_stat_database_blks_read{{{SEL}}}[$__rate_interval])) > 0)
"""
TPS = f"""
    sum by ({BY}) (rate(pg_stat_database_xact_commit{{{SEL}}}[$__rate_interval]) + rate(pg_stat_database_xact_rollback{{{SEL}}}[$__rate_interval]))
"""
ROLLBACK_RATIO = f"""
    sum by ({BY}) (rate(pg_stat_database_xact_rollback{{{SEL}}}[$__rate_interval]))
      /
    ({TPS} > 0)
"""
FIRING = f'ALERTS{{alertstate="firing", alertname=~"Pgperf.*", {SEL}}}'


def overview() -> model.Dashboard:
    board = Board("pgperf-overview", "pgperf / Overview",
                  "Health of every monitored PostgreSQL instance: availability, load, connections, cache, "
                  "host resources, replication and the alerts firing now.")
    board.annotation("PostgreSQL restarts", f"changes(pg_postmaster_start_time_seconds{{{SEL}}}[$__interval]) > 0", ORANGE)
    board.row(
        "Instances",
        single("PostgreSQL up", "Whether pgperf's last sample could connect to PostgreSQL (pg_up), per instance.",
               "none", [prom(f"pg_up{{{SEL}}}", WHO, instant=True)],
               mappings={"0": ("down", RED), "1": ("up", GREEN)}, steps=[(None, RED), (1, GREEN)]),
        single("Version", "PostgreSQL version of each instance (pg_static).", "none",
               [prom(f"pg_static{{{SEL}}}", "{{short_version}} ({{instance}} {{target}})", instant=True)],
               text_mode=common.BigValueTextMode.NAME),
        single("Uptime", "Time since the postmaster started. Red for ten minutes after a restart, like the "
               "PgperfServerRestarted notification.", "s",
               [prom(f"time() - pg_postmaster_start_time_seconds{{{SEL}}}", WHO, instant=True)],
               steps=[(None, RED), (600, GREEN)]),
        single("Transactions/s", "Commits and rollbacks per second, all databases.", "ops",
               [prom(TPS, WHO, instant=True)]),
        single("Connections used", "Client backends against max_connections. Orange from the warning, red from the "
               f"critical utilization of the {PROFILE} profile.", "percentunit",
               [prom(f"pg_stat_activity_connection_utilization_ratio{{{SEL}}}", WHO, instant=True)],
               steps=above("connection_utilization_critical_percent", "connection_utilization_warning_percent")),
        single("Cache hit ratio", "Share of blocks found in shared buffers over the last rate interval. Red under the "
               f"minimum of the {PROFILE} profile.", "percentunit", [prom(CACHE_HIT, WHO, instant=True)],
               steps=below("cache_hit_ratio_min"), decimals=2),
        single("CPU", "CPU usage of the database host over the last sampling interval (host collector).",
               "percentunit", [prom(f"pgperf_host_cpu_usage_ratio{{{SEL}}}", WHO, instant=True)],
               steps=above("cpu_usage_max_percent")),
        single("Memory", "Memory in use on the database host.", "percentunit",
               [prom(f"pgperf_host_memory_usage_ratio{{{SEL}}}", WHO, instant=True)],
               steps=above("memory_usage_max_percent")),
        single("Disk", "Usage of the filesystem holding the data directory.", "percentunit",
               [prom(f"max by ({BY}) (pgperf_host_disk_usage_ratio{{{SEL}}})", WHO, instant=True)],
               steps=above("disk_usage_max_percent")),
        single("Replication lag", "How far replay on a standby is behind its primary (0 on a primary).", "s",
               [prom(f"pg_replication_lag_seconds{{{SEL}}}", WHO, instant=True)],
               steps=above("replication_lag_max_seconds")),
        single("Slow statements", "Statements whose mean time in the last sampling interval exceeded the slow-query "
               "threshold.", "short",
               [prom(f"sum by ({BY}) (pg_stat_statements_slow_statements{{{SEL}}})", WHO, instant=True)],
               steps=[(None, GREEN), (1, ORANGE), (limit("slow_queries_error_count"), RED)],
               links=[_link("Query performance", _to_dashboard("pgperf-queries"))]),
        single("Firing alerts", "pgperf alerts firing now in Prometheus (ALERTS), all severities. Click for the "
               "alerts dashboard.", "short", [prom(f"count({FIRING}) or vector(0)", "firing", instant=True)],
               steps=[(None, GREEN), (1, ORANGE)],
               links=[_link("Alerts and reports", _to_dashboard("pgperf-alerts"))]),
    )
    board.row(
        "Trends",
        series("Transactions per second", "Commits and rollbacks per second, all databases.", "ops", [
            prom(f"sum by ({BY}) (rate(pg_stat_database_xact_commit{{{SEL}}}[$__rate_interval]))", f"{WHO} commits"),
            prom(f"sum by ({BY}) (rate(pg_stat_database_xact_rollback{{{SEL}}}[$__rate_interval]))", f"{WHO} rollbacks"),
        ]),
        series("Connections against max_connections", "Client backends (what max_connections limits) and the "
               "max_connections setting, dashed.", "short",
               [prom(f"pg_stat_activity_client_connections{{{SEL}}}", f"{WHO} connections")],
               lines=[prom(f"pg_settings_max_connections{{{SEL}}}", f"{WHO} max_connections")], min_val=0),
        series("Cache hit ratio", "Blocks found in shared buffers over blocks needed. Dashed: each instance's minimum "
               "(pgperf_threshold_cache_hit_ratio_min), below which PgperfCacheHitRatioLow fires after 10 minutes.",
               "percentunit", [prom(CACHE_HIT, WHO)],
               lines=[prom(live("cache_hit_ratio_min"), "{{instance}} minimum")], steps=below("cache_hit_ratio_min")),
        series("Rollback ratio", "Share of transactions rolled back (the error rate). Dashed: each instance's maximum "
               "(pgperf_threshold_error_rate_max_ratio).", "percentunit", [prom(ROLLBACK_RATIO, WHO)],
               lines=[prom(live("error_rate_max"), "{{instance}} maximum")], steps=above("error_rate_max"), min_val=0),
        series("Replication lag", "Replay delay of a standby (pg_replication_lag_seconds) and, on a primary, the replay "
               "lag of each connected standby (pg_stat_replication). Dashed: the maximum "
               "(pgperf_threshold_replication_lag_max_seconds).", "s", [
                   prom(f"pg_replication_lag_seconds{{{SEL}}}", f"{WHO} replay delay"),
                   prom(f"max by ({BY}, application_name) (pg_stat_replication_replay_lag_seconds{{{SEL}}})",
                        f"{WHO} standby {{{{application_name}}}}"),
               ], lines=[prom(live("replication_lag_max_seconds"), "{{instance}} maximum")], min_val=0),
        series("Sessions by state", "Sessions per state (active, idle, idle in transaction ...) in the selected "
               "databases.", "short",
               [prom(f"sum by ({BY}, state) (pg_stat_activity_count{{{DB}}})", f"{WHO} {{{{state}}}}")],
               stack=True, min_val=0),
        grid("Alerts firing now", "pgperf alerts firing now in Prometheus. History, acknowledgements and resolutions are "
             "on the Alerts and reports dashboard.", "none",
             [prom(FIRING, instant=True, table_format=True)],
             hide=["Time", "Value", "__name__", "alertstate", "job"], h=6, w=16,
             columns={"severity": {"mappings": {"critical": RED, "error": RED, "warning": ORANGE, "info": BLUE},
                                   "color": True}}),
        bars("Database size", "Size of each selected database (pg_database_size).", "bytes",
             [prom(f"pg_database_size_bytes{{{DB}}}", "{{datname}} ({{instance}} {{target}})", instant=True)], h=6),
    )
    return board.build()


STATEMENT = f"{BY}, datname, user, queryid"
STATEMENT_LEGEND = "{{queryid}} {{datname}}/{{user}} ({{instance}} {{target}})"


def _per_statement(metric: str) -> str:
    return f"sum by ({STATEMENT}) (increase({metric}{{{DB}}}[$__range]))"


MEAN_RANGE = f"{_per_statement('pg_stat_statements_seconds_total')} / ({_per_statement('pg_stat_statements_calls_total')} > 0)"
HIT_RANGE = (f"{_per_statement('pg_stat_statements_shared_blocks_hit_total')} / (("
             f"{_per_statement('pg_stat_statements_shared_blocks_hit_total')} + "
             f"{_per_statement('pg_stat_statements_shared_blocks_read_total')}) > 0)")
ONE = f'{DB}, queryid="$queryid"'


def queries() -> model.Dashboard:
    board = Board("pgperf-queries", "pgperf / Query performance",
                  "pg_stat_statements: the statements that cost most, time per database and user, slow and "
                  "long-running queries, and a drill-down into one statement with its text and history from "
                  "the store.", sql=True)
    board.query_variable("queryid", f"label_values(pg_stat_statements_calls_total{{{DB}}}, queryid)",
                         "Statement of the drill-down (pgperf serves per-queryid series for the top N statements)",
                         multi=False)
    board.annotation("Query time spikes",
                     f'ALERTS{{alertname="PgperfQueryTimeSpike", alertstate="firing", {ONE}}}', RED)
    drill = [_link("Drill down into ${__field.labels.queryid}",
                   _to_dashboard("pgperf-queries", datname="${__field.labels.datname}",
                                 queryid="${__field.labels.queryid}"))]
    board.row(
        "Top statements over the time range",
        grid("Statements", "Every statement pgperf serves per queryid (the top N by time, slow statements always "
             "included), over the dashboard's time range. Click a queryid for its drill-down.", "short", [
                 prom(_per_statement("pg_stat_statements_seconds_total"), instant=True, table_format=True),
                 prom(_per_statement("pg_stat_statements_calls_total"), instant=True, table_format=True),
                 prom(MEAN_RANGE, instant=True, table_format=True),
                 prom(_per_statement("pg_stat_statements_rows_total"), instant=True, table_format=True),
                 prom(HIT_RANGE, instant=True, table_format=True),
             ], merge=True, hide=["Time", "job"], h=10, sort=("Total time", True),
             rename={"Value #A": "Total time", "Value #B": "Calls", "Value #C": "Mean time", "Value #D": "Rows",
                     "Value #E": "Cache hit ratio"},
             columns={"Total time": {"unit": "s"}, "Calls": {"unit": "short"}, "Mean time": {"unit": "s"},
                      "Rows": {"unit": "short"},
                      "Cache hit ratio": {"unit": "percentunit", "color": [(None, RED), (limit("cache_hit_ratio_min"), GREEN)]},
                      "queryid": {"links": [_link("Drill down into ${__value.raw}", _to_dashboard(
                          "pgperf-queries", datname="${__data.fields.datname}", queryid="${__value.raw}"))]}}),
        bars("Top 10 by total time", "Statements that spent the most execution time over the time range.", "s",
             [prom(f"topk(10, {_per_statement('pg_stat_statements_seconds_total')})", STATEMENT_LEGEND, instant=True)],
             links=drill),
        bars("Top 10 by mean time", "Statements with the highest mean time per call over the time range. Orange from "
             f"a tenth of the slow-query threshold of the {PROFILE} profile, red from the threshold.", "s",
             [prom(f"topk(10, {MEAN_RANGE})", STATEMENT_LEGEND, instant=True)], links=drill,
             steps=[(None, GREEN), (limit("slow_query_time_ms") / 10, ORANGE), (limit("slow_query_time_ms"), RED)]),
        bars("Top 10 by calls", "Statements executed most often over the time range.", "short",
             [prom(f"topk(10, {_per_statement('pg_stat_statements_calls_total')})", STATEMENT_LEGEND, instant=True)],
             links=drill),
        bars("Top 10 by rows", "Statements that returned or affected the most rows over the time range.", "short",
             [prom(f"topk(10, {_per_statement('pg_stat_statements_rows_total')})", STATEMENT_LEGEND, instant=True)],
             links=drill),
        bars("Lowest cache hit ratio", "Statements with the lowest share of shared-buffer hits over the time range. "
             f"Red under the minimum of the {PROFILE} profile.", "percentunit",
             [prom(f"bottomk(10, {HIT_RANGE})", STATEMENT_LEGEND, instant=True)], links=drill,
             steps=below("cache_hit_ratio_min"), max_val=1),
        bars("Top 10 by block read time", "Statements that spent the most time reading blocks (needs "
             "track_io_timing).", "s",
             [prom(f"topk(10, {_per_statement('pg_stat_statements_block_read_seconds_total')})", STATEMENT_LEGEND,
                   instant=True)], links=drill),
    )
    board.row(
        "Time per database and user",
        series("Execution time per database", "Seconds of statement execution per second, all statements of each "
               "database (1 = one backend busy all the time).", "s",
               [prom(f"sum by ({BY}, datname) (rate(pg_stat_statements_all_seconds_total{{{DB}}}[$__rate_interval]))",
                     f"{{{{datname}}}} ({WHO})")], stack=True, w=8),
        series("Execution time per user", "Seconds of statement execution per second, all statements of each user.",
               "s", [prom(f"sum by ({BY}, user) (rate(pg_stat_statements_all_seconds_total{{{DB}}}[$__rate_interval]))",
                          f"{{{{user}}}} ({WHO})")], stack=True, w=8),
        series("Calls per database", "Statement executions per second in each database.", "ops",
               [prom(f"sum by ({BY}, datname) (rate(pg_stat_statements_all_calls_total{{{DB}}}[$__rate_interval]))",
                     f"{{{{datname}}}} ({WHO})")], stack=True, w=8),
        series("Slowest statement", "Highest mean time of a statement in each sampling interval. Dashed: the "
               "slow-query threshold of each instance (pgperf_threshold_slow_query_seconds); PgperfSlowQueries fires "
               "above it.", "s",
               [prom(f"max by ({BY}, datname) (pg_stat_statements_slowest_mean_seconds{{{DB}}})", f"{{{{datname}}}} ({WHO})")],
               lines=[prom(live("slow_query_time_ms"), "{{instance}} slow-query threshold")],
               steps=above("slow_query_time_ms"), w=8),
        series("Slow statements", "Statements over the slow-query threshold in the last sampling interval. Dashed: "
               "the count from which PgperfSlowQueries is an error (pgperf_threshold_slow_statements_error).", "short",
               [prom(f"sum by ({BY}) (pg_stat_statements_slow_statements{{{DB}}})", WHO)],
               lines=[prom(live("slow_queries_error_count"), "{{instance}} error from")], min_val=0, w=8),
        series("Longest-running query", "Run time of the longest active client query in each database. Dashed: the "
               "long-running threshold (pgperf_threshold_long_running_query_seconds).", "s",
               [prom(f"pg_stat_activity_oldest_query_age_seconds{{{DB}}}", f"{{{{datname}}}} ({WHO})")],
               lines=[prom(live("long_running_query_seconds"), "{{instance}} long-running from")], min_val=0, w=8),
    )
    target_filter = _match("target", "target")
    board.row(
        "Statement $queryid",
        grid("Query text", "The statement's text as stored by pgperf (query_performance_metrics), per server, "
             "database and user, with the last time it ran.", "none", [Sql(f"""
                 SELECT DISTINCT ON (target, datname, username)
                        target, datname, username, recorded_at AS last_seen, query_text
                   FROM query_performance_metrics
                  WHERE query_id = '$queryid'
                    AND {target_filter}
                    AND {_match("datname", "datname")}
                  ORDER BY target, datname, username, recorded_at DESC
             """)], h=6, columns={"query_text": {"width": 900}}),
        series("Mean time and its baseline", "Mean time per call of the statement (rate of seconds over rate of "
               "calls), its 1-day baseline (the recording rule PgperfQueryTimeSpike compares with) and, dashed, the "
               "spike threshold: baseline × pgperf_threshold_query_spike_factor. Red points: anomalies, where the "
               "5-minute mean is over the spike threshold. The baseline needs Prometheus history older than five "
               "minutes.", "s", [
                   prom(f"sum by ({BY}, datname, user) (rate(pg_stat_statements_seconds_total{{{ONE}}}[$__rate_interval])) / "
                        f"(sum by ({BY}, datname, user) (rate(pg_stat_statements_calls_total{{{ONE}}}[$__rate_interval])) > 0)",
                        f"mean {{{{datname}}}}/{{{{user}}}} ({WHO})"),
                   prom(f"queryid:pg_stat_statements_mean_seconds:rate1d{{{ONE}}}", "1-day baseline {{datname}}/{{user}}"),
               ],
               lines=[prom(f"queryid:pg_stat_statements_mean_seconds:rate1d{{{ONE}}} * on (job, instance) group_left "
                           f"{live('query_spike_factor')}", "spike threshold {{datname}}/{{user}}")],
               marks=[prom(f"queryid:pg_stat_statements_mean_seconds:rate5m{{{ONE}}} > "
                           f"queryid:pg_stat_statements_mean_seconds:rate1d{{{ONE}}} * on (job, instance) group_left "
                           f"{live('query_spike_factor')}", "anomaly {{datname}}/{{user}}")], min_val=0, w=12),
        series("Calls per second", "Executions of the statement per second.", "ops",
               [prom(f"sum by ({BY}, datname, user) (rate(pg_stat_statements_calls_total{{{ONE}}}[$__rate_interval]))",
                     f"{{{{datname}}}}/{{{{user}}}} ({WHO})")], min_val=0, w=12),
        series("Mean time per sampling interval (store)", "Mean time per call in each sampling interval, from the "
               "store (query_performance_metrics): history beyond Prometheus' retention.", "s", [Sql(f"""
                 SELECT $__timeGroupAlias(recorded_at, $__interval),
                        sum(total_time) / nullif(sum(calls), 0) / 1000.0 AS "mean time"
                   FROM query_performance_metrics
                  WHERE $__timeFilter(recorded_at)
                    AND query_id = '$queryid'
                    AND {target_filter}
                    AND {_match("datname", "datname")}
                  GROUP BY 1
                  ORDER BY 1
             """, "time_series")], min_val=0, w=12),
        grid("Sampling intervals (store)", "The statement's rows in the store, newest first: each sampling "
             "interval's calls, time, rows and cache hits. spans_reset: pg_stat_statements was reset during the "
             "interval.", "short", [Sql(f"""
                 SELECT recorded_at AS "time", target, datname, username, calls,
                        total_time / 1000.0 AS total_time, mean_time / 1000.0 AS mean_time,
                        rows_affected,
                        cache_hits::float8 / nullif(cache_hits + cache_misses, 0) AS cache_hit_ratio,
                        spans_reset
                   FROM query_performance_metrics
                  WHERE $__timeFilter(recorded_at)
                    AND query_id = '$queryid'
                    AND {target_filter}
                    AND {_match("datname", "datname")}
                  ORDER BY recorded_at DESC
                  LIMIT 500
             """)], w=12,
             columns={"total_time": {"unit": "s"}, "mean_time": {"unit": "s"}, "cache_hit_ratio": {"unit": "percentunit"}}),
    )
    return board.build()


def resources() -> model.Dashboard:
    board = Board("pgperf-resources", "pgperf / Resources",
                  "The database host (CPU, memory, disk, network), database sizes, connections, locks, "
                  "checkpoints and WAL, vacuum and dead tuples.")
    board.row(
        "Host",
        series("CPU usage", "Share of all CPUs busy during each sampling interval. Dashed: each instance's maximum "
               "(pgperf_threshold_cpu_usage_max_ratio).", "percentunit",
               [prom(f"pgperf_host_cpu_usage_ratio{{{SEL}}}", WHO)],
               lines=[prom(live("cpu_usage_max_percent"), "{{instance}} maximum")],
               steps=above("cpu_usage_max_percent"), min_val=0, max_val=1, w=8),
        series("CPU time by mode", "CPU seconds per second of the host by mode (user, system, iowait ...), summed "
               "over all CPUs.", "s",
               [prom(f"sum by ({BY}, mode) (rate(pgperf_host_cpu_seconds_total{{{SEL}, mode!=\"idle\"}}[$__rate_interval]))",
                     f"{WHO} {{{{mode}}}}")], stack=True, min_val=0, w=8),
        series("Memory usage", "Memory in use on the host (total minus available). Dashed: the maximum "
               "(pgperf_threshold_memory_usage_max_ratio).", "percentunit",
               [prom(f"pgperf_host_memory_usage_ratio{{{SEL}}}", WHO)],
               lines=[prom(live("memory_usage_max_percent"), "{{instance}} maximum")],
               steps=above("memory_usage_max_percent"), min_val=0, max_val=1, w=8),
        series("Disk usage", "Used share of the filesystem holding the data directory. Dashed: the maximum "
               "(pgperf_threshold_disk_usage_max_ratio).", "percentunit",
               [prom(f"pgperf_host_disk_usage_ratio{{{SEL}}}", f"{WHO} {{{{path}}}}")],
               lines=[prom(live("disk_usage_max_percent"), "{{instance}} maximum")],
               steps=above("disk_usage_max_percent"), min_val=0, max_val=1, w=8),
        series("Disk space", "Space used and size of the filesystem holding the data directory.", "bytes", [
            prom(f"pgperf_host_disk_used_bytes{{{SEL}}}", f"{WHO} used"),
        ], lines=[prom(f"pgperf_host_disk_total_bytes{{{SEL}}}", f"{WHO} size")], min_val=0, w=8),
        series("Disk growth", "Growth of the used space, bytes per second (slope over the last hour); negative when "
               "space is freed.", "Bps", [prom(f"deriv(pgperf_host_disk_used_bytes{{{SEL}}}[1h])", f"{WHO} {{{{path}}}}")],
               w=8),
        single("Time until disk full", "At the growth rate of the last 6 hours (the rule PgperfDiskFillingUp's), "
               "when the filesystem is full. Red within the horizon of the "
               f"{PROFILE} profile; 'not filling' when the disk does not grow.", "s",
               [prom(f"(pgperf_host_disk_total_bytes{{{SEL}}} - pgperf_host_disk_used_bytes{{{SEL}}}) / "
                     f"(deriv(pgperf_host_disk_used_bytes{{{SEL}}}[6h]) > 0)", f"{WHO} {{{{path}}}}", instant=True)],
               steps=[(None, RED), (limit("disk_full_within_hours"), GREEN)], no_value="not filling", w=8, h=8),
        series("Network", "Bytes per second sent (negative) and received on all interfaces of the host.", "Bps", [
            prom(f"-rate(pgperf_host_network_sent_bytes_total{{{SEL}}}[$__rate_interval])", f"{WHO} sent"),
            prom(f"rate(pgperf_host_network_received_bytes_total{{{SEL}}}[$__rate_interval])", f"{WHO} received"),
        ], w=8),
        series("Database size", "Size of each selected database (pg_database_size, every "
               "collectors.database_size.interval).", "bytes",
               [prom(f"pg_database_size_bytes{{{DB}}}", f"{{{{datname}}}} ({WHO})")], min_val=0, w=8),
        series("Database growth", "Growth of each database, bytes per second (slope over the last hour).", "Bps",
               [prom(f"deriv(pg_database_size_bytes{{{DB}}}[1h])", f"{{{{datname}}}} ({WHO})")], w=8),
    )
    board.row(
        "Connections",
        series("Connection utilization", "Client backends against max_connections. Dashed: the warning and critical "
               "utilizations of each instance (pgperf_threshold_connection_utilization_*).", "percentunit",
               [prom(f"pg_stat_activity_connection_utilization_ratio{{{SEL}}}", WHO)],
               lines=[prom(live("connection_utilization_warning_percent"), "{{instance}} warning"),
                      prom(live("connection_utilization_critical_percent"), "{{instance}} critical")],
               steps=above("connection_utilization_critical_percent", "connection_utilization_warning_percent"),
               min_val=0, max_val=1, w=8),
        series("Connections by database and state", "Sessions per database and state.", "short",
               [prom(f"sum by ({BY}, datname, state) (pg_stat_activity_count{{{DB}}})", "{{datname}} {{state}} (" + WHO + ")")],
               stack=True, min_val=0, w=8),
        series("Connections per role", "Client connections open by each role that can log in, and connections still "
               "available to non-superusers.", "short", [
                   prom(f"pg_roles_connections{{{SEL}}}", f"{{{{rolname}}}} ({WHO})"),
                   prom(f"pg_stat_activity_connections_available{{{SEL}}}", f"available ({WHO})"),
               ], min_val=0, w=8),
        series("Idle in transaction", "How long the oldest session idle inside a transaction has been idle, per "
               "database: it holds locks and stops VACUUM. Dashed: the threshold "
               "(pgperf_threshold_idle_in_transaction_seconds).", "s",
               [prom(f"pg_stat_activity_oldest_idle_in_transaction_age_seconds{{{DB}}}", f"{{{{datname}}}} ({WHO})")],
               lines=[prom(live("idle_in_transaction_seconds"), "{{instance}} threshold")], min_val=0, w=8),
        series("Oldest transaction", "Age of the oldest open transaction per database and state.", "s",
               [prom(f"max by ({BY}, datname) (pg_stat_activity_max_tx_duration{{{DB}}})", f"{{{{datname}}}} ({WHO})")],
               min_val=0, w=8),
        series("Backends by type", "Server processes by backend type (client backends, autovacuum workers, "
               "walsenders ...).", "short",
               [prom(f"pg_stat_activity_backends{{{SEL}}}", f"{{{{backend_type}}}} ({WHO})")], stack=True, min_val=0, w=8),
    )
    board.row(
        "Locks and blocking",
        series("Locks by mode", "Locks held or awaited, by mode, in the selected databases.", "short",
               [prom(f"sum by ({BY}, mode) (pg_locks_count{{{DB}}})", f"{{{{mode}}}} ({WHO})")], stack=True, min_val=0, w=8),
        series("Blocked sessions", "Sessions waiting for a lock held by another session (pg_blocking_pids), and "
               "sessions waiting for any heavyweight lock.", "short", [
                   prom(f"pg_locks_blocked_sessions{{{DB}}}", f"blocked {{{{datname}}}} ({WHO})"),
                   prom(f"pg_stat_activity_waiting_on_lock{{{DB}}}", f"waiting {{{{datname}}}} ({WHO})"),
               ], min_val=0, w=8),
        series("Longest lock wait", "How long the session blocked the longest has been waiting, per database.", "s",
               [prom(f"pg_locks_longest_wait_seconds{{{DB}}}", f"{{{{datname}}}} ({WHO})")], min_val=0, w=8),
        series("Deadlocks", "Deadlocks detected per rate interval; PostgreSQL cancels a transaction to break each "
               "(PgperfDeadlocks).", "short",
               [prom(f"sum by ({BY}, datname) (increase(pg_stat_database_deadlocks{{{DB}}}[$__rate_interval]))",
                     f"{{{{datname}}}} ({WHO})")], bars=True, min_val=0, w=12),
        series("Temporary files", "Bytes written to temporary files per second (sorts and hashes over work_mem).",
               "Bps", [prom(f"sum by ({BY}, datname) (rate(pg_stat_database_temp_bytes{{{DB}}}[$__rate_interval]))",
                            f"{{{{datname}}}} ({WHO})")], min_val=0, w=12),
    )
    board.row(
        "Checkpoints and WAL",
        series("Checkpoints", "Timed checkpoints (checkpoint_timeout) and requested ones (max_wal_size reached, "
               "CHECKPOINT), per minute.", "opm", [
                   prom(f"rate(pg_stat_bgwriter_checkpoints_timed_total{{{SEL}}}[$__rate_interval]) * 60", f"{WHO} timed"),
                   prom(f"rate(pg_stat_bgwriter_checkpoints_req_total{{{SEL}}}[$__rate_interval]) * 60", f"{WHO} requested"),
               ], bars=True, min_val=0, w=8),
        series("Requested checkpoints share", "Share of the last hour's checkpoints that were requested rather than "
               "timed. Dashed: the maximum (pgperf_threshold_checkpoints_requested_max_ratio).", "percentunit",
               [prom(f"increase(pg_stat_bgwriter_checkpoints_req_total{{{SEL}}}[1h]) / "
                     f"(increase(pg_stat_bgwriter_checkpoints_req_total{{{SEL}}}[1h]) + "
                     f"increase(pg_stat_bgwriter_checkpoints_timed_total{{{SEL}}}[1h]) > 0)", WHO)],
               lines=[prom(live("checkpoints_requested_max_percent"), "{{instance}} maximum")],
               steps=above("checkpoints_requested_max_percent"), min_val=0, max_val=1, w=8),
        series("Checkpoint write and sync time", "Time the checkpointer spent writing and syncing files, seconds per "
               "second.", "s", [
                   prom(f"rate(pg_stat_bgwriter_checkpoint_write_time_total{{{SEL}}}[$__rate_interval]) / 1000", f"{WHO} write"),
                   prom(f"rate(pg_stat_bgwriter_checkpoint_sync_time_total{{{SEL}}}[$__rate_interval]) / 1000", f"{WHO} sync"),
               ], min_val=0, w=8),
        series("Buffers written", "Shared buffers written per second by checkpoints and by the background writer, "
               "and buffers allocated.", "ops", [
                   prom(f"rate(pg_stat_bgwriter_buffers_checkpoint_total{{{SEL}}}[$__rate_interval])", f"{WHO} checkpoints"),
                   prom(f"rate(pg_stat_bgwriter_buffers_clean_total{{{SEL}}}[$__rate_interval])", f"{WHO} background writer"),
                   prom(f"rate(pg_stat_bgwriter_buffers_alloc_total{{{SEL}}}[$__rate_interval])", f"{WHO} allocated"),
               ], min_val=0, w=8),
        series("WAL generated", "Bytes of WAL written per second (pg_stat_wal, PostgreSQL 14+).", "Bps",
               [prom(f"rate(pg_stat_wal_bytes_total{{{SEL}}}[$__rate_interval])", WHO)], min_val=0, w=8),
        series("WAL on disk", "Size of pg_wal, and WAL retained by each replication slot.", "bytes", [
            prom(f"pg_wal_size_bytes{{{SEL}}}", f"{WHO} pg_wal"),
            prom(f"pg_replication_slot_retained_bytes{{{SEL}}}", f"{WHO} slot {{{{slot_name}}}}"),
        ], min_val=0, w=8),
    )
    board.row(
        "Vacuum and dead tuples",
        bars("Most dead tuples", "Tables with the most dead tuples (estimated, pg_stat_user_tables).", "short",
             [prom(f"topk(10, pg_stat_user_tables_n_dead_tup{{{DB}}})", "{{datname}}.{{schemaname}}.{{relname}}",
                   instant=True)]),
        bars("Highest dead tuple ratio", "Tables with the highest share of dead tuples. Red over the maximum of the "
             f"{PROFILE} profile (PgperfDeadTuplesHigh also needs 1000 dead tuples).", "percentunit",
             [prom(f"topk(10, pg_stat_user_tables_n_dead_tup{{{DB}}} / "
                   f"(pg_stat_user_tables_n_live_tup{{{DB}}} + pg_stat_user_tables_n_dead_tup{{{DB}}} > 0))",
                   "{{datname}}.{{schemaname}}.{{relname}}", instant=True)],
             steps=above("dead_tuple_max_percent"), max_val=1),
        bars("Longest without vacuum", "Tables whose last vacuum, manual or automatic, is the oldest (tables never "
             "vacuumed are not listed).", "s",
             [prom(f'topk(10, time() - max by ({BY}, datname, schemaname, relname) '
                   f'({{__name__=~"pg_stat_user_tables_last_(auto)?vacuum", {DB}}}))',
                   "{{datname}}.{{schemaname}}.{{relname}}", instant=True)]),
        series("Vacuums and analyzes", "Manual and automatic vacuums and analyzes per hour, all tables of each "
               "database.", "short", [
                   prom(f"sum by ({BY}, datname) (rate(pg_stat_user_tables_autovacuum_count{{{DB}}}[$__rate_interval]) "
                        f"+ rate(pg_stat_user_tables_vacuum_count{{{DB}}}[$__rate_interval])) * 3600",
                        f"vacuums {{{{datname}}}} ({WHO})"),
                   prom(f"sum by ({BY}, datname) (rate(pg_stat_user_tables_autoanalyze_count{{{DB}}}[$__rate_interval]) "
                        f"+ rate(pg_stat_user_tables_analyze_count{{{DB}}}[$__rate_interval])) * 3600",
                        f"analyzes {{{{datname}}}} ({WHO})"),
               ], bars=True, min_val=0, w=12),
        series("Transaction ID age", "Share of the 2^31 transaction IDs before wraparound used by each database's "
               "oldest unfrozen row. Dashed: the maximum (pgperf_threshold_xid_age_max_ratio).", "percentunit",
               [prom(f"pg_database_xid_wraparound_ratio{{{DB}}}", f"{{{{datname}}}} ({WHO})")],
               lines=[prom(live("xid_age_max_percent"), "{{instance}} maximum")],
               steps=above("xid_age_max_percent"), min_val=0, w=12),
    )
    return board.build()


def alerts() -> model.Dashboard:
    board = Board("pgperf-alerts", "pgperf / Alerts and reports",
                  "Alerts firing now (Prometheus), their history and lifecycle as pgperf recorded it "
                  "(performance_alerts) and the performance reports (performance_reports).", sql=True)
    board.textbox("pgperf_url", "pgperf URL", "http://localhost:9187",
                  "Base URL of pgperf as the browser reaches it, for the links to its HTML reports")
    alert_filter = " AND ".join([
        _match("labels->>'job'", "job"), _match("labels->>'instance'", "instance"), _match("target", "target"),
    ])
    severity_colours = {"critical": RED, "error": RED, "warning": ORANGE, "info": BLUE}
    status_colours = {"firing": RED, "acknowledged": ORANGE, "resolved": GREEN}
    board.row(
        "Now",
        single("Firing in Prometheus", "pgperf alerts firing now, as Prometheus evaluates them (ALERTS).", "short",
               [prom(f"count({FIRING}) or vector(0)", "firing", instant=True)], steps=[(None, GREEN), (1, ORANGE)]),
        single("Open in pgperf", "Alerts pgperf recorded as firing or acknowledged and not resolved yet "
               "(performance_alerts).", "short", [Sql(f"""
                   SELECT count(*) FILTER (WHERE status = 'firing') AS firing,
                          count(*) FILTER (WHERE status = 'acknowledged') AS acknowledged
                     FROM performance_alerts
                    WHERE status <> 'resolved' AND {alert_filter}
               """)], steps=[(None, GREEN), (1, ORANGE)], text_mode=common.BigValueTextMode.VALUE_AND_NAME, w=6),
        single("Time to acknowledge", "Mean time from firing to acknowledgement of the alerts fired in the time "
               "range.", "s", [Sql(f"""
                   SELECT avg(extract(epoch FROM acknowledged_at - "timestamp")) AS "time to acknowledge"
                     FROM performance_alerts
                    WHERE $__timeFilter("timestamp") AND acknowledged_at IS NOT NULL AND {alert_filter}
               """)], no_value="none acknowledged", w=4),
        single("Time to resolve", "Mean time from firing to resolution of the alerts fired in the time range.", "s",
               [Sql(f"""
                   SELECT avg(extract(epoch FROM resolved_at - "timestamp")) AS "time to resolve"
                     FROM performance_alerts
                    WHERE $__timeFilter("timestamp") AND resolved_at IS NOT NULL AND {alert_filter}
               """)], no_value="none resolved", w=4),
        note("Alert lifecycle", "Where the alerts come from and how to act on them.", """
            Prometheus evaluates the rules of `prometheus/rules/` and sends alerts to Alertmanager, which notifies
            by severity and always also pgperf's webhook: pgperf records each alert episode in `performance_alerts`.
            Acknowledge with `pgperf alerts ack ID --by NAME` (creates an Alertmanager silence) and resolve by hand
            with `pgperf alerts resolve ID --by NAME`; an alert whose condition clears is resolved by `alertmanager`.
            What to do for each alert: [docs/runbook.md](https://github.com/pgperf/pgperf/blob/main/docs/runbook.md).
        """, w=6, h=4),
        grid("Firing now", "pgperf alerts firing now in Prometheus with their labels.", "none",
             [prom(FIRING, instant=True, table_format=True)], hide=["Time", "Value", "__name__", "alertstate"], h=6,
             columns={"severity": {"mappings": severity_colours, "color": True}}),
    )
    board.row(
        "History",
        grid("Alert history", "Alerts pgperf recorded (performance_alerts) that fired in the time range or are still "
             "open, newest first: status, who acknowledged and resolved them and when ('alertmanager' when the "
             "condition cleared).", "short", [Sql(f"""
                 SELECT "timestamp" AS fired_at, status, severity, metric AS alert, target, message,
                        current_value, threshold_value, acknowledged_by, acknowledged_at,
                        resolved_by, resolved_at, alert_id
                   FROM performance_alerts
                  WHERE ($__timeFilter("timestamp") OR status <> 'resolved') AND {alert_filter}
                  ORDER BY "timestamp" DESC
                  LIMIT 1000
             """)], h=10, columns={
                 "status": {"mappings": status_colours, "color": True},
                 "severity": {"mappings": severity_colours, "color": True},
                 "message": {"width": 360},
             }),
        series("Alerts fired", "Alerts fired per hour, by severity (performance_alerts).", "short", [Sql(f"""
                 SELECT $__timeGroupAlias("timestamp", '1h'), severity AS metric, count(*) AS value
                   FROM performance_alerts
                  WHERE $__timeFilter("timestamp") AND {alert_filter}
                  GROUP BY 1, 2
                  ORDER BY 1
             """, "time_series")], bars=True, stack=True, min_val=0),
        grid("Most frequent alerts", "Alerts that fired most often in the time range, with how many were "
             "acknowledged and how long they lasted on average.", "short", [Sql(f"""
                 SELECT metric AS alert, severity, count(*) AS fired,
                        count(*) FILTER (WHERE acknowledged) AS acknowledged,
                        avg(extract(epoch FROM coalesce(resolved_at, now()) - "timestamp")) AS mean_duration
                   FROM performance_alerts
                  WHERE $__timeFilter("timestamp") AND {alert_filter}
                  GROUP BY metric, severity
                  ORDER BY fired DESC
                  LIMIT 20
             """)], w=12, columns={"mean_duration": {"unit": "s"},
                                   "severity": {"mappings": severity_colours, "color": True}}),
    )
    board.row(
        "Reports",
        grid("Reports", "Performance reports in the store (performance_reports), newest first, whatever the time "
             "range. Click an id to open the report in pgperf (the pgperf URL variable).", "none", [Sql(f"""
                 SELECT report_id, kind, target, period_start, period_end, generated_at
                   FROM performance_reports
                  WHERE {_match("target", "target")}
                  ORDER BY generated_at DESC
                  LIMIT 200
             """)], columns={"report_id": {"links": [_link("Open report ${__value.raw}",
                                                           "${pgperf_url}/reports/${__value.raw}", blank=True)]}}),
    )
    return board.build()


def itself() -> model.Dashboard:
    board = Board("pgperf-self", "pgperf / pgperf itself",
                  "The exporter's own health: scrapes, sampling time per collector, collector errors, the "
                  "sample store's writes, spool and dropped samples.", refresh="30s")
    board.row(
        "Exporter",
        single("Exporter up", "Whether Prometheus could scrape pgperf (up).", "none",
               [prom('up{job=~"$job", instance=~"$instance"}', "{{instance}}", instant=True)],
               mappings={"0": ("down", RED), "1": ("up", GREEN)}, steps=[(None, RED), (1, GREEN)]),
        single("Last sample", "Time since pgperf's last sample. Red after three sampling intervals "
               "(PgperfExporterStale).", "s",
               [prom(f"time() - pgperf_last_sample_timestamp_seconds{{{SEL}}}", WHO, instant=True)],
               steps=[(None, GREEN), (3 * _profile_interval(), RED)]),
        single("Sampling interval", "Configured sampling interval.", "s",
               [prom(f"pgperf_sampling_interval_seconds{{{SEL}}}", WHO, instant=True)]),
        single("Profile", "Configuration profile of each exporter.", "none",
               [prom('pgperf_profile_info{job=~"$job", instance=~"$instance"}', "{{profile}} ({{instance}})",
                     instant=True)], text_mode=common.BigValueTextMode.NAME),
        single("pgperf version", "pgperf version of each exporter.", "none",
               [prom('pgperf_build_info{job=~"$job", instance=~"$instance"}', "{{version}} ({{instance}})",
                     instant=True)], text_mode=common.BigValueTextMode.NAME),
        single("Store", "Whether the last write to the sample store succeeded.", "none",
               [prom('pgperf_store_up{job=~"$job", instance=~"$instance"}', "{{instance}}", instant=True)],
               mappings={"0": ("down", RED), "1": ("up", GREEN)}, steps=[(None, RED), (1, GREEN)]),
    )
    board.row(
        "Sampling",
        series("Sampling duration", "Time each sample took, all collectors included. Dashed: the sampling interval; "
               "a sample longer than it skips the next tick (an overrun).", "s",
               [prom(f"pgperf_sampling_duration_seconds{{{SEL}}}", WHO)],
               lines=[prom(f"pgperf_sampling_interval_seconds{{{SEL}}}", f"{WHO} interval")], min_val=0),
        series("Sampling duration per collector", "Time each collector took in each sample (database-scoped "
               "collectors: the sum over databases).", "s",
               [prom(f"pg_scrape_collector_duration_seconds{{{SEL}}}", f"{{{{collector}}}} ({WHO})")],
               stack=True, min_val=0),
        series("Collector errors", "Collectors that failed in the last sample, and failures per rate interval by "
               "collector (timeouts, query errors: PgperfCollectorFailing).", "short", [
                   prom(f"sum by ({BY}) (1 - pg_scrape_collector_success{{{SEL}}})", f"{WHO} failing now"),
                   prom(f"sum by ({BY}, collector) (increase(pgperf_collector_errors_total{{{SEL}}}[$__rate_interval]))",
                        f"{{{{collector}}}} errors ({WHO})"),
               ], bars=True, min_val=0, w=8),
        series("Sampling overruns", "Sampling ticks skipped per rate interval because the previous sample was still "
               "running (PgperfSamplingOverruns).", "short",
               [prom(f"increase(pgperf_sampling_overruns_total{{{SEL}}}[$__rate_interval])", WHO)],
               bars=True, min_val=0, w=8),
        series("Database visits", "Whether database-scoped collectors could connect to each database (1) or not (0).",
               "short", [prom(f"pgperf_database_visit_success{{{DB}}}", f"{{{{datname}}}} ({WHO})")],
               min_val=0, max_val=1, w=8),
        grid("Disabled collectors", "Collectors disabled on a server, with the reason (docs/metrics.md, "
             "PgperfCollectorDisabled).", "none",
             [prom(f"pgperf_collector_disabled{{{SEL}}} == 1", instant=True, table_format=True)],
             hide=["Time", "Value", "__name__"], h=5),
    )
    store = 'job=~"$job", instance=~"$instance"'
    board.row(
        "Store",
        series("Store write time", "Time the last sample took to write to the store (one transaction, COPY).", "s",
               [prom(f"pgperf_store_write_duration_seconds{{{store}}}", "{{instance}}")], min_val=0, w=8),
        series("Rows written", "Rows written to the store per second, by table.", "ops",
               [prom(f"sum by (job, instance, table) (rate(pgperf_store_rows_written_total{{{store}}}[$__rate_interval]))",
                     "{{table}} ({{instance}})")], stack=True, min_val=0, w=8),
        series("Spool depth", "Samples waiting in the on-disk spool while the store is unreachable or behind.",
               "short", [prom(f"pgperf_store_spool_samples{{{store}}}", "{{instance}}")], min_val=0, w=8),
        series("Spool size", "Size of the on-disk spool; at store.spool_max_bytes the oldest samples are dropped.",
               "bytes", [prom(f"pgperf_store_spool_bytes{{{store}}}", "{{instance}}")], min_val=0, w=8),
        series("Dropped and rejected samples", "Samples dropped at the spool's bound and samples the store refused "
               "(kept in the spool's rejected/ directory), per rate interval.", "short", [
                   prom(f"increase(pgperf_store_spool_dropped_samples_total{{{store}}}[$__rate_interval])",
                        "dropped ({{instance}})"),
                   prom(f"increase(pgperf_store_rejected_samples_total{{{store}}}[$__rate_interval])",
                        "rejected ({{instance}})"),
               ], bars=True, min_val=0, w=8),
        series("Store errors", "Whether the store is unreachable now, and failed attempts to reach or write it per "
               "rate interval, by kind of error.", "short", [
                   prom(f"1 - pgperf_store_up{{{store}}}", "unreachable ({{instance}})"),
                   prom(f"sum by (job, instance, kind) (increase(pgperf_store_errors_total{{{store}}}[$__rate_interval]))",
                        "{{kind}} ({{instance}})"),
               ], bars=True, min_val=0, w=8),
    )
    board.row(
        "Process",
        series("Scrape duration", "Time Prometheus took to scrape pgperf (served from memory, no database round "
               "trip).", "s", [prom(f"scrape_duration_seconds{{{store}}}", "{{instance}}")], min_val=0, w=8),
        series("Memory", "Resident memory of the pgperf process.", "bytes",
               [prom(f"process_resident_memory_bytes{{{store}}}", "{{instance}}")], min_val=0, w=8),
        series("CPU", "CPU seconds per second used by the pgperf process.", "s",
               [prom(f"rate(process_cpu_seconds_total{{{store}}}[$__rate_interval])", "{{instance}}")], min_val=0, w=8),
    )
    return board.build()


def _profile_interval() -> float:
    value = str(load_profile(PROFILE)["sampling_interval"])
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", value)
    assert match, f"unexpected sampling_interval {value!r}"
    return float(match.group(1)) * units[match.group(2) or "s"]


#: File name (under grafana/dashboards) -> builder.
DASHBOARDS: dict[str, Callable[[], model.Dashboard]] = {
    "overview.json": overview,
    "queries.json": queries,
    "resources.json": resources,
    "alerts.json": alerts,
    "self.json": itself,
}


def build() -> dict[str, dict[str, Any]]:
    """Every dashboard as the JSON object Grafana reads, by file name."""
    out = {}
    for name, make in DASHBOARDS.items():
        data = json.loads(json.dumps(make(), cls=JSONEncoder))
        assert isinstance(data, dict)
        out[name] = data
    return out


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- the panel lists (README, docs/dashboards.md) -----------------------------------------

def _panels(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in data["panels"] if p["type"] != "row"]


def readme_section() -> str:
    """The README's list of dashboards and their panels (between the markers)."""
    lines = [README_START]
    for data in build().values():
        titles = ", ".join(p["title"] for p in _panels(data))
        lines.append(f"- **{data['title'].removeprefix('pgperf / ')}** (`/d/{data['uid']}`): {titles}.")
    lines.append(README_END)
    return "\n".join(lines)


def dashboards_md() -> str:
    out = ["<!-- Generated by `make dashboards` (python -m tools.dashboards); do not edit by hand. -->",
           "", "# Dashboards", "",
           "Every panel of the Grafana dashboards in `grafana/dashboards/`, generated from "
           "`tools/dashboards.py`. Colours of stat, bar gauge and table cells use the "
           f"`{PROFILE}` profile; dashed threshold lines are the exporter's live `pgperf_threshold_*` values.", ""]
    for name, data in build().items():
        variables = ", ".join(f"`{v['name']}`" for v in data["templating"]["list"])
        out += [f"## {data['title']}", "", f"`grafana/dashboards/{name}`, UID `{data['uid']}`. {data['description']}", "",
                f"Variables: {variables}.", ""]
        for panel in data["panels"]:
            if panel["type"] == "row":
                if out[-1]:
                    out.append("")
                out += [f"### {panel['title']}", "", "| panel | type | unit | source | what it shows |",
                        "|---|---|---|---|---|"]
                continue
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "—")
            source = {PROMETHEUS_TYPE: "Prometheus", POSTGRES_TYPE: "store (SQL)"}.get(
                panel.get("datasource", {}).get("type", ""), "—")
            out.append(f"| {panel['title']} | {panel['type']} | `{unit}` | {source} | {panel['description']} |")
        out.append("")
    return "\n".join(out)


def _readme(current: str) -> str:
    start, end = current.find(README_START), current.find(README_END)
    if start < 0 or end < 0:
        raise SystemExit(f"README.md: the markers {README_START} / {README_END} are missing")
    return current[:start] + readme_section() + current[end + len(README_END):]


def generated(root: Path = ROOT) -> dict[str, str]:
    """Every generated file (path relative to *root*) with the content it should have."""
    files = {f"{DASHBOARD_DIR}/{name}": render(data) for name, data in build().items()}
    files["docs/dashboards.md"] = dashboards_md()
    files["README.md"] = _readme((root / "README.md").read_text())
    return files



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.dashboards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    parser.add_argument("--check", action="store_true", help="fail if a committed file is out of date")
    args = parser.parse_args(argv)
    return write_generated(args.root, generated(args.root), check=args.check, make_target="dashboards")

if __name__ == "__main__":
    sys.exit(main())
