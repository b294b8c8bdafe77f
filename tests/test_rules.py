"""The Prometheus half of the bundle: prometheus.yml, the rules and their promtool tests.

Besides running promtool, these tests read every rule expression and annotation template:
each metric they name must be one pgperf serves (or is about to serve, PENDING below) with
the right type for the function applied to it, each threshold comes from the exporter's
``pgperf_threshold_*`` gauges through a join that works with one target or several, and
each alert has its runbook section, its dashboard link and promtool cases that show it
firing and not firing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgperf import collectors
from pgperf.exposition import SELF_METRICS, THRESHOLD_METRICS
from pgperf.insight.service import INSIGHT_METRICS
from pgperf.store import STORE_METRICS

pytestmark = pytest.mark.bundle

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "rules" / "tests").glob("*.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/pgperf/pgperf/blob/main/docs/runbook.md#"
DASHBOARDS = ("pgperf-overview", "pgperf-queries", "pgperf-resources", "pgperf-health", "pgperf-alerts", "pgperf-self")
SEVERITIES = ("critical", "error", "warning", "info")
CATEGORIES = ("query_performance", "cache", "resources", "connections", "errors", "availability",
              "replication", "maintenance")
ANNOTATIONS = {"summary", "description", "value", "threshold", "runbook_url", "dashboard_url"}

# Families a rule may use before the exporter serves them (none now). A name that reaches
# the registry must keep the type given here.
PENDING: dict[str, str] = {}
PROMETHEUS_OWN = {"up": "gauge"}

# Functions that need a counter, and functions that are wrong on one.
COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}
GAUGE_FUNCTIONS = {"delta", "idelta", "deriv", "predict_linear"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "atan2", "inf", "nan"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile"}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: install the Debian package prometheus (make deps)"
    return path


# --- reading the rules ------------------------------------------------------------------

def rules() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield path, rule


def alerts() -> list[dict[str, Any]]:
    return [rule for _, rule in rules() if "alert" in rule]


def alert_names() -> list[str]:
    return sorted({rule["alert"] for rule in alerts()})


def recorded() -> set[str]:
    return {rule["record"] for _, rule in rules() if "record" in rule}


@cache
def metric_types() -> dict[str, str]:
    """Sample name -> "counter" or "gauge" for everything the rules may read."""
    types: dict[str, str] = {}
    defs = [m for spec in collectors.REGISTRY for m in spec.metrics] + list(SELF_METRICS) + list(STORE_METRICS) \
        + list(INSIGHT_METRICS)
    for m in defs:
        types[m.name] = "counter" if m.type == "counter" else "gauge"
    for name, kind in PENDING.items():
        assert types.get(name, kind) == kind, f"{name} is a {types[name]} in the registry, PENDING says {kind}"
        types.setdefault(name, kind)
    types.update(PROMETHEUS_OWN)
    types.update({name: "gauge" for name in recorded()})
    return types


def metric_type(name: str) -> str | None:
    if name in metric_types():
        return metric_types()[name]
    if name.startswith("pg_settings_"):  # one gauge per setting (collectors/settings.py)
        return "gauge"
    return None


# --- a small PromQL reader ----------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<other>=~|!~|!=|==|<=|>=|.)
""", re.VERBOSE)


def tokens(expr: str) -> list[tuple[str, str]]:
    out = []
    for m in _TOKEN.finditer(expr):
        kind = m.lastgroup
        assert kind is not None
        if kind != "space":
            out.append((kind, m.group()))
    return out


def selectors(toks: list[tuple[str, str]]) -> Iterator[tuple[int, str]]:
    """(token index, metric name) of every vector selector; a ``{__name__=~"re"}`` selector
    gives "~re"."""
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "ident" and text in LABEL_LISTS and nxt == "(":
            i = _match(toks, i + 1, "(", ")") + 1  # by (...), on (...): label names
            continue
        if text == "{":
            end = _match(toks, i, "{", "}")
            inner = toks[i + 1:end]
            for j in range(len(inner) - 2):
                if inner[j] == ("ident", "__name__") and inner[j + 1][1] in ("=", "=~"):
                    value = inner[j + 2][1][1:-1]
                    yield i, ("~" + value) if inner[j + 1][1] == "=~" else value
            i = end + 1
            continue
        if kind == "ident" and nxt != "(" and text.lower() not in KEYWORDS and text not in AGGREGATIONS:
            yield i, text
        i += 1


def _match(toks: list[tuple[str, str]], start: int, open_: str, close: str) -> int:
    depth = 0
    for j in range(start, len(toks)):
        if toks[j][1] == open_:
            depth += 1
        elif toks[j][1] == close:
            depth -= 1
            if depth == 0:
                return j
    raise AssertionError(f"unbalanced {open_}{close}")


