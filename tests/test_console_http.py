"""The console over HTTP, against a real pgperf with its store on a real PostgreSQL: signing
in, the session cookie, CSRF, sign-out, roles, headers, the event stream, escaping, and
what the pages read from the store (statements, insight's plans and advice, reports).

The same flows in a real browser are in test_console_browser.py."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from console_client import ConsoleClient, csrf_of
from helpers import Exporter, make_config, wait_until
from pgperf.config import Config
from test_alerts import payload
from tools.cluster import Cluster

OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789"
SCHEMA = "console_http"
PAGES = ("/", "/alerts", "/alerts/some-id", "/statements/123", "/targets", "/reports/", "/reports/perf-report-x")


def console_config(dsn: str, schema: str, tmp: Path, **flags: Any) -> Config:
    base: dict[str, Any] = {
        "sampling_interval": 1, "api": {"token": OPERATOR, "viewer_token": VIEWER},
        "store": {"enabled": True, "schema": schema, "spool_dir": str(tmp / "spool")},
    }
    base.update(flags)
    return make_config(dsn, **base)


@pytest.fixture(scope="module")
def served(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    exporter = Exporter(console_config(pg_cluster.dsn(), SCHEMA, tmp_path_factory.mktemp("console")),
                        address="127.0.0.1:0").start()
    try:
        wait_until(lambda: exporter.monitor.store and exporter.monitor.store.up, timeout=30, message="store up")
        wait_until(lambda: all(t.latest for t in exporter.sampler.targets.values()), message="first sample")
        yield exporter
    finally:
        exporter.stop()


def signed_in(exporter: Exporter, token: str = OPERATOR) -> ConsoleClient:
    client = ConsoleClient(exporter.url)
    response = client.login(token)
    assert response.status_code == 303, response.text
    return client


def fire(exporter: Exporter, name: str, fingerprint: str, **annotations: str) -> str:
    """An alert recorded through the webhook, as Alertmanager posts it; its id."""
    response = requests.post(exporter.url + "/api/v1/alerts/webhook", timeout=10,
                             json=payload(name=name, fingerprint=fingerprint, **annotations),
                             headers={"Authorization": f"Bearer {OPERATOR}"})
    assert response.status_code == 200, response.text
    alerts = requests.get(exporter.url + "/api/v1/alerts?state=firing", timeout=10,
                          headers={"Authorization": f"Bearer {OPERATOR}"}).json()["alerts"]
    return str(next(a["alert_id"] for a in alerts if a["metric"] == name))


def status_of(exporter: Exporter, alert_id: str) -> str:
    return str(requests.get(f"{exporter.url}/api/v1/alerts/{alert_id}", timeout=10,
                            headers={"Authorization": f"Bearer {OPERATOR}"}).json()["status"])


# -- signing in ------------------------------------------------------------------------------

def test_no_page_without_a_session(served: Exporter) -> None:
    anonymous = ConsoleClient(served.url)
    for path in PAGES:
        response = anonymous.get(path)
        assert response.status_code == 303, path
        assert response.headers["Location"] == "/login?next=" + path, path
    query = anonymous.get("/alerts?state=resolved&since=1h")
    assert query.headers["Location"] == "/login?next=/alerts%3Fstate%3Dresolved%26since%3D1h"
    events = anonymous.get("/events")
    assert events.status_code == 401 and "sign in" in events.json()["error"]
    for path in ("/alerts/x/ack", "/alerts/x/resolve", "/reports/", "/logout"):
        response = anonymous.post(path, {"csrf_token": "x"})
        assert response.status_code == 303 and response.headers["Location"] == "/login", path
    assert anonymous.get("/login").status_code == 200


def test_sign_in_sets_a_safe_cookie_with_a_new_id_each_time(served: Exporter) -> None:
    client = ConsoleClient(served.url)
    first = client.login(OPERATOR, "/targets")
    assert first.status_code == 303 and first.headers["Location"] == "/targets"
    cookie = next(c for c in first.raw.headers.getlist("Set-Cookie") if c.startswith("pgperf_session="))
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age", "samesite"} <= flags and "secure" not in flags  # plain HTTP here
    assert "SameSite=Strict" in cookie and "Path=/" in cookie and "Domain" not in cookie
    old = client.session_id()
    assert old and client.get("/targets").status_code == 200
    again = client.login(VIEWER)
    new = client.session_id()
    assert again.status_code == 303 and new and new != old  # a new id at each sign-in
    planted = ConsoleClient(served.url)
    planted.http.cookies.set("pgperf_session", old)
    assert planted.get("/targets").status_code == 303  # the previous session ended
    assert "viewer (viewer)" in client.get("/targets").text


def test_sign_in_needs_the_form_token_and_a_valid_api_token(served: Exporter) -> None:
    client = ConsoleClient(served.url)
    form = client.get("/login")
    token = csrf_of(form.text)
    assert client.post("/login", {"token": OPERATOR}).status_code == 403
    assert client.post("/login", {"token": OPERATOR, "csrf_token": token + "x"}).status_code == 403
    stranger = ConsoleClient(served.url)  # the form's token without its cookie
    assert stranger.post("/login", {"token": OPERATOR, "csrf_token": token}).status_code == 403
    wrong = client.post("/login", {"token": "not-the-token-at-all", "csrf_token": token})
    assert wrong.status_code == 401 and "That is not a valid API token." in wrong.text
    assert client.session_id() is None
    assert client.post("/login", {"token": OPERATOR, "csrf_token": csrf_of(wrong.text)}).status_code == 303


def test_after_sign_in_back_to_this_server_only(served: Exporter) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = ConsoleClient(served.url).login(OPERATOR, target)
        assert response.status_code == 303 and response.headers["Location"] == "/", target


def test_sign_out_ends_the_session(served: Exporter) -> None:
    client = signed_in(served)
    session = client.session_id()
    assert client.post("/logout", {}).status_code == 403  # no CSRF token: still signed in
    assert client.get("/targets").status_code == 200
    out = client.post("/logout", {"csrf_token": client.csrf()})
    assert out.status_code == 303 and out.headers["Location"] == "/login"
    replay = ConsoleClient(served.url)
    replay.http.cookies.set("pgperf_session", session)
    assert replay.get("/targets").status_code == 303


def test_a_reload_without_the_token_ends_its_sessions(served: Exporter) -> None:
    viewer = signed_in(served, VIEWER)
    assert viewer.get("/targets").status_code == 200
    config = served.app.config
    try:
        served.app.apply_config(config.model_copy(update={"api": config.api.model_copy(update={"viewer_token": None})}))
        assert viewer.get("/targets").status_code == 303
    finally:
        served.app.apply_config(config)


# -- acting ----------------------------------------------------------------------------------

def test_actions_need_the_csrf_token(served: Exporter) -> None:
    alert_id = fire(served, "PgperfCsrfProbe", "csrf1")
    client = signed_in(served)
    assert client.post(f"/alerts/{alert_id}/ack", {}).status_code == 403
    assert client.post(f"/alerts/{alert_id}/ack", {"csrf_token": "forged"}).status_code == 403
    other = signed_in(served)  # another session's token is no good either
    assert client.post(f"/alerts/{alert_id}/ack", {"csrf_token": other.csrf()}).status_code == 403
    assert status_of(served, alert_id) == "firing"
    done = client.post(f"/alerts/{alert_id}/ack", {"csrf_token": client.csrf(), "return_to": "/alerts"})
    assert done.status_code == 303 and done.headers["Location"] == "/alerts"
    assert status_of(served, alert_id) == "acknowledged"
    assert client.post(f"/alerts/{alert_id}/resolve", {"csrf_token": client.csrf()}).status_code == 303
    assert status_of(served, alert_id) == "resolved"
    again = client.post(f"/alerts/{alert_id}/ack", {"csrf_token": client.csrf()})
    assert again.status_code == 409 and "resolved" in again.text  # the error page, not a 500
    assert client.post("/alerts/no-such-alert/ack", {"csrf_token": client.csrf()}).status_code == 404


def test_a_viewer_sees_disabled_buttons_and_cannot_act(served: Exporter) -> None:
    alert_id = fire(served, "PgperfViewerProbe", "viewer1")
    viewer = signed_in(served, VIEWER)
    page = viewer.get(f"/alerts/{alert_id}").text
    assert 'data-action="ack" disabled title="Only an operator can acknowledge"' in page
    refused = viewer.post(f"/alerts/{alert_id}/ack", {"csrf_token": csrf_of(page)})
    assert refused.status_code == 403 and "operator" in refused.text
    assert viewer.post(f"/alerts/{alert_id}/resolve", {"csrf_token": csrf_of(page)}).status_code == 403
    assert viewer.post("/reports/", {"csrf_token": csrf_of(page), "window": "1h"}).status_code == 403
    assert status_of(served, alert_id) == "firing"
    operator_page = signed_in(served).get(f"/alerts/{alert_id}").text
    assert 'data-action="ack">' in operator_page


# -- what every answer carries -------------------------------------------------------------

def test_pages_and_the_api_send_csp_and_framing_headers(served: Exporter) -> None:
    client = signed_in(served)
    answers = [client.get(p) for p in ("/", "/alerts", "/targets", "/reports/", "/login")]
    answers += [requests.get(served.url + p, timeout=10) for p in ("/metrics", "/api/v1/alerts", "/nope")]
    for response in answers:
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp, response.url
        assert "unsafe-inline" not in csp and "default-src 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY" and response.headers["X-Content-Type-Options"] == "nosniff"
    for response in answers[:4]:
        assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store", response.url
        assert "<script>" not in response.text and " on" + "click=" not in response.text  # no inline script
    missing = answers[-1]
    assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("text/html")


def test_pages_escape_what_alerts_carry(served: Exporter) -> None:
    markup = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    alert_id = fire(served, "PgperfEscapeProbe", "escape1", summary=f"summary {markup}", description=markup)
    client = signed_in(served)
    for path in (f"/alerts/{alert_id}", "/alerts"):
        page = client.get(path).text
        assert markup not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;window.pwned=1&lt;/script&gt;&lt;img src=x onerror=&#34;window.pwned=2&#34;&gt;" in page


# -- the event stream ---------------------------------------------------------------------------

def _events(response: requests.Response, count: int) -> list[dict[str, Any]]:
    """The next *count* sample events of an open stream."""
    found: list[dict[str, Any]] = []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            found.append(json.loads(line[6:]))
            if len(found) == count:
                break
    return found


def test_one_event_per_sample(served: Exporter) -> None:
    client = signed_in(served)
    target = next(iter(served.sampler.targets))
    with client.http.get(served.url + "/events", stream=True, timeout=30) as stream:
        assert stream.status_code == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        current, *following = _events(stream, 4)
    assert current["target"] == target  # the latest sample first, then each new one
    seqs = [e["seq"] for e in following]
    assert seqs == list(range(seqs[0], seqs[0] + 3)), seqs
    event = following[-1]
    assert event["overview"]["connections"] >= 1 and 'data-live data-seq="' in event["html"]
    assert event["point"]["t"] == event["taken_at"]


def test_streams_are_bounded_and_end_when_the_server_stops(pg_cluster: Cluster, tmp_path: Path) -> None:
    config = console_config(pg_cluster.dsn(), SCHEMA, tmp_path, store={"enabled": False}, web={"threads": 2})
    exporter = Exporter(config).start()  # 2 threads: 1 stream at most
    ended = threading.Event()
    try:
        client = signed_in(exporter)
        stream = client.http.get(exporter.url + "/events", stream=True, timeout=30)
        assert stream.status_code == 200

        def drain() -> None:
            for _ in stream.iter_lines():
                pass
            ended.set()

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        refused = client.get("/events")
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"
        assert "event streams are open" in refused.json()["error"]
        assert client.get("/targets").status_code == 200  # pages are still served
    finally:
        exporter.stop()
    assert ended.wait(10), "the stream did not end when the server stopped"


# -- what pages read from the store ------------------------------------------------------------

def test_statement_page_history_text_plans_and_advice(served: Exporter, pg_cluster: Cluster) -> None:
    client = signed_in(served)
    pg_cluster.execute("CREATE TABLE IF NOT EXISTS console_probe_t (x int)")
    for _ in range(3):
        pg_cluster.execute("SELECT count(*) FROM console_probe_t WHERE x > 7")
    query_id = wait_until(lambda: pg_cluster.execute(
        f"SELECT query_id FROM {SCHEMA}.query_performance_metrics WHERE query_text LIKE '%console_probe_t%' LIMIT 1"),
        timeout=30, message="the probe statement stored")[0][0]
    page = client.get(f"/statements/{query_id}").text
    assert "Hidden: statement texts can hold" in page and "console_probe_t" not in page
    assert 'id="chart-statement"' in page and "No plan of this statement is recorded yet." in page
    assert "No index advice names this statement." in page
    plan = {"Plan": {"Node Type": "Seq Scan", "Relation Name": "pg_class", "Total Cost": 18.5, "Startup Cost": 0.0,
                     "Plan Rows": 3, "Filter": "(relname ~~ 'console_secret_%'::text)"}}
    pg_cluster.execute(f"INSERT INTO {SCHEMA}.statement_plans (target, datname, query_id, plan_hash, first_seen,"
                       " last_seen, total_cost, method, plan) VALUES ('t', 'postgres', %s, 'abc123', now(), now(),"
                       " 18.5, 'generic_plan', %s)", params=(query_id, json.dumps(plan)))
    pg_cluster.execute(f"INSERT INTO {SCHEMA}.index_advice (target, datname, schema_name, table_name, columns, sql,"
                       " query_ids, cost_before, cost_after, verified, status, first_seen, last_seen) VALUES"
                       " ('t', 'postgres', 'pg_catalog', 'pg_class', '{relname}', 'CREATE INDEX ON pg_class (relname)',"
                       " ARRAY[%s], 18.5, 4.2, 'heuristic', 'open', now(), now())", params=(query_id,))
    page = client.get(f"/statements/{query_id}").text
    assert "Seq Scan on pg_class (cost 0.00..18.50, 3 rows)" in page and "plan abc123" in page
    assert "console_secret_" not in page  # the plan's filter quotes the statement: hidden with it
    assert "CREATE INDEX ON pg_class (relname)" in page and "heuristic" in page and "not weighed" in page
    # Advice whose index would cost more to maintain than it saves is shown, said so, last.
    pg_cluster.execute(f"INSERT INTO {SCHEMA}.index_advice (target, datname, schema_name, table_name, columns, sql,"
                       " query_ids, cost_before, cost_after, verified, status, first_seen, last_seen, saving_per_second,"
                       " maintenance_per_second, write_verdict) VALUES ('t', 'postgres', 'pg_catalog', 'pg_class',"
                       " '{relnamespace}', 'CREATE INDEX ON pg_class (relnamespace)', ARRAY[%s], 99.5, 4.2, 'hypopg',"
                       " 'open', now(), now(), 0.25, 1606, 'write_heavy')", params=(query_id,))
    page = client.get(f"/statements/{query_id}").text
    assert "would cost more to maintain than it saves at the current rates" in page
    assert "saves 0.2, upkeep 1,606.0 planner cost units/s" in page
    assert page.index("CREATE INDEX ON pg_class (relname)") < page.index("CREATE INDEX ON pg_class (relnamespace)")
    config = served.app.config
    try:
        served.app.apply_config(config.model_copy(update={"expose_query_text": True}))
        shown = client.get(f"/statements/{query_id}").text
        assert "console_probe_t" in shown and "Filter: (relname ~~ &#39;console_secret_%&#39;::text)" in shown
    finally:
        served.app.apply_config(config)
    assert client.get("/statements/not-a-number").status_code == 404


def test_statement_page_without_insight_tables(pg_cluster: Cluster, tmp_path: Path) -> None:
    """A store without insight's tables (another pgperf's, not migrated): "not recorded"."""
    schema = "console_no_insight"
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    exporter = Exporter(console_config(pg_cluster.dsn(), schema, tmp_path))
    exporter.server.start()
    try:
        assert exporter.app.client is not None
        exporter.app.client.migrate()
        pg_cluster.execute(f"DROP TABLE {schema}.statement_plans, {schema}.index_advice")
        page = signed_in(exporter).get("/statements/42").text
        assert "this store has no plans table" in page and "this store has no index advice table" in page
        assert "The store holds no sample of this statement" in page
    finally:
        exporter.server.stop()
        exporter.app.stop()


def test_generate_a_report_now(served: Exporter) -> None:
    client = signed_in(served)
    listing = client.get("/reports/")
    assert 'data-action="generate">' in listing.text
    assert client.post("/reports/", {"window": "1h"}).status_code == 403  # no CSRF token
    bad = client.post("/reports/", {"csrf_token": csrf_of(listing.text), "window": "5y"})
    assert bad.status_code == 400 and "window: expected one of" in bad.text
    made = client.post("/reports/", {"csrf_token": csrf_of(listing.text), "window": "1h"})
    assert made.status_code == 303 and made.headers["Location"].startswith("/reports/perf-report-")
    page = client.get(made.headers["Location"])
    assert page.status_code == 200 and 'id="chart-throughput"' in page.text
    assert "<script>" not in page.text  # linked scripts only: the chart library is not in the page
    assert len(page.content) < 300_000
    assert made.headers["Location"].removeprefix("/reports/") in client.get("/reports/").text


def test_static_files_are_public_and_cached(served: Exporter) -> None:
    page = signed_in(served).get("/").text
    for name in ("console.css", "console.js", "charts.js", "chart.umd.min.js"):
        start = page.index(f"/static/{name}?v=")
        url = page[start:page.index('"', start)]
        response = requests.get(served.url + url, timeout=10)  # no session needed: nothing secret
        assert response.status_code == 200 and "immutable" in response.headers["Cache-Control"], url


def test_the_api_does_not_take_the_session_cookie(served: Exporter) -> None:
    """The JSON API keeps its bearer tokens: a cross-site request carrying the cookie (the
    browser adds it) could otherwise act through the API without the page's CSRF token."""
    client = signed_in(served)
    assert client.get("/targets").status_code == 200
    for method, path in (("GET", "/api/v1/alerts"), ("POST", "/api/v1/alerts/x/ack"), ("POST", "/api/v1/reports")):
        response = client.http.request(method, served.url + path, timeout=10)
        assert response.status_code == 401 and "Bearer" in response.json()["error"], (method, path)


