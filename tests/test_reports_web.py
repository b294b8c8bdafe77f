"""Report routes over HTTP, the scheduler and delivery, against real PostgreSQL and a
local HTTP receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests

import report_fixture as fx
from console_client import ConsoleClient
from helpers import Exporter, LocalHTTPServer, make_config
from pgperf.config import Config
from pgperf.http import templating
from pgperf.monitor import Monitor
from pgperf.reports.scheduler import ReportScheduler, deliver, due_jobs
from pgperf.reports.service import ReportService
from pgperf.store import StoreClient
from test_reports import report_config
from tools.cluster import Cluster

TOKEN = "s3cret-token-0123456"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def web_store(pg_cluster: Cluster) -> str:
    with pg_cluster.connect() as conn:
        fx.load(conn, "report_web")
    return "report_web"


@pytest.fixture
def served(pg_cluster: Cluster, web_store: str) -> Iterator[tuple[Exporter, ReportService]]:
    config = report_config(pg_cluster.dsn(), web_store, api={"token": TOKEN})
    exporter = Exporter(config)  # the app carries the report routes of its monitor
    exporter.server.start()  # no sampling: the routes read the store only
    service = exporter.monitor.reports
    assert service is not None
    try:
        yield exporter, service
    finally:
        exporter.server.stop()
        exporter.monitor.stop()


def test_html_pages_need_a_session(served: tuple[Exporter, ReportService]) -> None:
    exporter, service = served
    report = service.generate(fx.WINDOW_START, fx.WINDOW_END, kind="daily", now=fx.NOW, catalog=fx.CATALOG)
    anonymous = exporter.get("/reports/", allow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["Location"] == "/login?next=/reports/"
    link = exporter.get(f"/reports/{report.report_id}", allow_redirects=False)  # a dashboard's link
    assert link.headers["Location"] == f"/login?next=/reports/{report.report_id}"
    client = signed_in(exporter)
    listing = client.get("/reports/")
    assert listing.status_code == 200 and listing.headers["Content-Type"].startswith("text/html")
    assert f"/reports/{report.report_id}" in listing.text
    page = client.get(f"/reports/{report.report_id}")
    assert page.status_code == 200
    assert "Daily Performance Report" in page.text and 'id="chart-throughput"' in page.text
    assert page.text.count("<script src=") == 3  # the chart library, pgperf's charts, the console's script
    missing = client.get("/reports/perf-report-404")
    assert missing.status_code == 404 and "no report with id" in missing.text
    assert 'href="/reports/"' in client.get("/").text  # in the console's navigation


def signed_in(exporter: Exporter) -> ConsoleClient:
    client = ConsoleClient(exporter.url)
    assert client.login(TOKEN).status_code == 303
    return client


MARKUP = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_pages_escape_what_they_show(served: tuple[Exporter, ReportService], pg_cluster: Cluster,
                                     web_store: str) -> None:
    """What a page shows comes from the store, which other processes write too: a target
    name or a note holding markup is shown as text on the list of reports and the report."""
    exporter, service = served
    report = service.generate(fx.WINDOW_START, fx.WINDOW_END, now=fx.NOW, catalog=fx.CATALOG)
    data = report.to_json()
    data = {**data, "target": MARKUP, "data_quality": {**data["data_quality"], "notes": [f"note {MARKUP}"]}}
    pg_cluster.execute(f"UPDATE {web_store}.performance_reports SET target = %s, report_data = %s WHERE report_id = %s",
                       params=(MARKUP, json.dumps(data), report.report_id))
    client = signed_in(exporter)
    for path in ("/reports/", f"/reports/{report.report_id}"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert MARKUP not in page.text and ESCAPED in page.text, path
    assert f"note {ESCAPED}" in client.get(f"/reports/{report.report_id}").text


def test_the_overview_escapes_target_names() -> None:
    """Configured target names are restricted to letters, digits and ``_.:/@-``; the pages
    escape them all the same."""
    chart = {"id": "live-chart-1", "kind": "line", "series": []}
    page = templating.render("console/overview.html", targets=[(MARKUP, None, "waiting", chart)], open_alerts=None)
    assert MARKUP not in page and f'<section class="panel" data-target="{ESCAPED}">' in page
    assert f"<h2>{ESCAPED}</h2>" in page


def test_api_requires_the_token(served: tuple[Exporter, ReportService]) -> None:
    exporter, _ = served
    for method, path in (("GET", "/api/v1/reports"), ("GET", "/api/v1/reports/x"), ("POST", "/api/v1/reports")):
        response = requests.request(method, exporter.url + path, timeout=10)
        assert response.status_code == 401, path
        assert "Bearer" in response.json()["error"]


def test_api_generates_lists_and_reads(served: tuple[Exporter, ReportService], pg_cluster: Cluster) -> None:
    exporter, _ = served
    body = {"from": "2024-01-01T12:00:00Z", "to": "2024-01-01T16:00:00+00:00"}
    created = requests.post(exporter.url + "/api/v1/reports", json=body, headers=AUTH, timeout=30)
    assert created.status_code == 201, created.text
    data = created.json()
    assert data["kind"] == "on_demand" and data["period"] == {"start": "2024-01-01T12:00:00.000Z",
                                                               "end": "2024-01-01T16:00:00.000Z"}
    assert created.headers["Location"] == f"/api/v1/reports/{data['report_id']}"
    assert any(a["subject"] == "1001" for a in data["anomalies"])
    listed = exporter.get("/api/v1/reports?kind=on_demand", headers=AUTH).json()["reports"]
    assert data["report_id"] in [r["report_id"] for r in listed]
    got = exporter.get(f"/api/v1/reports/{data['report_id']}", headers=AUTH)
    assert got.json() == data
    text = exporter.get(f"/api/v1/reports/{data['report_id']}?format=text", headers=AUTH)
    assert text.headers["Content-Type"].startswith("text/plain") and text.text.startswith("📊 On-demand Performance")
    assert exporter.get("/api/v1/reports/nope", headers=AUTH).status_code == 404
    stored = pg_cluster.execute("SELECT count(*) FROM report_web.performance_reports WHERE report_id = %s",
                                params=(data["report_id"],))
    assert stored == [(1,)]


@pytest.mark.parametrize("body, message", [
    ("not json", "body is not valid JSON"),
    ("[1, 2]", "the body must be a JSON object"),
    ('{"from": "2024-01-01T00:00:00Z"}', "to: expected an RFC 3339 time (2024-01-01T00:00:00Z) or a duration back "
                                        "from now (1h, 2d), got nothing"),
    ('{"from": "yesterday", "to": "2024-01-01T00:00:00Z"}', "from: expected an RFC 3339 time"),
    ('{"from": "2024-01-02T00:00:00Z", "to": "2024-01-01T00:00:00Z"}', "must be after the start"),
    ('{"from": "1h", "to": "2h"}', "must be after the start"),  # durations count back from now
    ('{"from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z", "kind": "hourly"}', "kind: expected one of"),
    ('{"from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z", "target": 5}', "target: expected a target name"),
    ('{"from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z", "colour": "red"}', "unknown field(s): colour"),
    ('{"from": "2000-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z"}', "at most"),
    ('{"from": "0001-01-01T00:00:00+05:00", "to": "0001-01-02T00:00:00+05:00"}',
     "from: 0001-01-01T00:00:00+05:00 is out of range; times must lie between the years 1970 and 9000"),
    ('{"from": "9999-12-30T23:59:59-05:00", "to": "9999-12-31T23:59:59-05:00"}', "is out of range"),
    ('{"from": "1969-12-31T00:00:00Z", "to": "1970-01-02T00:00:00Z"}', "between the years"),
    ('{"from": "99999999999d", "to": "1h"}', "from: the duration '99999999999d' is out of range"),
    ('{"from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z", "target": "nope"}',
     f"unknown target 'nope'; configured targets: {fx.TARGET}"),
])
def test_api_bad_input_is_400(served: tuple[Exporter, ReportService], body: str, message: str) -> None:
    exporter, _ = served
    response = requests.post(exporter.url + "/api/v1/reports", data=body, headers=AUTH, timeout=10)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_api_takes_the_cli_time_syntax(served: tuple[Exporter, ReportService]) -> None:
    """The API's times are the command line's: RFC 3339, or a duration back from now."""
    exporter, _ = served
    before = datetime.now(UTC)
    created = requests.post(exporter.url + "/api/v1/reports", json={"from": "2h", "to": "1h30m"}, headers=AUTH,
                            timeout=30)
    assert created.status_code == 201, created.text
    period = created.json()["period"]
    start, end = (datetime.fromisoformat(period[k].replace("Z", "+00:00")) for k in ("start", "end"))
    assert end - start == timedelta(minutes=30)
    assert before - timedelta(hours=2, seconds=1) <= start <= datetime.now(UTC) - timedelta(hours=2)


def test_api_unknown_target_stores_nothing(served: tuple[Exporter, ReportService]) -> None:
    exporter, service = served
    before = len(service.list(limit=1000))
    response = requests.post(exporter.url + "/api/v1/reports", headers=AUTH, timeout=10,
                             json={"from": "2024-01-01T12:00:00Z", "to": "2024-01-01T16:00:00Z", "target": "nope"})
    assert response.status_code == 400 and "configured targets" in response.json()["error"]
    assert len(service.list(limit=1000)) == before
    assert not service.list(target="nope")


def test_api_bad_query_parameters_are_400(served: tuple[Exporter, ReportService]) -> None:
    exporter, _ = served
    assert exporter.get("/api/v1/reports?limit=zero", headers=AUTH).status_code == 400
    assert exporter.get("/api/v1/reports?kind=monthly", headers=AUTH).status_code == 400
    assert exporter.get("/api/v1/reports/x?format=pdf", headers=AUTH).status_code == 400


def test_a_data_error_of_the_store_is_answered_not_500(pg_cluster: Cluster) -> None:
    """Alerts and reports share one error mapping: a PostgreSQL data error from the store
    while building a report (here a view of the store divides by zero) is a clear JSON
    answer, as on the alert routes, not a generic 500."""
    schema = "report_data_error"
    with pg_cluster.connect() as conn:
        fx.load(conn, schema)
        conn.execute(f"ALTER TABLE {schema}.query_rollup_state RENAME TO query_rollup_state_real")
        conn.execute(f"CREATE VIEW {schema}.query_rollup_state AS SELECT target, rolled_until"
                     f" FROM {schema}.query_rollup_state_real WHERE 1 / (length(target) - length(target)) = 0")
    exporter = Exporter(report_config(pg_cluster.dsn(), schema, api={"token": TOKEN}))
    exporter.server.start()
    try:
        response = requests.post(exporter.url + "/api/v1/reports", headers=AUTH, timeout=30,
                                 json={"from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z"})
        assert response.status_code == 400, response.text
        assert response.headers["Content-Type"] == "application/json"
        assert response.json() == {"error": "invalid value: division by zero"}
        # The same class of error on an alert route gets the same answer (a NUL character,
        # which PostgreSQL's text cannot hold, in an alert id).
        nul = exporter.get("/api/v1/alerts/abc%00", headers=AUTH)
        assert nul.status_code == 400 and nul.json()["error"].startswith("invalid value: "), nul.text
    finally:
        exporter.server.stop()
        exporter.app.stop()


def test_a_broken_stored_report_is_503_not_500(served: tuple[Exporter, ReportService], pg_cluster: Cluster,
                                               web_store: str) -> None:
    """A body in performance_reports that is not a report (written by something else) is
    refused when read, with the reason, on the page and in the API."""
    exporter, _ = served
    pg_cluster.execute(f"INSERT INTO {web_store}.performance_reports (report_id, target, kind, generated_at,"
                       " period_start, period_end, report_data) VALUES ('perf-report-broken', 't', 'on_demand', now(),"
                       " now(), now(), '{\"report_id\": \"perf-report-broken\", \"kind\": \"on_demand\"}')")
    api = exporter.get("/api/v1/reports/perf-report-broken?format=text", headers=AUTH)
    assert api.status_code == 503 and api.headers["Content-Type"] == "application/json"
    assert api.json()["error"].startswith("the store holds a broken report: report 'perf-report-broken' does not "
                                          "have the form of a pgperf report"), api.text
    client = signed_in(exporter)
    page = client.get("/reports/perf-report-broken")
    assert page.status_code == 503 and page.headers["Content-Type"].startswith("text/html")
    assert "does not have the form of a pgperf report" in page.text
    assert client.get("/reports/").status_code == 200  # the list still shows the others


def test_store_disabled_is_503_not_500(pg_cluster: Cluster) -> None:
    config = make_config(pg_cluster.dsn(), api={"token": TOKEN})
    exporter = Exporter(config)  # store disabled: the monitor has no report service
    exporter.server.start()
    try:
        assert signed_in(exporter).get("/reports/").status_code == 503
        response = requests.post(exporter.url + "/api/v1/reports", headers=AUTH, timeout=10,
                                 json={"from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z"})
        assert response.status_code == 503 and "disabled" in response.json()["error"]
    finally:
        exporter.server.stop()


# -- scheduling and delivery ---------------------------------------------------------------

class Receiver(LocalHTTPServer):
    """A local HTTP server recording what is POSTed to it (webhook and Slack stand-in)."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[tuple[str, dict[str, str], Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                outer.received.append((self.path, dict(self.headers), json.loads(self.rfile.read(length))))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler)


