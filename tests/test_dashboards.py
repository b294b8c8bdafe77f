"""The Grafana part of the bundle, without servers: the committed dashboards are what the
generator (tools/dashboards/, one module per dashboard) produces, also through the command
line `make dashboards` runs; they pass the lint (current core panel types only,
datasources through variables only, a unit and a description on every panel, the common
variables), every alert's dashboard_url lands on a dashboard and variables that exist,
every metric a dashboard reads is one pgperf (or Prometheus) serves, read with the right
function, and the provisioning files declare what the dashboards select.

The same queries run against real servers in test_dashboards_contract.py.
"""

from __future__ import annotations

import copy
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import yaml

import grafana_json as gj
from pgperf.exposition import THRESHOLD_METRICS
from pgperf.store import STORE_METRICS
from test_rules import metric_type, selectors, tokens, type_problems
from tools import dashboards

ROOT = Path(__file__).resolve().parent.parent
PROVISIONING = ROOT / "grafana" / "provisioning"
UIDS = {"pgperf-overview", "pgperf-queries", "pgperf-resources", "pgperf-health", "pgperf-alerts", "pgperf-self"}
PANEL_TYPES = {"timeseries", "stat", "table", "bargauge", "text"}
COMMON_VARIABLES = ("datasource", "job", "instance", "target", "datname")
DATASOURCE_UIDS = {gj.PROMETHEUS_TYPE: "${datasource}", gj.POSTGRES_TYPE: "${pgds}"}
# Grafana unit ids the dashboards may use (a typo renders as a bare number).
UNITS = {"none", "short", "percentunit", "s", "ms", "bytes", "Bps", "ops", "opm"}
# Series pgperf does not define but Prometheus or prometheus-client serve.
OTHER_SERIES = {
    "ALERTS": "gauge", "up": "gauge", "scrape_duration_seconds": "gauge",
    "process_resident_memory_bytes": "gauge", "process_cpu_seconds_total": "counter",
} | {m.name: ("counter" if m.type == "counter" else "gauge") for m in STORE_METRICS}


def lint(dashboard: dict[str, Any]) -> list[str]:
    """What is wrong with one dashboard JSON, as readable messages (empty: nothing)."""
    problems = []
    uid = dashboard.get("uid")
    if not uid:
        problems.append("no uid")
    if not isinstance(dashboard.get("schemaVersion"), int) or dashboard["schemaVersion"] < 39:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')!r}: not a current dashboard model")
    variables = gj.variables(dashboard)
    for name in COMMON_VARIABLES:
        if name not in variables:
            problems.append(f"no {name} variable")
    if variables.get("datasource", {}).get("type") != "datasource" or variables.get("datasource", {}).get("query") != "prometheus":
        problems.append("the datasource variable must be a Prometheus datasource variable")
    if "pgds" in variables and (variables["pgds"]["type"], variables["pgds"]["query"]) != ("datasource", gj.POSTGRES_TYPE):
        problems.append("the pgds variable must be a PostgreSQL datasource variable")
    if not any(link.get("type") == "dashboards" and link.get("keepTime") and link.get("includeVars")
               for link in dashboard.get("links", [])):
        problems.append("no links to the other dashboards keeping time and variables")
    problems += [f"datasource {where}: {ds!r}" for where, ds in _datasources(dashboard, "") if not _variable_ref(ds)]
    ids = []
    for panel in dashboard.get("panels", []):
        ids.append(panel.get("id"))
        kind = panel.get("type")
        title = panel.get("title", "?")
        if kind == "row":
            continue
        if kind not in PANEL_TYPES:
            problems.append(f"{title}: panel type {kind!r} (deprecated or not core)")
        if not panel.get("description"):
            problems.append(f"{title}: no description")
        if kind == "text":
            continue
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if not unit:
            problems.append(f"{title}: no unit")
        elif unit not in UNITS:
            problems.append(f"{title}: unknown unit {unit!r}")
        queries = panel.get("targets", [])
        if not queries:
            problems.append(f"{title}: no query")
        refs = [q.get("refId") for q in queries]
        if len(set(refs)) != len(refs) or not all(refs):
            problems.append(f"{title}: refIds {refs}")
        for query in queries:
            if gj.is_sql(query):
                if "pgds" not in variables:
                    problems.append(f"{title}: SQL query without a pgds variable")
                if query.get("format") not in ("table", "time_series") or query.get("rawQuery") is not True:
                    problems.append(f"{title}: SQL query not a raw table/time_series query")
                if query.get("format") == "time_series" and not re.search(r'\btime"?\b|\$__timeGroupAlias', query["rawSql"]):
                    problems.append(f"{title}: time_series SQL query without a time column")
            elif not query.get("expr"):
                problems.append(f"{title}: Prometheus query without expr")
    if len(set(ids)) != len(ids) or None in ids:
        problems.append(f"panel ids not unique: {ids}")
    return problems