# -- the alert list's filters -------------------------------------------------------------------

def _webhook(exporter: Exporter, name: str, *, severity: str, target: str, starts: datetime) -> str:
    """An alert of *target* (the rules' ``target`` label) posted as Alertmanager posts it; its id."""
    body = payload(name=name, severity=severity, fingerprint=f"filter-{name}",
                   starts=starts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    body["alerts"][0]["labels"]["target"] = target
    response = requests.post(exporter.url + "/api/v1/alerts/webhook", json=body, timeout=10,
                             headers={"Authorization": f"Bearer {OPERATOR}"})
    assert response.status_code == 200, response.text
    found = requests.get(exporter.url + "/api/v1/alerts?state=firing&since=30d", timeout=10,
                         headers={"Authorization": f"Bearer {OPERATOR}"}).json()["alerts"]
    return str(next(a["alert_id"] for a in found if a["metric"] == name))


def test_the_alert_list_filters_by_state_severity_target_and_time(served: Exporter) -> None:
    now = datetime.now(UTC)
    critical_a = _webhook(served, "PgperfFilterCriticalA", severity="critical", target="filter-a",
                          starts=now - timedelta(hours=1))
    warning_b = _webhook(served, "PgperfFilterWarningB", severity="warning", target="filter-b",
                         starts=now - timedelta(hours=1))
    old_a = _webhook(served, "PgperfFilterOldA", severity="warning", target="filter-a",
                     starts=now - timedelta(days=10))
    ours = {critical_a, warning_b, old_a}
    client = signed_in(served)

    def listed(query: str) -> set[str]:
        response = client.get("/alerts" + query)
        assert response.status_code == 200, (query, response.status_code, response.text[:300])
        return set(re.findall(r'<tr data-alert-id="([^"]+)"', response.text)) & ours

    # By default: open alerts (firing or acknowledged) of the last 7 days.
    assert listed("") == {critical_a, warning_b}
    assert listed("?since=30d") == ours
    assert listed("?severity=critical") == {critical_a}
    assert listed("?severity=warning&since=30d") == {warning_b, old_a}
    assert listed("?target=filter-a") == {critical_a}
    assert listed("?target=filter-a&since=30d") == {critical_a, old_a}
    assert listed("?target=filter-b&severity=critical") == set()
    since = (now - timedelta(days=11)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert listed(f"?since={since}&target=filter-a") == {critical_a, old_a}
    # Acknowledged: out of the firing list, in the acknowledged one.
    acknowledged = requests.post(f"{served.url}/api/v1/alerts/{warning_b}/ack", timeout=10,
                                 json={"by": "filter-test"}, headers={"Authorization": f"Bearer {OPERATOR}"})
    assert acknowledged.status_code == 200, acknowledged.text
    assert listed("?state=firing") == {critical_a}
    assert listed("?state=acknowledged") == {warning_b}
    assert listed("?state=firing&state=acknowledged") == {critical_a, warning_b}
    # The form shows the filters it applied.
    page = client.get("/alerts?severity=critical&target=filter-a").text
    assert re.search(r'<option value="filter-a"[^>]*selected', page) or 'value="filter-a" selected' in page
    # A bad filter is a clear 400, not a page of nothing.
    for query, words in (("?severity=urgent", "severity"), ("?since=yesterday", "since"), ("?state=open", "state")):
        response = client.get("/alerts" + query)
        assert response.status_code == 400, (query, response.status_code)
        assert words in response.text, (query, response.text[:300])