def scheduler_config(pg_cluster: Cluster, schema: str, tmp_path: Path, receiver: Receiver, **reports: Any) -> Config:
    slack = tmp_path / "slack-url"
    slack.write_text(receiver.url + "/slack\n")
    return report_config(pg_cluster.dsn(), schema, reports={
        "webhook_url": receiver.url + "/hook", "slack_webhook_url_file": str(slack),
        "public_url": "https://pgperf.example.com/", **reports})


def test_due_jobs_follow_the_clock(pg_cluster: Cluster) -> None:
    config = report_config(pg_cluster.dsn(), "x", reports={"at": "00:15"})
    before = due_jobs(config, datetime(2024, 1, 2, 0, 10, tzinfo=UTC), ["t"], "t")  # a Tuesday, before 00:15
    daily = next(j for j in before if j.kind == "daily")
    assert (daily.start, daily.end) == (datetime(2023, 12, 31, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC))
    after = due_jobs(config, datetime(2024, 1, 2, 0, 20, tzinfo=UTC), ["t"], "t")
    daily = next(j for j in after if j.kind == "daily")
    assert (daily.start, daily.end) == (fx.WINDOW_START, fx.WINDOW_END)
    assert daily.report_id == "perf-report-daily-1704153600000"
    weekly = next(j for j in after if j.kind == "weekly")  # 2024-01-01 is a Monday
    assert (weekly.start, weekly.end) == (datetime(2023, 12, 25, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC))
    other = due_jobs(config, datetime(2024, 1, 2, 0, 20, tzinfo=UTC), ["t", "replica"], "t")
    ids = [j.report_id for j in other if j.target == "replica"]
    assert all(i and i.startswith("perf-report-") and len(i.split("-")) == 5 for i in ids)  # hashed target suffix
    off = report_config(pg_cluster.dsn(), "x", reports={"daily": False, "weekly": False})
    assert due_jobs(off, datetime(2024, 1, 2, tzinfo=UTC), ["t"], "t") == []


