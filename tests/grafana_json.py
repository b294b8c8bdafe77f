"""Reading the committed Grafana dashboards: panels, queries, variables, annotations.

Shared by the dashboards' lint (test_dashboards.py) and their contract test against real
Prometheus and PostgreSQL (test_dashboards_contract.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "grafana" / "dashboards"
RULES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
PROMETHEUS_TYPE = "prometheus"
POSTGRES_TYPE = "grafana-postgresql-datasource"


@dataclass(frozen=True)
class Target:
    """One query of a panel, an annotation or a variable."""

    dashboard: str  # uid
    where: str  # panel title, "annotation NAME" or "variable NAME"
    kind: str  # "promql" or "sql"
    text: str  # the expression or the SQL, as committed
    format: str  # "time_series", "table" (SQL), "" for PromQL

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.where}"


def load(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Committed dashboards by uid."""
    out = {}
    for file in sorted((path or DASHBOARDS).glob("*.json")):
        data = json.loads(file.read_text())
        out[data["uid"]] = data
    return out


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows excluded, including panels inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def is_sql(query: dict[str, Any]) -> bool:
    return "rawSql" in query


def targets(dashboard: dict[str, Any]) -> Iterator[Target]:
    """Every query of *dashboard*: panel targets, annotation and variable queries."""
    uid = dashboard["uid"]
    for panel in panels(dashboard):
        for query in panel.get("targets", []):
            if is_sql(query):
                yield Target(uid, panel["title"], "sql", query["rawSql"], query.get("format", ""))
            else:
                yield Target(uid, panel["title"], "promql", query["expr"], "")
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            yield Target(uid, f"annotation {annotation['name']}", "promql", annotation["expr"], "")
    for name, variable in variables(dashboard).items():
        if variable["type"] == "query":
            yield Target(uid, f"variable {name}", "label_values", variable["query"], "")


def label_values(query: str) -> tuple[str, str]:
    """``label_values(SELECTOR, LABEL)`` -> (selector, label)."""
    match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip(), re.S)
    assert match, f"not a label_values() query: {query}"
    return match.group(1), match.group(2)


def rule_expressions() -> Iterator[tuple[str, str]]:
    """(where, expr) of every alerting and recording rule of prometheus/rules."""
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                severity = rule.get("labels", {}).get("severity")
                yield f"{path.name} {name}" + (f" ({severity})" if severity else ""), rule["expr"]


def rule_annotations() -> Iterator[tuple[str, dict[str, str]]]:
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    yield f"{path.name} {rule['alert']}", rule.get("annotations", {})


def normalize(text: str) -> str:
    """An expression with its whitespace collapsed, the form the allowlist uses."""
    return " ".join(text.split())