def _datasources(node: Any, where: str) -> list[tuple[str, Any]]:
    """(path, value) of every "datasource" key under *node*."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else key
            if key == "datasource":
                found.append((path, value))
            else:
                found += _datasources(value, path)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += _datasources(item, f"{where}[{index}]")
    return found


def _variable_ref(datasource: Any) -> bool:
    return isinstance(datasource, dict) and DATASOURCE_UIDS.get(datasource.get("type")) == datasource.get("uid")


@pytest.fixture(scope="module")
def committed() -> dict[str, dict[str, Any]]:
    return gj.load()


def test_committed_files_are_what_the_generator_produces() -> None:
    stale = [rel for rel, content in dashboards.generated().items() if (ROOT / rel).read_text() != content]
    assert not stale, f"run `make dashboards` and commit: {stale}"


def test_make_dashboards_writes_the_files_and_check_names_a_stale_one(tmp_path: Path) -> None:
    """`make dashboards` and its --check, through the command line they run."""
    (tmp_path / "README.md").write_text((ROOT / "README.md").read_text())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tools.dashboards", "--root", str(tmp_path), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    assert run("--check").returncode == 1  # nothing written yet
    written = run()
    assert written.returncode == 0, written.stderr
    for rel in dashboards.generated():
        assert (tmp_path / rel).read_text() == (ROOT / rel).read_text(), rel
    assert run("--check").returncode == 0
    (tmp_path / "grafana" / "dashboards" / "self.json").write_text("{}\n")
    stale = run("--check")
    assert stale.returncode == 1
    assert "out of date (run make dashboards): grafana/dashboards/self.json" in stale.stderr


def test_every_dashboard_module_is_registered() -> None:
    """A dashboard module left out of DASHBOARDS would silently build nothing."""
    modules = {m.name for m in pkgutil.iter_modules(dashboards.__path__) if not m.name.startswith("_")}
    registered = {make.__module__.removeprefix("tools.dashboards.") for make in dashboards.DASHBOARDS.values()}
    assert modules == registered
    assert len(registered) == len(dashboards.DASHBOARDS)  # one module per dashboard file


def test_five_dashboards_with_the_uids_alerts_link_to(committed: dict[str, dict[str, Any]]) -> None:
    assert set(committed) == UIDS
    assert {p.name for p in gj.DASHBOARDS.glob("*.json")} == set(dashboards.DASHBOARDS)


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_dashboard_passes_the_lint(committed: dict[str, dict[str, Any]], uid: str) -> None:
    assert lint(committed[uid]) == []


def _broken(committed: dict[str, dict[str, Any]], change: str) -> dict[str, Any]:
    board = copy.deepcopy(committed["pgperf-overview"])
    panel = next(p for p in board["panels"] if p["type"] == "timeseries")
    if change == "graph":
        panel["type"] = "graph"
    elif change == "singlestat":
        panel["type"] = "singlestat"
    elif change == "table-old":
        panel["type"] = "table-old"
    elif change == "fixed uid":
        panel["targets"][0]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    elif change == "named datasource":
        panel["datasource"] = "Prometheus"
    elif change == "no unit":
        del panel["fieldConfig"]["defaults"]["unit"]
    elif change == "no description":
        panel["description"] = ""
    elif change == "no instance variable":
        board["templating"]["list"] = [v for v in board["templating"]["list"] if v["name"] != "instance"]
    return board


@pytest.mark.parametrize(("change", "message"), [
    ("graph", "panel type 'graph'"),
    ("singlestat", "panel type 'singlestat'"),
    ("table-old", "panel type 'table-old'"),
    ("fixed uid", "P1809F7CD0C75ACF3"),
    ("named datasource", "'Prometheus'"),
    ("no unit", "no unit"),
    ("no description", "no description"),
    ("no instance variable", "no instance variable"),
])
def test_the_lint_rejects(committed: dict[str, dict[str, Any]], change: str, message: str) -> None:
    problems = lint(_broken(committed, change))
    assert len(problems) == 1 and message in problems[0], problems


def test_no_datasource_uid_anywhere_but_variables() -> None:
    """Belt and braces over the lint: not even a provisioned UID appears in the files."""
    provisioned = [d["uid"] for d in yaml.safe_load((PROVISIONING / "datasources" / "pgperf.yml").read_text())["datasources"]]
    for path in gj.DASHBOARDS.glob("*.json"):
        text = path.read_text()
        assert not [uid for uid in provisioned if uid in text], path
        assert "${DS_" not in text and "__inputs" not in text, path


@pytest.mark.parametrize("where,annotations", list(gj.rule_annotations()), ids=lambda x: str(x)[:60])
def test_alert_dashboard_url_lands_on_a_dashboard_and_its_variables(
        committed: dict[str, dict[str, Any]], where: str, annotations: dict[str, str]) -> None:
    url = annotations["dashboard_url"]
    # Go template actions ({{ ... }}) stand for label values; what is left is the URL's shape.
    shape = re.sub(r"\{\{.*?\}\}", "", url)
    match = re.search(r"/d/([\w-]+)\?(.*)$", shape)
    assert match, url
    uid, query = match.groups()
    assert uid in committed, f"{where}: no dashboard {uid}"
    names = [key.removeprefix("var-") for key, _ in parse_qsl(query, keep_blank_values=True)]
    assert names and all(key.startswith("var-") for key, _ in parse_qsl(query, keep_blank_values=True))
    missing = set(names) - set(gj.variables(committed[uid]))
    assert not missing, f"{where}: {uid} has no variable {missing}"


def test_every_variable_a_query_uses_is_defined(committed: dict[str, dict[str, Any]]) -> None:
    builtin = {"__rate_interval", "__interval", "__range", "__timeFilter", "__timeGroupAlias", "__value",
               "__field", "__data", "__url_time_range", "__all"}
    problems = []
    for uid, board in committed.items():
        defined = set(gj.variables(board))
        text = " ".join(t.text for t in gj.targets(board))
        for name in re.findall(r"\$\{?(\w+)", text):
            if name not in defined and name not in builtin:
                problems.append(f"{uid}: ${name}")
    assert not problems, problems


def test_every_metric_the_dashboards_read_is_served_and_read_right(committed: dict[str, dict[str, Any]]) -> None:
    unknown, wrong = [], []
    for board in committed.values():
        for target in gj.targets(board):
            if target.kind == "sql":
                continue
            expr = target.text
            if target.kind == "label_values":  # reads label names only: any type will do
                expr = gj.label_values(expr)[0]
            for _, name in selectors(tokens(expr)):
                names = [name] if not name.startswith("~") else [
                    n for n in ("pg_stat_user_tables_last_vacuum", "pg_stat_user_tables_last_autovacuum")
                    if re.fullmatch(name[1:], n)]
                if not names or any(metric_type(n) is None and n not in OTHER_SERIES for n in names):
                    unknown.append(f"{target}: {name}")
            if target.kind == "label_values":
                continue
            wrong += [f"{target}: {p}" for p in type_problems(expr)]
            # counters pgperf's registry does not hold (the store's, the process') read raw
            for _, name in selectors(tokens(expr)):
                if OTHER_SERIES.get(name) == "counter" and not re.search(rf"(rate|increase)\({name}\b", expr):
                    wrong.append(f"{target}: the counter {name} read without rate() or increase()")
    assert not unknown, unknown
    assert not wrong, wrong


def test_thresholds_are_read_per_target_and_every_profile_threshold_is_used(
        committed: dict[str, dict[str, Any]]) -> None:
    problems = []
    for board in committed.values():
        for target in gj.targets(board):
            for m in re.finditer(r"pgperf_threshold_\w+", target.text):
                if not re.search(r"max by \(job, instance, target\) \($", target.text[:m.start()]):
                    problems.append(f"{target}: {m.group()} not read as max by (job, instance, target) (...)")
    assert not problems, problems
    keys = {key for key, _, _, _ in THRESHOLD_METRICS}
    assert dashboards.thresholds_used() == keys


def test_stat_and_bar_colours_come_from_the_profile(committed: dict[str, dict[str, Any]]) -> None:
    """The cache hit ratio's red/green boundary is the production profile's minimum."""
    minimum = dashboards.limit("cache_hit_ratio_min")
    assert minimum == 0.98  # production: cache_hit_ratio_min 98 (%)
    panel = next(p for p in gj.panels(committed["pgperf-overview"]) if p["title"] == "Cache hit ratio")
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps == [{"color": "red", "value": None}, {"color": "green", "value": minimum}]


def test_provisioning_declares_the_datasources_the_dashboards_select() -> None:
    data = yaml.safe_load((PROVISIONING / "datasources" / "pgperf.yml").read_text())
    assert data["apiVersion"] == 1
    sources = {d["type"]: d for d in data["datasources"]}
    assert set(sources) == {gj.PROMETHEUS_TYPE, gj.POSTGRES_TYPE, "alertmanager"}
    assert len({d["uid"] for d in data["datasources"]}) == 3
    assert sources[gj.PROMETHEUS_TYPE]["url"] == "http://prometheus:9090" and sources[gj.PROMETHEUS_TYPE]["isDefault"]
    assert sources["alertmanager"]["url"] == "http://alertmanager:9093"
    assert sources["alertmanager"]["jsonData"]["implementation"] == "prometheus"
    pg = sources[gj.POSTGRES_TYPE]
    assert (pg["url"], pg["user"], pg["jsonData"]["database"]) == ("postgres:5432", "pgperf_reader", "postgres")
    assert pg["secureJsonData"]["password"] == "$PGPERF_READER_PASSWORD"
    # The Prometheus datasource's interval matches the committed scrape interval.
    prometheus = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    assert sources[gj.PROMETHEUS_TYPE]["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"]

    providers = yaml.safe_load((PROVISIONING / "dashboards" / "pgperf.yml").read_text())["providers"]
    assert [p["type"] for p in providers] == ["file"]
    path = providers[0]["options"]["path"]
    readme = (ROOT / "README.md").read_text()
    assert f"./grafana/dashboards:{path}:ro" in readme, "the README's mount must match the provider's path"


def test_readme_lists_every_panel(committed: dict[str, dict[str, Any]]) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(dashboards.README_START):readme.index(dashboards.README_END)]
    for board in committed.values():
        line = next(line for line in section.splitlines() if f"/d/{board['uid']}" in line)
        for panel in gj.panels(board):
            assert panel["title"] in line, f"{board['uid']}: {panel['title']} missing from the README"


def test_reader_role_script_grants_only_reads() -> None:
    text = (ROOT / "docs" / "setup-reader.sql").read_text()
    grants = re.findall(r"^\s*(?:EXECUTE format\(')?(GRANT [^;']+)", text, re.M)
    assert grants and all(re.match(r"GRANT (SELECT|USAGE|CONNECT) ", g) for g in grants), grants
    assert "default_transaction_read_only = on" in text