def test_scheduler_generates_once_and_delivers(pg_cluster: Cluster, tmp_path: Path) -> None:
    with pg_cluster.connect() as conn:
        fx.load(conn, "report_sched")
    with Receiver() as receiver:
        config = scheduler_config(pg_cluster, "report_sched", tmp_path, receiver, weekly=False, every="2h")
        client = StoreClient(config)
        try:
            scheduler = ReportScheduler(config, ReportService(config, client))
            scheduler._next_periodic = datetime(2024, 1, 1, 16, tzinfo=UTC)
            made = scheduler.run_once(datetime(2024, 1, 2, 0, 20, tzinfo=UTC))
            assert [r.kind for r in made] == ["daily", "periodic"]
            daily, periodic = made
            assert daily.report_id == "perf-report-daily-1704153600000"
            assert (periodic.period.start, periodic.period.end) == (datetime(2024, 1, 1, 22, 20, tzinfo=UTC),
                                                                    datetime(2024, 1, 2, 0, 20, tzinfo=UTC))
            # Nothing new at the next round: the daily report exists, the next periodic one is not due.
            assert scheduler.run_once(datetime(2024, 1, 2, 0, 21, tzinfo=UTC)) == []
            # A second process (a fresh scheduler) finds the daily report in the store.
            assert ReportScheduler(config, ReportService(config, client)).run_once(
                datetime(2024, 1, 2, 1, 0, tzinfo=UTC)) == []
            # A day without samples gets no report.
            assert ReportScheduler(config, ReportService(config, client)).run_once(
                datetime(2024, 1, 5, 1, 0, tzinfo=UTC)) == []
            stored = pg_cluster.execute("SELECT kind FROM report_sched.performance_reports ORDER BY kind")
            assert stored == [("daily",), ("periodic",)]
        finally:
            client.close()
    hooks = [r for r in receiver.received if r[0] == "/hook"]
    slack = [r for r in receiver.received if r[0] == "/slack"]
    assert [h[2]["report_id"] for h in hooks] == [daily.report_id, periodic.report_id]
    assert hooks[0][1]["X-Pgperf-Report-Url"] == f"https://pgperf.example.com/reports/{daily.report_id}"
    assert hooks[0][2]["summary"]["total_queries"] == daily.summary.total_queries
    assert len(slack) == 2
    assert f"<https://pgperf.example.com/reports/{daily.report_id}|Open the report>" in slack[0][2]["text"]
    assert slack[0][2]["text"].startswith("📊 Daily Performance Report")


