"""The dashboards' and the rules' contract with what pgperf really serves.

A dedicated PostgreSQL under load (pgbench, a slow statement, dead tuples, a session idle
in a transaction, a session blocked on a lock, a checkpoint, a replication slot, a slow
VACUUM, duplicate, overlapping and invalid indexes, docs/setup-bloat.sql), sampled
every second by two real pgperf exporters: one with a single target, one with two targets
(``target`` label) — the two shapes the dashboards' queries must work with. Both run as
the least-privileged role of docs/setup-role.sql and write their sample store; a real
Prometheus scrapes them with the committed rules and sends alerts to a real Alertmanager,
which notifies pgperf's webhook (performance_alerts); one alert is acknowledged and
resolved through pgperf's API.

Then:

* every PromQL expression of the dashboards (panels, annotations, variables), with the
  dashboard variables set to each exporter, and every rule expression must return data —
  except those in grafana/contract-allowlist.yml, each with its reason. A condition (an
  expression whose outermost operator is a comparison or and/or/unless) is false on a
  healthy server: each of its operands must return data instead;
* every SQL query of the dashboards runs, with Grafana's macros expanded, as the read-only
  role of docs/setup-reader.sql, against the store pgperf wrote, and returns rows.

Timing changes only, to take a minute rather than hours: sampling, scraping and rule
evaluation every second, Alertmanager's fast notification timings. Marked ``collectors``:
``make test`` runs it on every PostgreSQL major of the matrix (15 with the whole suite, then
13, 14, 16, 17 and 18).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import yaml

import grafana_json as gj
from fix_bundle import Process, start_alertmanager, start_prometheus
from fix_pg import pg_major
from helpers import Exporter, make_config, wait_until
from pgperf.config import load_config
from tools import bundle
from tools.cluster import Cluster, free_port

pytestmark = [pytest.mark.bundle, pytest.mark.collectors, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
ALLOWLIST = ROOT / "grafana" / "contract-allowlist.yml"
SETUP_ROLE = ROOT / "docs" / "setup-role.sql"
SETUP_READER = ROOT / "docs" / "setup-reader.sql"
SETUP_BLOAT = ROOT / "docs" / "setup-bloat.sql"
TOKEN = "contract-api-token-01"
PASSWORD = "contract-secret"
# What Grafana would substitute for its interval variables at this test's resolution.
RATE_INTERVAL, INTERVAL, RANGE = "30s", "5s", "2m"
LOCK_KEY = 74251


# --- PromQL: conditions and their operands ---------------------------------------------------

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_LEVELS = (("or",), ("and", "unless"), ("==", "!=", ">=", "<=", ">", "<"))
_MODIFIERS = re.compile(r"^\s*(?:(?:on|ignoring)\s*\([^)]*\)\s*)?(?:(?:group_left|group_right)\b\s*(?:\([^)]*\))?\s*)?")
_NUMBER = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")


def _top_level(expr: str) -> Iterator[int]:
    """Positions in *expr* outside strings and brackets."""
    depth = 0
    i = 0
    while i < len(expr):
        if string := _STRING.match(expr, i):
            i = string.end()
            continue
        char = expr[i]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            yield i
        i += 1


def _operators(expr: str, ops: tuple[str, ...]) -> list[tuple[int, int]]:
    """(start, end) of the top-level occurrences of the binary operators *ops*."""
    found: list[tuple[int, int]] = []
    skip_to = -1
    for i in _top_level(expr):
        if i < skip_to:
            continue
        for op in ops:
            if not expr.startswith(op, i):
                continue
            if op.isalpha():  # a keyword, not part of a name
                before = expr[i - 1] if i else " "
                after = expr[i + len(op)] if i + len(op) < len(expr) else " "
                if before.isalnum() or before in "_:" or after.isalnum() or after in "_:":
                    continue
            # Two-character comparisons come first in _LEVELS, so ">" never splits ">=".
            found.append((i, i + len(op)))
            skip_to = i + len(op)
            break
    return found


def _unwrap(expr: str) -> str:
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")"):
        depth = 0
        for i, char in enumerate(expr):
            depth += char == "("
            depth -= char == ")"
            if depth == 0 and i < len(expr) - 1:
                return expr
        expr = expr[1:-1].strip()
    return expr


def operands(expr: str) -> list[str] | None:
    """The operands of *expr* when its outermost operator is ``or``, ``and``/``unless`` or a
    comparison without ``bool`` (a condition), else None. PromQL binds comparisons tighter
    than and/unless, and those tighter than or."""
    expr = _unwrap(expr)
    for ops in _LEVELS:
        cuts = _operators(expr, ops)
        if not cuts:
            continue
        parts, start = [], 0
        for begin, end in cuts:
            parts.append(expr[start:begin])
            start = end
        parts.append(expr[start:])
        if any(re.match(r"\s*bool\b", p) for p in parts[1:]):
            return None  # "> bool" computes 0 or 1 for every series: not a condition
        return [_MODIFIERS.sub("", p, count=1).strip() if i else p.strip() for i, p in enumerate(parts)]
    return None


def obligations(expr: str) -> list[str]:
    """The expressions that must return data for *expr* to be right: itself, or for a
    condition each of its operands (recursively), numbers excepted."""
    parts = operands(expr)
    if parts is None:
        return [] if _NUMBER.fullmatch(expr) else [gj.normalize(expr)]
    return [o for part in parts for o in obligations(part)]


@pytest.mark.parametrize(("expr", "expected"), [
    ("pg_up == 0", ["pg_up"]),
    ('up{job="pgperf"} == 0 or absent(up{job="pgperf"}) * 0', ['up{job="pgperf"}', 'absent(up{job="pgperf"}) * 0']),
    ("a > on (job, instance) group_left max by (job, instance) (t) and b >= 0.1",
     ["a", "max by (job, instance) (t)", "b"]),
    ("a >= on (job) group_left max by (job) (t) or a and c <= 0", ["a", "max by (job) (t)", "a", "c"]),
    ("x / (y + z > 0) > on (job, instance) group_left 0.5 + max by (job, instance) (t) / 2",
     ["x / (y + z > 0)", "0.5 + max by (job, instance) (t) / 2"]),
    ('count(ALERTS{alertstate="firing", x=~"a|b"}) or vector(0)', ['count(ALERTS{alertstate="firing", x=~"a|b"})', "vector(0)"]),
    ("a > bool 3", ["a > bool 3"]),
    ('sum by (x) (rate(m{l!="or"}[5m])) / (rate(n[5m]) > 0)', ['sum by (x) (rate(m{l!="or"}[5m])) / (rate(n[5m]) > 0)']),
    ("(a > 1)", ["a"]),
    ("pgperf_sandbox_total", ["pgperf_sandbox_total"]),
])
def test_conditions_are_split_into_operands(expr: str, expected: list[str]) -> None:
    assert obligations(expr) == expected


# --- substitution of Grafana's variables and macros -------------------------------------------

def substitute(text: str, values: dict[str, str]) -> str:
    """*text* with ``$name``, ``${name}`` and ``${name:format}`` replaced from *values*."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"no value for ${name} in: {text}"
        return values[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", replace, text)


def _seconds(interval: str) -> int:
    interval = interval.strip().strip("'")
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)", interval).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 0, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def expand_sql(sql: str, values: dict[str, str], start: datetime, end: datetime) -> str:
    """Grafana's PostgreSQL macros, as its datasource expands them, then the variables."""
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m.group(1)} BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'", sql)
    sql = sql.replace("$__timeFrom()", f"'{start.isoformat()}'").replace("$__timeTo()", f"'{end.isoformat()}'")

    def group(match: re.Match[str]) -> str:
        column, interval = (part.strip() for part in match.group(1).split(","))
        seconds = _seconds(substitute(interval, values))
        return f'floor(extract(epoch from {column})/{seconds})*{seconds} AS "time"'
    sql = re.sub(r"\$__timeGroupAlias\(([^)]+)\)", group, sql)
    return substitute(sql, values)