def function_arguments(toks: list[tuple[str, str]], names: set[str]) -> Iterator[tuple[str, int, int]]:
    """(function, first, last token index) of the argument list of every call to *names*."""
    for i, (kind, text) in enumerate(toks):
        if kind == "ident" and text in names and i + 1 < len(toks) and toks[i + 1][1] == "(":
            yield text, i + 2, _match(toks, i + 1, "(", ")")


def resolve(name: str) -> list[str]:
    """Metric names a selector designates (a __name__ regex designates several)."""
    if name.startswith("~"):
        pattern = re.compile(name[1:])
        return [n for n in metric_types() if pattern.fullmatch(n)]
    return [name]


def template_queries(text: str) -> list[str]:
    """The PromQL strings a Go template passes to query (through printf)."""
    found = []
    for m in re.finditer(r'printf\s+"((?:\\.|[^"\\])*)"[^|}]*\|\s*query\b', text):
        found.append(re.sub(r"%[qsdv]", '""', m.group(1).replace('\\"', '"')))
    return found


def expressions() -> Iterator[tuple[str, str, bool]]:
    """(where, PromQL, whether it is an annotation's query) of every rule expression and
    every query in an annotation template."""
    for path, rule in rules():
        name = rule.get("alert") or rule.get("record")
        yield f"{path.name} {name}", rule["expr"], False
        for key, text in rule.get("annotations", {}).items():
            for query in template_queries(text):
                yield f"{path.name} {name} {key}", query, True


# --- promtool ----------------------------------------------------------------------------