def test_delivery_failures_are_logged_not_raised(pg_cluster: Cluster, web_store: str, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    config = report_config(pg_cluster.dsn(), web_store, reports={
        "webhook_url": "http://127.0.0.1:1/hook", "slack_webhook_url_file": str(tmp_path / "missing")})
    client = StoreClient(config)
    try:
        report = ReportService(config, client).generate(fx.WINDOW_START, fx.WINDOW_START + timedelta(hours=1),
                                                        catalog=False, store=False)
    finally:
        client.close()
    problems = deliver(config, report)
    assert problems == ["webhook unreachable: ConnectionError", "cannot read reports.slack_webhook_url_file: "
                        "No such file or directory"]
    assert "delivery failed" in caplog.text
    with Receiver(status=500) as receiver:
        failing = report_config(pg_cluster.dsn(), web_store, reports={"webhook_url": receiver.url + "/hook"})
        assert deliver(failing, report) == ["webhook answered HTTP 500"]


def test_query_texts_hidden_over_http_unless_enabled(served: tuple[Exporter, ReportService],
                                                      pg_cluster: Cluster, web_store: str) -> None:
    exporter, service = served
    report = service.generate(fx.WINDOW_START, fx.WINDOW_END, kind="daily", now=fx.NOW, catalog=fx.CATALOG)
    text = "SELECT COUNT(*) FROM player_statistics"
    assert text in json.dumps(report.to_json())  # the store keeps them
    client = signed_in(exporter)
    for path in (f"/reports/{report.report_id}", f"/api/v1/reports/{report.report_id}?format=text",
                 f"/api/v1/reports/{report.report_id}"):
        body = (client.get(path) if path.startswith("/reports/") else exporter.get(path, headers=AUTH)).text
        assert text not in body and "player_statistics WHERE" not in body, path
        assert "query text hidden" in body
    exposed = report_config(pg_cluster.dsn(), web_store, api={"token": TOKEN}, expose_query_text=True)
    exporter.app.apply_config(exposed)
    assert text in exporter.get(f"/api/v1/reports/{report.report_id}?format=text", headers=AUTH).text


def test_reload_applies_report_settings(pg_cluster: Cluster) -> None:
    """A reload reaches the reports: their thresholds and schedule (reports off, then on)."""
    off = report_config(pg_cluster.dsn(), "report_reload", reports={"daily": False, "weekly": False})
    monitor = Monitor(off)
    assert monitor.reports is not None and monitor.scheduler is not None
    try:
        monitor.scheduler.start()
        assert monitor.scheduler._thread is None  # nothing scheduled
        on = report_config(pg_cluster.dsn(), "report_reload", thresholds={"slow_query_time_ms": 50},
                           reports={"daily": False, "weekly": False, "every": "10m"})
        changed = monitor.reload(on)
        assert changed == ["reports", "thresholds"]
        assert monitor.reports.settings.thresholds.slow_query_time_ms == 50
        assert monitor.scheduler.config is on and monitor.scheduler._thread is not None
        assert monitor.scheduler.poll == 30.0 and monitor.scheduler._next_periodic is not None
    finally:
        monitor.scheduler.stop()
        monitor.stop()