# --- the allowlist ---------------------------------------------------------------------------

@dataclass
class Allowlist:
    reasons: dict[str, str]
    used: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, major: int) -> Allowlist:
        entries = yaml.safe_load(ALLOWLIST.read_text())
        reasons = {}
        for entry in entries:
            assert set(entry) <= {"expr", "reason", "majors"} and entry.get("reason"), entry
            if major in entry.get("majors", [major]):
                reasons[gj.normalize(entry["expr"])] = entry["reason"]
        return cls(reasons)

    def allows(self, expr: str) -> bool:
        if expr in self.reasons:
            self.used.add(expr)
            return True
        return False


# --- the running stack -----------------------------------------------------------------------

class PromError(Exception):
    pass


@dataclass
class Stack:
    cluster: Cluster
    prometheus: Process
    single: Exporter  # one target: no "target" label
    multi: Exporter  # targets "main" and "second"
    queryid: str
    window: tuple[datetime, datetime] = (datetime.now(UTC), datetime.now(UTC))

    def query(self, expr: str) -> list[Any]:
        response = requests.get(self.prometheus.url + "/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise PromError(f"{body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        return list(data["result"]) if data["resultType"] in ("vector", "matrix") else [data["result"]]

    def shapes(self) -> dict[str, dict[str, str]]:
        """Dashboard variables as a user selects them for each exporter."""
        common = {"job": "pgperf", "datname": "postgres", "queryid": self.queryid,
                  "__rate_interval": RATE_INTERVAL, "__interval": INTERVAL, "__range": RANGE}
        return {
            "single target": {**common, "instance": _address(self.single), "target": ".*"},
            "multi-target": {**common, "instance": _address(self.multi), "target": "main"},
        }

    def reader_dsn(self) -> str:
        return self.cluster.dsn(user="pgperf_reader", password=PASSWORD)


def _address(exporter: Exporter) -> str:
    return exporter.url.removeprefix("http://")


class Workload:
    """Load for every family to have data, in threads and sessions of their own."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.sessions: list[psycopg.Connection[Any]] = []
        self.vacuum_pid = 0

    def start(self, stack: ExitStack) -> Workload:
        stack.enter_context(self.cluster.pgbench(clients=2, rate=40))
        stack.callback(self.close)
        self._thread(self._slow)  # over the development profile's 500 ms
        # A session idle in a transaction, holding its snapshot.
        idle = psycopg.connect(self.cluster.dsn())
        idle.execute("SELECT count(*) FROM pgbench_branches")
        self.sessions.append(idle)
        # A session blocked by another one (an advisory lock: no table is locked, so
        # pgperf's own table statistics never wait).
        holder = psycopg.connect(self.cluster.dsn(), autocommit=True)
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        self.sessions.append(holder)
        self._thread(self._blocked)
        self._thread(self._vacuum)
        return self

    def _thread(self, target: Any) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _slow(self) -> None:
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            while not self.stop.is_set():
                conn.execute("SELECT pg_sleep(0.6) AS contract_slow")

    def _blocked(self) -> None:
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))  # waits for the holder
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))

    def _vacuum(self) -> None:
        """A VACUUM slowed down by the cost-based delay, always in progress (the progress
        collector's families); cancelled by close()."""
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            self.vacuum_pid = conn.info.backend_pid
            conn.execute("SET vacuum_cost_delay = '100ms'; SET vacuum_cost_limit = 1")
            while not self.stop.is_set():
                try:
                    # Every page, every time: once the first run has set them all-visible a
                    # plain VACUUM would skip them and end at once, leaving gaps with no
                    # VACUUM in progress for the samples to see.
                    conn.execute("VACUUM (DISABLE_PAGE_SKIPPING) contract_vacuum")
                except psycopg.errors.QueryCanceled:
                    pass

    def once(self) -> None:
        """Events counters must see change while Prometheus scrapes."""
        with self.cluster.connect() as conn:
            conn.execute("CHECKPOINT")
            conn.execute("SET work_mem = '64kB'")
            conn.execute("SELECT count(*) FROM (SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC) s")

    def close(self) -> None:
        self.stop.set()
        if self.vacuum_pid:
            self.cluster.execute("SELECT pg_cancel_backend(%s)", params=(self.vacuum_pid,))
        for session in self.sessions:  # closing the holder releases the blocked session
            session.close()
        for thread in self.threads:
            thread.join(15)


def _seed(cluster: Cluster) -> None:
    """Roles (docs/setup-role.sql, docs/setup-reader.sql, in that order, before pgperf
    creates its tables) and data with dead tuples, a vacuum and a replication slot."""
    with cluster.connect() as conn:
        conn.execute(SETUP_ROLE.read_text())
        conn.execute(SETUP_READER.read_text())
        conn.execute(f"ALTER ROLE pgperf PASSWORD '{PASSWORD}'")
        conn.execute(f"ALTER ROLE pgperf_reader PASSWORD '{PASSWORD}'")
        # The second exporter's store: another schema, so that two writers do not create
        # the same daily partitions at the same moment.
        conn.execute("CREATE SCHEMA pgperf_multi AUTHORIZATION pgperf")
        conn.execute("CREATE TABLE contract_dead (id int PRIMARY KEY, pad text) WITH (autovacuum_enabled = off)")
        conn.execute("INSERT INTO contract_dead SELECT g, repeat('x', 50) FROM generate_series(1, 5000) g")
        conn.execute("DELETE FROM contract_dead WHERE id % 2 = 0")
        conn.execute("CREATE TABLE contract_vacuumed (id int)")
        conn.execute("INSERT INTO contract_vacuumed SELECT generate_series(1, 100)")
        conn.execute("VACUUM contract_vacuumed")
        conn.execute("SELECT pg_create_physical_replication_slot('contract_slot', true)")
        # Index findings: a duplicate, an overlapping and an invalid index (a concurrent
        # unique build over duplicate values fails and leaves it behind).
        conn.execute("CREATE INDEX contract_pad ON contract_dead (pad)")
        conn.execute("CREATE INDEX contract_pad_again ON contract_dead (pad)")
        conn.execute("CREATE INDEX contract_pad_id ON contract_dead (pad, id)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY contract_invalid ON contract_dead (pad)")
        # A table for the slow VACUUM of the workload, and the statistics of the bloat
        # estimates, readable by the least-privileged role (docs/setup-bloat.sql).
        conn.execute("CREATE TABLE contract_vacuum AS SELECT g AS id, repeat('v', 100) AS pad "
                     "FROM generate_series(1, 50000) g")
        conn.execute("DELETE FROM contract_vacuum WHERE id % 4 = 0")
        conn.execute("ANALYZE")
        conn.execute(SETUP_BLOAT.read_text())


def _exporter_config(dsn: str, work: Path, name: str, **flags: Any) -> dict[str, Any]:
    return {
        "profile": "development", "sampling_interval": 1,
        "store": {"enabled": True, "spool_dir": str(work / f"spool-{name}")},
        "collectors": {"host": {"enabled": True}, "database_size": {"interval": 1}},
        **flags,
    }


@pytest.fixture(scope="module")
def stack(pg_bindir: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("contract")
    started = time.monotonic()
    with ExitStack() as exits:
        cluster = Cluster(pg_bindir, base_dir=os.environ.get("PGPERF_TEST_TMP", "/tmp"), name="pgperf-contract")
        cluster.start()
        exits.callback(cluster.destroy)
        _seed(cluster)
        dsn = cluster.dsn(user="pgperf", password=PASSWORD)

        port = free_port()
        secrets = work / "secrets"
        bundle.write_secrets(secrets, {"pgperf-api-token": TOKEN, "slack-webhook-url": "http://127.0.0.1:9/slack",
                                       "pagerduty-routing-key": "k", "webhook-token": "t", "smtp-password": "p"})
        (work / "am").mkdir()
        (work / "am" / "alertmanager.yml").write_text(bundle.dump(bundle.alertmanager_config(
            f"http://127.0.0.1:{port}", secrets_dir=secrets, webhook_url="http://127.0.0.1:9/webhook", fast=True)))
        alertmanager = start_alertmanager(work / "am" / "alertmanager.yml", work / "am")
        exits.callback(alertmanager.stop)

        single = Exporter(make_config(dsn, **_exporter_config(
            dsn, work, "single", api={"token": TOKEN}, alerts={"alertmanager_url": alertmanager.url},
            store={"enabled": True, "schema": "pgperf", "spool_dir": str(work / "spool-single")})),
            address=f"127.0.0.1:{port}")
        single.start()
        exits.callback(single.stop)
        multi = Exporter(load_config(flags=_exporter_config(
            dsn, work, "multi", targets=[{"name": "main", "dsn": dsn}, {"name": "second", "dsn": dsn}],
            store={"enabled": True, "schema": "pgperf_multi", "spool_dir": str(work / "spool-multi")}), env={}))
        multi.start()
        exits.callback(multi.stop)

        (work / "prom").mkdir()
        (work / "prom" / "prometheus.yml").write_text(bundle.dump(bundle.prometheus_config(
            [_address(single), _address(multi)], alertmanager.url.removeprefix("http://"), interval="1s")))
        prometheus = start_prometheus(work / "prom" / "prometheus.yml", work / "prom")
        exits.callback(prometheus.stop)
        workload = Workload(cluster).start(exits)

        ready = Stack(cluster, prometheus, single, multi, queryid="")
        _wait_for_data(ready, workload)
        ready.window = (datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(minutes=1))
        print(f"\ncontract stack ready after {time.monotonic() - started:.1f}s on PostgreSQL {cluster.major}")
        yield ready


def _wait_for_data(stack: Stack, workload: Workload) -> None:
    """Until every rate window has samples, the checkpoint and the alerts went through
    and the store holds the drill-down's statement: waits, never sleeps blindly."""
    def count(expr: str) -> int:
        try:
            return len(stack.query(expr))
        except (PromError, requests.RequestException):
            return 0

    wait_until(lambda: count('up{job="pgperf"} == 1') == 2, timeout=60, interval=0.5,
               message="Prometheus scraping both exporters")
    wait_until(lambda: count("pg_stat_bgwriter_checkpoints_req_total") == 3, timeout=30, interval=0.5,
               message="checkpoint counters scraped")
    workload.once()
    wait_until(lambda: count(f"increase(pg_stat_bgwriter_checkpoints_req_total[{RANGE}]) > 0") == 3
               and count(f'rate(pg_stat_database_xact_commit{{datname="postgres"}}[{RATE_INTERVAL}]) > 0') == 3
               and count("queryid:pg_stat_statements_calls:increase5m > 0") > 0,
               timeout=60, interval=0.5, message="rates, the checkpoint and the recording rules")

    # The statement of the drill-down: pgbench's UPDATE of its accounts, in Prometheus and in
    # the store.
    def statement() -> str | None:
        rows = stack.cluster.execute(
            "SELECT DISTINCT query_id FROM pgperf.query_performance_metrics"
            " WHERE query_text LIKE 'UPDATE pgbench_accounts%' AND calls > 0")
        for (queryid,) in rows:
            if count(f'rate(pg_stat_statements_calls_total{{queryid="{queryid}"}}[{RATE_INTERVAL}]) > 0') == 3:
                return str(queryid)
        return None
    stack.queryid = wait_until(statement, timeout=30, interval=0.5, message="pgbench's UPDATE in the store and Prometheus")

    # An alert through Alertmanager to pgperf's webhook (PgperfServerRestarted fires right
    # away on a new server), acknowledged through pgperf's API. Prometheus still fires it, so
    # resolving it by hand is refused; its resolution comes as Alertmanager sends one.
    rows = wait_until(lambda: stack.cluster.execute("SELECT alert_id FROM pgperf.performance_alerts ORDER BY timestamp"),
                      timeout=60, interval=0.5, message="an alert recorded by pgperf's webhook")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    alert_url = f"{stack.single.url}/api/v1/alerts/{rows[0][0]}"
    response = requests.post(alert_url + "/ack", json={"by": "contract"}, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    response = requests.post(alert_url + "/resolve", json={"by": "contract"}, headers=headers, timeout=10)
    assert response.status_code == 409 and "still firing" in response.text, response.text
    ((labels, starts_at, fingerprint),) = stack.cluster.execute(
        "SELECT labels, starts_at, fingerprint FROM pgperf.performance_alerts WHERE alert_id = %s", params=(rows[0][0],))
    resolved = {"status": "resolved", "labels": labels, "annotations": {}, "fingerprint": fingerprint,
                "startsAt": starts_at.astimezone(UTC).isoformat(), "endsAt": datetime.now(UTC).isoformat()}
    response = requests.post(f"{stack.single.url}/api/v1/alerts/webhook", headers=headers, timeout=10,
                             json={"version": "4", "status": "resolved", "alerts": [resolved]})
    assert response.status_code == 200, response.text
    assert requests.get(alert_url, headers=headers, timeout=10).json()["status"] == "resolved"
    # A report row, as the report service stores it (reports are built on another branch
    # of the store; the table is the migration's).
    stack.cluster.execute(
        "INSERT INTO pgperf.performance_reports (report_id, kind, target, period_start, period_end, report_data)"
        " VALUES ('contract-report', 'daily', NULL, now() - interval '1 day', now(), '{}')")


# --- the tests ---------------------------------------------------------------------------------

def _promql_targets() -> list[gj.Target]:
    return [t for board in gj.load().values() for t in gj.targets(board) if t.kind == "promql"]


def test_every_promql_expression_returns_data(stack: Stack) -> None:
    allow = Allowlist.load(pg_major())
    checked: list[tuple[str, str, str]] = []  # (where, shape, expression) to evaluate
    for target in _promql_targets():
        for shape in stack.shapes():
            checked.append((str(target), shape, target.text))
    for where, expr in gj.rule_expressions():
        checked.append((f"rule {where}", "", expr))

    problems, evaluated = [], 0
    for where, shape, expr in checked:
        values = stack.shapes()[shape] if shape else {}
        try:
            stack.query(substitute(expr, values))  # the whole expression evaluates
        except PromError as exc:
            problems.append(f"{where} [{shape}]: error {exc}: {expr}")
            continue
        for part in obligations(expr):
            evaluated += 1
            if allow.allows(part):
                continue
            if not stack.query(substitute(part, values)):
                problems.append(f"{where}{f' [{shape}]' if shape else ''}: no data: {part}")
    stale = set(allow.reasons) - allow.used
    print(f"{len(checked)} expressions, {evaluated} evaluated, {len(allow.used)} allowlisted")
    assert not problems, "\n".join(problems)
    assert not stale, f"allowlist entries matching no expression (remove them): {sorted(stale)}"


def test_every_variable_offers_values(stack: Stack) -> None:
    problems = []
    for board in gj.load().values():
        for target in gj.targets(board):
            if target.kind != "label_values":
                continue
            selector, label = gj.label_values(target.text)
            offered = set()
            for shape, values in stack.shapes().items():
                series = stack.query(substitute(selector, values))
                if not series:
                    problems.append(f"{target} [{shape}]: no series for {selector}")
                offered |= {s["metric"][label] for s in series if label in s["metric"]}
            if not offered:
                problems.append(f"{target}: no value of {label}")
    assert not problems, "\n".join(problems)


def _sql_targets() -> list[gj.Target]:
    return [t for board in gj.load().values() for t in gj.targets(board) if t.kind == "sql"]


def test_every_sql_query_runs_as_the_reader_and_returns_rows(stack: Stack) -> None:
    values = {"target": ".*", "instance": ".*", "job": "pgperf", "datname": "postgres", "queryid": stack.queryid,
              "__interval": INTERVAL}
    targets = _sql_targets()
    assert len(targets) >= 8
    problems = []
    with psycopg.connect(stack.reader_dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("pgperf_reader",)
        for target in targets:
            sql = expand_sql(target.text, values, *stack.window)
            assert not re.search(r"\$[\w{]", sql), f"{target}: unexpanded macro or variable: {sql}"
            try:
                cursor = conn.execute(sql)
            except psycopg.Error as exc:
                problems.append(f"{target}: {type(exc).__name__}: {exc}")
                continue
            columns = [c.name for c in cursor.description or []]
            rows = cursor.fetchall()
            if target.format == "time_series" and "time" not in columns:
                problems.append(f"{target}: a time series query without a time column: {columns}")
            if not rows or all(v is None for v in rows[0]):
                problems.append(f"{target}: no rows")
    assert not problems, "\n".join(problems)


def test_reader_role_reads_every_table_and_writes_none(stack: Stack) -> None:
    today = datetime.now(UTC).strftime("%Y%m%d")
    with psycopg.connect(stack.reader_dsn(), autocommit=True) as conn:
        # A partition pgperf created after setup-reader.sql ran: the default privileges.
        assert conn.execute(f"SELECT count(*) FROM query_samples_p{today}").fetchone()[0] > 0  # type: ignore[index]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM performance_alerts")
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM performance_alerts")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE pgperf.intruder (id int)")
