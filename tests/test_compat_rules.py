"""postgres_exporter's own mixin (alerts and dashboard) and a community rule pack written for
postgres_exporter, unchanged, against pgperf on live data through a real Prometheus.

The expressions are test data (``compat/rule_expressions.yaml``). The database is under
load (pgbench), with a standby streaming from a replication slot, an idle slot, a table
never vacuumed, a bloated table, an invalid index and a statement timeout
(``compat_scene``); pgperf's log_errors collector is on. Prometheus scrapes
pgperf for a little over five minutes (a pack rule compares settings with ``offset 5m``);
Debian's postgres_exporter 0.11.1, with the example query file Debian ships, is scraped by
a second Prometheus at the same time, on the same database, for comparison.

An alert expression returns nothing while all is well, which would tell nothing about
pgperf. So each expression is evaluated with one transformation, the same for all
(``promql_expr.without_filtering``): every comparison becomes a ``bool`` comparison, which
returns 0 or 1 instead of filtering (``pg_up != 1`` gives 0, not nothing), so the
expression returns data when its families exist with labels that match as it asks; the
right operand of ``unless`` stays as written (it names the instances to leave out; as a
bool it would leave out all). Where Prometheus refuses the result because ``bool`` dropped
the metric names that told its series apart, each comparison becomes its union with its
negation instead (``promql_expr.keeping_names``). Dashboard expressions get Grafana's values for their
variables: the dashboard's own "All" (``.+``) and a rate interval of four scrapes.

"Answered" means: the transformed expression returns data. An expression can also be
unanswerable whatever the exporter serves: Prometheus rejects it (a syntax error in the
pack), or two operands that both return data can never match (one-to-one matching of
series with different label sets); the test proves the latter from the operands' series.
pgperf must answer every expression except those, and each of their vector selectors must
return data on its own.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from compat_scene import scene, statement_timeout
from fix_bundle import Process
from helpers import make_config, running_exporter
from promql_expr import Node, keeping_names, parse, selectors, without_filtering
from tools.cluster import Cluster, free_port

pytestmark = [pytest.mark.bundle, pytest.mark.slow,
              # the mixin's dashboard queries pg_stat_bgwriter columns PostgreSQL 17 removed
              pytest.mark.pg("<=16")]

EXPRESSIONS = Path(__file__).parent / "compat" / "rule_expressions.yaml"
OLD_EXPORTER = "prometheus-postgres-exporter"
OLD_QUERIES = Path("/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml")
SCRAPE = 5  # seconds
HISTORY = 5 * 60 + 3 * SCRAPE  # offset 5m needs five minutes of samples
GRAFANA = {"$__rate_interval": f"{4 * SCRAPE}s", "$job": ".+", "$instance": ".+", "$db": ".+"}


@dataclass
class Outcome:
    """What one Prometheus makes of one expression."""

    expression: str
    answered: bool = False
    rejected: str = ""  # Prometheus's error, when it refuses the expression
    unmatchable: str = ""  # why two answered operands can never match
    empty_selectors: list[str] = field(default_factory=list)


class Prom:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> tuple[list[dict[str, Any]] | None, str]:
        """(result, "") or (None, error)."""
        r = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)
        body = r.json()
        if body.get("status") != "success":
            return None, str(body.get("error"))
        data = body["data"]
        if data["resultType"] == "scalar":  # marked: scalars take no part in vector matching
            return [{"metric": {}, "value": data["result"], "scalar": True}], ""
        return list(data["result"]), ""


def _keys(series: list[dict[str, Any]], node: Node) -> set[tuple[tuple[str, str], ...]]:
    out = set()
    for s in series:
        labels = {k: v for k, v in s["metric"].items() if k != "__name__"}
        if node.on is not None:
            labels = {k: v for k, v in labels.items() if k in node.on}
        elif node.ignoring is not None:
            labels = {k: v for k, v in labels.items() if k not in node.ignoring}
        out.add(tuple(sorted(labels.items())))
    return out


def _unmatchable(prom: Prom, text: str, node: Node) -> str:
    """Why *node* (empty) is empty although its operands are not: a description of the
    binary operation whose operands both return data and share no matching label set, or
    "" if an operand is empty (then a family is missing)."""
    if node.kind not in ("paren", "call", "aggregate", "binary"):
        return ""
    sides = []
    for child in node.children:
        if child.kind in ("number", "string"):
            return ""
        result, _ = prom.query(text[child.start:child.end])
        if not result:
            return _unmatchable(prom, text, child)
        sides.append(result)
    if node.kind != "binary" or any(side[0].get("scalar") for side in sides):
        return ""
    left, right = (_keys(side, node) for side in sides)
    if left & right:
        return ""
    return (f"`{node.op}` matches {sorted(left)[:2]} with {sorted(right)[:2]}: "
            "no label set in common")


def evaluate(prom: Prom, expression: str) -> Outcome:
    text = expression
    for var, value in GRAFANA.items():
        text = text.replace(var, value)
    outcome = Outcome(expression)
    for sel in selectors(text):
        result, _ = prom.query(sel)
        if not result:
            outcome.empty_selectors.append(sel)
    transformed = without_filtering(text)
    result, error = prom.query(transformed)
    if error and "same labelset" in error:  # bool dropped the names that told series apart
        transformed = keeping_names(text)
        result, error = prom.query(transformed)
    if error:
        outcome.rejected = error
    elif result:
        outcome.answered = True
    elif not outcome.empty_selectors:
        outcome.unmatchable = _unmatchable(prom, transformed, parse(transformed))
    return outcome


def _prometheus(workdir: Path, target: str) -> Process:
    workdir.mkdir(parents=True)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": f"{SCRAPE}s", "evaluation_interval": f"{SCRAPE}s"},
        "scrape_configs": [{"job_name": "postgres", "static_configs": [{"targets": [target]}]}],
    }))
    port = free_port()
    return Process(["prometheus", f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn"], f"http://127.0.0.1:{port}", "/-/ready", workdir)


class OldExporter:
    """Debian's postgres_exporter 0.11.1 with Debian's example query file."""

    def __init__(self, dsn: str, workdir: Path) -> None:
        workdir.mkdir(parents=True)
        self.port = free_port()
        self.log = open(workdir / "exporter.log", "wb")
        env = {**os.environ, "DATA_SOURCE_NAME": f"{dsn}?sslmode=disable"}
        self.proc = subprocess.Popen(
            [OLD_EXPORTER, f"--web.listen-address=127.0.0.1:{self.port}", f"--extend.query-path={OLD_QUERIES}"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def old_exporter(tmp_path: Path) -> Iterator[Callable[[str], OldExporter]]:
    started: list[OldExporter] = []

    def start(dsn: str) -> OldExporter:
        started.append(OldExporter(dsn, tmp_path / f"old-{len(started)}"))
        return started[-1]

    yield start
    for exporter in started:
        exporter.stop()


def _report(name: str, groups: list[tuple[dict[str, Any], list[Outcome]]]) -> tuple[int, int]:
    answered = total = 0
    print(f"\n== {name}")
    for group, outcomes in groups:
        ok = sum(o.answered for o in outcomes)
        answered += ok
        total += len(outcomes)
        print(f"{group['source']} {group['path']} @ {group['commit'][:8]}: {ok} of {len(outcomes)} answered")
        for o in outcomes:
            if not o.answered:
                why = o.rejected or o.unmatchable or f"no data: {o.empty_selectors}"
                print(f"   - {' '.join(o.expression.split())[:100]}\n       {why}")
    print(f"total: {answered} of {total} expressions answered")
    return answered, total


def test_mixin_and_community_rules_answer_on_live_data(
    make_cluster: Callable[..., Cluster], tmp_path: Path, old_exporter: Callable[[str], OldExporter],
) -> None:
    groups = yaml.safe_load(EXPRESSIONS.read_text())["groups"]
    with scene(make_cluster) as s:
        config = make_config(s.primary.dsn(), sampling_interval=SCRAPE,
                             collectors={"bloat": {"interval": SCRAPE}, "indexes": {"interval": SCRAPE},
                                         "log_errors": {"enabled": True}})
        with running_exporter(config) as exporter:
            old = old_exporter(s.primary.dsn())
            proms = {
                "pgperf": _prometheus(tmp_path / "prom-pgperf", exporter.url.removeprefix("http://")),
                "postgres_exporter 0.11.1": _prometheus(tmp_path / "prom-old", f"127.0.0.1:{old.port}"),
            }
            try:
                time.sleep(60)
                statement_timeout(s.primary)  # one during the window, besides the failed REINDEX before it
                time.sleep(HISTORY - 60)
                results = {name: [(g, [evaluate(Prom(p.url), e) for e in g["expressions"]]) for g in groups]
                           for name, p in proms.items()}
            finally:
                for p in proms.values():
                    p.stop()
    counts = {name: _report(name, res) for name, res in results.items()}
    ours = [o for _, outcomes in results["pgperf"] for o in outcomes]
    # Every vector selector returns data on pgperf, and every expression is answered unless
    # no exporter can answer it.
    assert not [o.empty_selectors for o in ours if o.empty_selectors]
    assert not [o.expression for o in ours if not (o.answered or o.rejected or o.unmatchable)]
    theirs = [o for _, outcomes in results["postgres_exporter 0.11.1"] for o in outcomes]
    for mine, other in zip(ours, theirs, strict=True):  # what pgperf cannot answer, nobody can
        if not mine.answered:
            assert not other.answered, mine.expression
    assert counts["pgperf"][0] > counts["postgres_exporter 0.11.1"][0]