def test_prometheus_config_is_valid() -> None:
    result = run(promtool(), "check", "config", "prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout, result.stdout


def test_rule_files_are_valid() -> None:
    assert RULE_FILES, "no rule files in prometheus/rules/"
    result = run(promtool(), "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_rule_tests_pass(test_file: Path) -> None:
    result = run(promtool(), "test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_file_has_a_test_file_beside_it() -> None:
    tested = set()
    for test_file in TEST_FILES:
        spec = yaml.safe_load(test_file.read_text())
        tested |= {(test_file.parent / f).resolve() for f in spec["rule_files"]}
    assert {p.resolve() for p in RULE_FILES} <= tested


def test_every_alert_is_tested_firing_and_not_firing_with_every_severity() -> None:
    firing: dict[str, set[str]] = {}
    quiet: set[str] = set()
    for test_file in TEST_FILES:
        for group in yaml.safe_load(test_file.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                name = case["alertname"]
                if not case.get("exp_alerts"):
                    quiet.add(name)
                for alert in case.get("exp_alerts") or []:
                    assert alert.get("exp_annotations"), f"{test_file.name}: {name} without exp_annotations"
                    firing.setdefault(name, set()).add(alert["exp_labels"]["severity"])
    defined = {name: {r["labels"]["severity"] for r in alerts() if r["alert"] == name} for name in alert_names()}
    assert not set(firing) - set(defined), "tests for alerts that do not exist"
    problems = [f"{name}: never firing" for name in defined if name not in firing]
    problems += [f"{name}: never shown not firing" for name in defined if name not in quiet]
    problems += [f"{name}: severity {sev} never firing" for name, sevs in defined.items()
                 for sev in sevs - firing.get(name, set())]
    assert not problems, problems


# --- what the rules read ---------------------------------------------------------------------

def test_every_metric_the_rules_read_is_known() -> None:
    unknown = {}
    for where, expr, _ in expressions():
        for _, name in selectors(tokens(expr)):
            names = resolve(name)
            if not names or any(metric_type(n) is None for n in names):
                unknown[where] = name
    assert not unknown, f"add to the registry or to PENDING: {unknown}"


def type_problems(expr: str) -> list[str]:
    """rate()/increase() on a gauge, deriv()/delta() on a counter, a counter read raw."""
    problems = []
    toks = tokens(expr)
    in_counter_fn: set[int] = set()
    for fn, first, last in function_arguments(toks, COUNTER_FUNCTIONS | GAUGE_FUNCTIONS):
        for index, name in selectors(toks[first:last]):
            for n in resolve(name):
                kind = metric_type(n)
                if fn in COUNTER_FUNCTIONS and kind == "gauge":
                    problems.append(f"{fn}() on the gauge {n}")
                if fn in GAUGE_FUNCTIONS and kind == "counter":
                    problems.append(f"{fn}() on the counter {n}")
                if fn in COUNTER_FUNCTIONS:
                    in_counter_fn.add(first + index)
    for index, name in selectors(toks):
        for n in resolve(name):
            if metric_type(n) == "counter" and index not in in_counter_fn:
                problems.append(f"the counter {n} read without rate() or increase()")
    return problems


def test_no_rate_or_increase_on_a_gauge_and_no_bare_counter() -> None:
    problems = [f"{where}: {p}" for where, expr, _ in expressions() for p in type_problems(expr)]
    assert not problems, problems


@pytest.mark.parametrize(("expr", "problems"), [
    ('sum by (job) (rate(pg_stat_activity_count{state="active"}[5m]))', ["rate() on the gauge pg_stat_activity_count"]),
    ("increase(pg_up[1h]) > on (job) group_left max by (job) (pgperf_threshold_cpu_usage_max_ratio)",
     ["increase() on the gauge pg_up"]),
    ('increase({__name__=~"pg_stat_user_tables_n_(dead|live)_tup"}[5m])',
     ["increase() on the gauge pg_stat_user_tables_n_dead_tup", "increase() on the gauge pg_stat_user_tables_n_live_tup"]),
    ("deriv(pg_stat_database_xact_commit[10m])",  # a compat counter without _total
     ["deriv() on the counter pg_stat_database_xact_commit",
      "the counter pg_stat_database_xact_commit read without rate() or increase()"]),
    ("pg_stat_database_deadlocks > 0", ["the counter pg_stat_database_deadlocks read without rate() or increase()"]),
    ("rate(pg_stat_database_deadlocks[5m]) / deriv(pgperf_host_disk_used_bytes[1h] offset 5m)", []),
])
def test_the_type_check_itself(expr: str, problems: list[str]) -> None:
    assert sorted(type_problems(expr)) == sorted(problems)


def test_every_profile_threshold_has_a_rule_and_is_joined_per_target() -> None:
    """Thresholds are read as max by (job, instance, target): each target's own (its
    profile's), matched with or without a target label (one target per exporter, or
    /probe through /sd), so the join never finds two matches; the annotations read the
    same series, target included."""
    used = set()
    problems = []
    for where, expr, in_template in expressions():
        for m in re.finditer(r"pgperf_threshold_\w+", expr):
            used.add(m.group())
            before = expr[:m.start()]
            if not in_template and not re.search(r"max by \(job, instance, target\) \($", before):
                problems.append(f"{where}: {m.group()} not read as max by (job, instance, target) (...)")
            if in_template and not (re.search(r"max\($", before)
                                    and expr[m.end():].startswith('{job="",instance="",target=""}')):
                problems.append(f"{where}: {m.group()} not read as max(...{{job=%q,instance=%q,target=%q}})")
    served = {metric for _, metric, _, _ in THRESHOLD_METRICS}
    assert used <= served, used - served
    assert served <= used, f"thresholds without a rule: {served - used}"
    assert not problems, problems


# --- labels and annotations ----------------------------------------------------------------

def runbook_anchors() -> set[str]:
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_alert_labels_and_annotations(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"Pgperf[A-Z][A-Za-z]+", name)
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["labels"]["category"] in CATEGORIES
    notes = rule["annotations"]
    assert ANNOTATIONS <= notes.keys(), ANNOTATIONS - notes.keys()
    if notes["threshold"] != "1":  # a state (up, active, disabled) is stated in words
        assert "$value" in notes["description"], "the description states the value"
    assert notes["runbook_url"] == RUNBOOK_URL + name.lower()
    assert name.lower() in runbook_anchors(), f"docs/runbook.md has no section {name}"
    dashboard = re.fullmatch(
        r"\{\{ \$externalLabels\.grafana_url \}\}/d/([\w-]+)\?var-instance=\{\{ \$labels\.instance \}\}"
        r"(\{\{ with \$labels\.target \}\}&var-target=\{\{ \. \}\}\{\{ end \}\})?", notes["dashboard_url"])
    assert dashboard and dashboard.group(1) in DASHBOARDS, notes["dashboard_url"]


def test_alerts_of_one_name_differ_only_in_severity() -> None:
    """Same name, several rules: the severities of one condition (Alertmanager's inhibition
    mutes the lower while the higher fires)."""
    for name in alert_names():
        rules_ = [r for r in alerts() if r["alert"] == name]
        severities = [r["labels"]["severity"] for r in rules_]
        assert len(severities) == len(set(severities)), name
        assert len({r["labels"]["category"] for r in rules_}) == 1, name


def test_runbook_has_a_section_per_alert_and_no_other() -> None:
    alert_sections = {a for a in runbook_anchors() if a.startswith("pgperf")}
    assert alert_sections == {n.lower() for n in alert_names()}


def test_readme_threshold_table_matches_the_profiles() -> None:
    """prometheus/README.md lists each alert with its threshold in every profile."""
    from pgperf.config import PROFILES, load_profile

    text = (PROMETHEUS / "README.md").read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| Pgperf")]
    listed = {(row[0], row[1]) for row in rows}
    assert listed == {(r["alert"], r["labels"]["severity"]) for r in alerts()}
    for name, _, _, setting, *cells in rows:
        assert len(cells) == len(PROFILES), name
        if setting == "—":
            assert set(cells) == {"—"}, name
            continue
        key = setting.strip("`")
        for profile, cell in zip(PROFILES, cells, strict=True):
            value: Any = load_profile(profile)
            for part in key.split("."):
                value = value[part]
            shown = value if isinstance(value, str) else f"{value:g}"
            assert re.search(rf"(?<![\d.]){re.escape(shown)}(?![\d.])", cell), (name, profile, cell, shown)
