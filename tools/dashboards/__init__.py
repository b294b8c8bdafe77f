"""The Grafana dashboards, generated with grafana-foundation-sdk (``make dashboards``).

Writes ``grafana/dashboards/*.json``, the panel list of the README's Grafana section and
``docs/dashboards.md``; a test regenerates them in memory and compares them with the
committed files, so an edit here without ``make dashboards`` fails the test suite.

One module per dashboard, in ``DASHBOARDS`` (the order of the README and the docs), each
built on the shared builders and helpers of ``_panels``:

* ``overview`` (overview.json): health at a glance, trends, the alerts firing now;
* ``queries`` (queries.json): pg_stat_statements, slow and long-running queries, the
  drill-down into one statement;
* ``resources`` (resources.json): the host, sizes, connections, locks, checkpoints and
  WAL, vacuum and dead tuples;
* ``health`` (health.json): wait events and blocking chains, VACUUM progress and
  transaction ID consumption, bloat, invalid, unused and redundant indexes, I/O by backend
  type, connection encryption;
* ``alerts`` (alerts.json): alerts now, their history in the store, the reports;
* ``itself`` (self.json): the exporter, its sampling and collectors, the store, the process.

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

How to add a panel (say, for a new collector's family)
------------------------------------------------------
1. Pick the dashboard module and the row the subject belongs to (``board.row(title,
   *panels)`` in the module's ``dashboard()``), or start a new row there.
2. Build the panel with the function of its type from ``_panels``: ``series`` (time
   series; ``lines=`` dashed threshold lines, ``marks=`` anomalies as red points),
   ``single`` (a stat tile per instance), ``bars`` (a top-N bar gauge), ``grid`` (a
   table), ``note`` (Markdown). Each takes a title, a description (Grafana's tooltip and
   docs/dashboards.md: what the value means, the alert that watches it), a Grafana unit
   (``percentunit``, ``s``, ``bytes``, ``Bps``, ``ops``, ``short`` ...) and its queries.
3. Queries: ``prom(expr, legend)`` for Prometheus; every selector carries ``{SEL}`` (or
   ``{DB}`` for a per-database family), aggregations keep ``by ({BY}, ...)``, legends end
   with ``WHO`` (``legend(label)`` for a series per value of a label); counters are read
   with ``rate()`` or ``increase()`` over ``$__rate_interval``; ``instant=True`` for stat,
   bar gauge and table panels. ``Sql(text)`` reads the store, filtered with
   ``sql_filter(column, variable)``.
4. Thresholds: ``lines=[prom(live(key), "{{instance}} maximum")]`` draws each instance's
   live threshold, ``steps=above(key)`` (or ``below``, ``limit``) colours with the
   profile's; *key* is a profile threshold (``THRESHOLD_METRICS``), and each one must be
   drawn or coloured by some panel.
5. ``make dashboards`` and commit the JSON files, README.md and docs/dashboards.md with the
   code. tests/test_dashboards.py lints the panels (types, units, descriptions, variables,
   metrics pgperf serves, read with the right function); tests/test_dashboards_contract.py
   runs every query against real servers and wants data: a query empty on a healthy test
   server (a condition, a feature of some PostgreSQL majors) needs an entry with its
   reason in grafana/contract-allowlist.yml.

For example, a per-database series with its threshold (the family and key invented)::

    series("Table bloat", "Estimated bloat of the most bloated table of each database. "
           "Dashed: the maximum (pgperf_threshold_bloat_max_ratio).", "percentunit",
           [prom(f"max by ({BY}, datname) (pg_table_bloat_ratio{{{DB}}})", legend("datname"))],
           lines=[prom(live("bloat_max_percent"), "{{instance}} maximum")],
           steps=above("bloat_max_percent"), min_val=0, w=8),

A new dashboard is a module with a ``dashboard()`` built on ``_panels.Board`` (uid
``pgperf-<name>``; ``sql=True`` when it reads the store), registered in ``DASHBOARDS``,
its uid added to ``UIDS`` in tests/test_dashboards.py.
Panel ids follow the order of the panels: nothing refers to them.

    python -m tools.dashboards            # write the files
    python -m tools.dashboards --check    # exit 1 if a committed file is stale
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from . import alerts, health, itself, overview, queries, resources
from ._panels import POSTGRES_TYPE, PROFILE, PROMETHEUS_TYPE, limit, thresholds_read

__all__ = [
    "DASHBOARDS", "POSTGRES_TYPE", "PROFILE", "PROMETHEUS_TYPE", "README_END", "README_START", "build",
    "dashboards_md", "generated", "limit", "readme_section", "render", "thresholds_used",
]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = "grafana/dashboards"
README_START = "<!-- dashboards: start -->"
README_END = "<!-- dashboards: end -->"

#: File name (under grafana/dashboards) -> the function building that dashboard.
DASHBOARDS: dict[str, Callable[[], model.Dashboard]] = {
    "overview.json": overview.dashboard,
    "queries.json": queries.dashboard,
    "resources.json": resources.dashboard,
    "health.json": health.dashboard,
    "alerts.json": alerts.dashboard,
    "self.json": itself.dashboard,
}

Boards = Mapping[str, dict[str, Any]]


def build() -> dict[str, dict[str, Any]]:
    """Every dashboard as the JSON object Grafana reads, by file name."""
    out = {}
    for name, make in DASHBOARDS.items():
        data = json.loads(json.dumps(make(), cls=JSONEncoder))
        assert isinstance(data, dict)
        out[name] = data
    return out


def thresholds_used() -> set[str]:
    """The profile thresholds (configuration keys) the dashboards draw or colour with."""
    return thresholds_read(build)


def render(data: dict[str, Any]) -> str:
    """One dashboard's file: stable key order, so that a diff shows what changed."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- the panel lists (README, docs/dashboards.md) -----------------------------------------

def _panels(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in data["panels"] if p["type"] != "row"]


def readme_section(boards: Boards) -> str:
    """The README's list of dashboards and their panels (between the markers)."""
    lines = [README_START]
    for data in boards.values():
        titles = ", ".join(p["title"] for p in _panels(data))
        lines.append(f"- **{data['title'].removeprefix('pgperf / ')}** (`/d/{data['uid']}`): {titles}.")
    lines.append(README_END)
    return "\n".join(lines)


def dashboards_md(boards: Boards) -> str:
    """docs/dashboards.md: every panel of every dashboard, by row, with its unit, source and description."""
    out = ["<!-- Generated by `make dashboards` (python -m tools.dashboards); do not edit by hand. -->",
           "", "# Dashboards", "",
           "Every panel of the Grafana dashboards in `grafana/dashboards/`, generated from "
           "`tools/dashboards/` (one module per dashboard). Colours of stat, bar gauge and table cells use the "
           f"`{PROFILE}` profile; dashed threshold lines are the exporter's live `pgperf_threshold_*` values.", ""]
    for name, data in boards.items():
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


def _readme(current: str, boards: Boards) -> str:
    start, end = current.find(README_START), current.find(README_END)
    if start < 0 or end < 0:
        raise SystemExit(f"README.md: the markers {README_START} / {README_END} are missing")
    return current[:start] + readme_section(boards) + current[end + len(README_END):]


def generated(root: Path = ROOT) -> dict[str, str]:
    """Every generated file (path relative to *root*) with the content it should have."""
    boards = build()
    files = {f"{DASHBOARD_DIR}/{name}": render(data) for name, data in boards.items()}
    files["docs/dashboards.md"] = dashboards_md(boards)
    files["README.md"] = _readme((root / "README.md").read_text(), boards)
    return files
