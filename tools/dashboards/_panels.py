"""What every pgperf dashboard shares: the datasource and filter variables, the panel
builders, the profile's thresholds, links between dashboards.

Panels are built with grafana-foundation-sdk's builders behind five functions, one per
panel type the dashboards use (``series``, ``single``, ``bars``, ``grid``, ``note``), so
that every panel of a type looks the same on every dashboard; ``Board`` is a dashboard
with the common variables, links and panel ids.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, Literal, Self

from grafana_foundation_sdk.builders import bargauge, stat, table, text, timeseries
from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import prometheus as prometheus_builder
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prometheus_model
from grafana_foundation_sdk.models import text as text_model

from pgperf._types import parse_duration
from pgperf.config import load_profile
from pgperf.exposition import THRESHOLD_METRICS

__all__ = [
    "BLUE", "BY", "DB", "FIRING", "GREEN", "ORANGE", "POSTGRES", "POSTGRES_TYPE", "PROFILE", "PROMETHEUS",
    "PROMETHEUS_TYPE", "RED", "SEL", "WHO", "Board", "Panel", "Query", "Sql", "SqlQuery", "Steps", "above", "bars",
    "below", "grid", "legend", "limit", "link", "live", "note", "profile_interval", "prom", "series", "single", "sql_filter",
    "thresholds_read", "to_dashboard",
]

#: The profile whose values colour stat, bar gauge and table cells.
PROFILE = "production"
TAGS = ["pgperf"]

PROMETHEUS_TYPE = "prometheus"
POSTGRES_TYPE = "grafana-postgresql-datasource"
PROMETHEUS = model.DataSourceRef(type_val=PROMETHEUS_TYPE, uid="${datasource}")
POSTGRES = model.DataSourceRef(type_val=POSTGRES_TYPE, uid="${pgds}")

# Label filters of every query: the dashboard's variables. "target" is empty (and matched
# by the ".*" of "All") when an exporter serves a single target.
SEL = 'job=~"$job", instance=~"$instance", target=~"$target"'  # inside every selector's braces
DB = SEL + ', datname=~"$datname"'  # the same, for the families with a datname label
BY = "job, instance, target"  # what an aggregation keeps: one series per monitored server
WHO = "{{instance}} {{target}}"  # the end of every legend: which server a series is


def legend(label: str) -> str:
    """The legend of a series per value of *label*: ``{{datname}} ({{instance}} {{target}})``."""
    return f"{{{{{label}}}}} ({WHO})"


def sql_filter(column: str, variable: str) -> str:
    """SQL filter of *column* by a dashboard variable. The store's tables carry the pgperf
    target name, not Prometheus' job and instance: SQL panels filter on target (and on the
    alerts' labels) with the variables in regex form; with "All", Grafana substitutes the
    variable's custom all value (.*) unformatted."""
    return f"coalesce({column}, '') ~ '^(${{{variable}:regex}})$'"


RED, ORANGE, GREEN, BLUE = "red", "orange", "green", "blue"
Steps = Sequence[tuple[float | None, str]]
Query = cogbuilder.Builder[cogvariants.Dataquery]


# --- profile thresholds --------------------------------------------------------------------

_USED: set[str] = set()  # threshold keys read while building, for thresholds_read()


@cache
def _scales() -> dict[str, tuple[str, float]]:
    return {key: (metric, scale) for key, metric, scale, _ in THRESHOLD_METRICS}


def limit(key: str) -> float:
    """A threshold of ``PROFILE`` in the base unit of its ``pgperf_threshold_*`` metric."""
    _USED.add(key)
    value = float(load_profile(PROFILE)["thresholds"][key]) * _scales()[key][1]
    return round(value, 9)


def live(key: str) -> str:
    """The live threshold of each target, read as the rules read it."""
    _USED.add(key)
    return f"max by (job, instance, target) ({_scales()[key][0]}{{{SEL}}})"


def thresholds_read(make: Callable[[], object]) -> set[str]:
    """The profile thresholds (configuration keys) that *make* draws or colours with."""
    _USED.clear()
    make()
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


def profile_interval() -> float:
    """The sampling interval of ``PROFILE``, in seconds, parsed as the configuration parses it."""
    return float(parse_duration(load_profile(PROFILE)["sampling_interval"]))


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


# --- shared queries and links -------------------------------------------------------------

def link(title: str, url: str, *, blank: bool = False) -> dict[str, object]:
    """A data link of a panel or a table column (*blank*: opens in a new tab)."""
    return {"title": title, "url": url, "targetBlank": blank}


def to_dashboard(uid: str, **variables: str) -> str:
    """A relative link to another pgperf dashboard keeping the time range and the filters."""
    keep = "&".join(f"${{{v}:queryparam}}" for v in ("datasource", "job", "instance", "target"))
    extra = "".join(f"&var-{k}={v}" for k, v in variables.items())
    return f"/d/{uid}?${{__url_time_range}}&{keep}{extra}"


#: The pgperf alerts firing now, as Prometheus evaluates them.
FIRING = f'ALERTS{{alertstate="firing", alertname=~"Pgperf.*", {SEL}}}'
