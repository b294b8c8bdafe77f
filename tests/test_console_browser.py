"""The console in a real browser: headless Chromium driven by Selenium, against a real
pgperf whose alerts come from a real Alertmanager and whose samples come from a real
PostgreSQL.

Signing in, an alert appearing without a reload, acknowledging it (the silence exists in
Alertmanager), resolving it, the audit trail; a viewer who cannot act; markup in an
alert shown as text; the overview following a burst of connections within one sampling
interval; TLS and basic authentication in front. Every page is screenshotted into the
test artifacts (``browser.ARTIFACTS``) and checked for errors in the browser's console.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from browser import ARTIFACTS, Browser
from fix_bundle import Process, post_alerts, start_alertmanager
from helpers import Exporter, make_config, wait_until
from pgperf.http.webconfig import load_web_config
from test_tls import PASSWORD, _web_config, pki  # noqa: F401  (pki: the module-scoped fixture)
from tools.cluster import Cluster, free_port

pytestmark = [pytest.mark.bundle, pytest.mark.slow]

OPERATOR = "operator-token-browser-01"
VIEWER = "viewer-token-browser-01"
SCHEMA = "console_browser"
INTERVAL = 2.0


class Stack:
    """Alertmanager → pgperf (store, console) → the browser."""

    def __init__(self, am: Process, exporter: Exporter, browser: Browser) -> None:
        self.am = am
        self.exporter = exporter
        self.browser = browser
        self.samples: list[tuple[int, float]] = []  # (seq, taken_at) of every sample
        exporter.app.events.on("sample", lambda snap: self.samples.append((snap.seq, snap.taken_at)))

    @property
    def url(self) -> str:
        return self.exporter.url

    def api(self, path: str) -> Any:
        response = requests.get(self.url + path, headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=10)
        response.raise_for_status()
        return response.json()

    def alert(self, name: str) -> dict[str, Any] | None:
        return next((a for a in self.api("/api/v1/alerts?state=firing,acknowledged,resolved")["alerts"]
                     if a["metric"] == name), None)

    def page(self, path: str) -> None:
        self.browser.get(self.url + path)

    def no_console_errors(self, where: str) -> None:
        errors = self.browser.console_errors()
        assert errors == [], f"{where}: {errors}"


def _am_alert(name: str, **annotations: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "severity": "warning", "instance": "db1:9187"},
            "annotations": {"summary": f"{name} fired", "value": "3.5", "threshold": "2", **annotations}}


@pytest.fixture(scope="module")
def stack(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("console-browser")
    token_file = work / "token"
    token_file.write_text(OPERATOR)
    port = free_port()
    am_dir = work / "alertmanager"
    am_dir.mkdir()
    (am_dir / "alertmanager.yml").write_text(f"""
route:
  receiver: pgperf
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: pgperf
    webhook_configs:
      - url: http://127.0.0.1:{port}/api/v1/alerts/webhook
        send_resolved: true
        http_config:
          authorization:
            credentials_file: {token_file}
""")
    am = start_alertmanager(am_dir / "alertmanager.yml", am_dir)
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    config = make_config(pg_cluster.dsn(), sampling_interval=INTERVAL, expose_query_text=True,
                         api={"token": OPERATOR, "viewer_token": VIEWER},
                         store={"enabled": True, "schema": SCHEMA, "spool_dir": str(work / "spool")},
                         alerts={"alertmanager_url": am.url}, web={"listen_address": f"127.0.0.1:{port}"})
    exporter = Exporter(config, address=f"127.0.0.1:{port}")
    browser: Browser | None = None
    try:
        exporter.start()
        wait_until(lambda: exporter.monitor.store and exporter.monitor.store.up, timeout=30, message="store up")
        browser = Browser()
        yield Stack(am, exporter, browser)
    finally:
        if browser is not None:
            browser.quit()
        exporter.stop()
        am.stop()


def test_sign_in(stack: Stack) -> None:
    b = stack.browser
    stack.page("/alerts")
    assert b.path == "/login?next=/alerts"  # no page without a session
    b.screenshot("login")
    b.find("#token").send_keys("not-a-token")
    b.find("form[action='/login'] button").click()
    assert "That is not a valid API token." in b.wait(lambda: b.find_all(".problem"), message="the refusal")[0].text
    b.console()  # the refused sign-in (401) is logged as a failed load: expected here
    b.find("#token").send_keys(OPERATOR)
    b.find("form[action='/login'] button").click()
    b.wait(lambda: b.path == "/alerts", message="back to the page asked for")
    cookie = next(c for c in b.driver.get_cookies() if c["name"] == "pgperf_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # plain HTTP here
    assert b.js("return document.cookie").find("pgperf_session") < 0  # scripts cannot read it
    stack.no_console_errors("sign-in")


def test_the_overview_follows_a_burst_of_connections(stack: Stack, pg_cluster: Cluster) -> None:
    """Connections opened at once show on the overview, without a reload, from the first
    sample taken after them: within one sampling interval."""
    b = stack.browser
    wait_until(lambda: len(stack.samples) >= 2, timeout=30, message="two samples")
    stack.page("/")
    section = "section[data-target] [data-live]"
    b.wait(lambda: b.find(section).get_attribute("data-seq") != "0", message="a sample on the page")
    b.wait(lambda: b.find("#live-state").get_attribute("data-state") == "live", message="the event stream open")
    b.js("window.stayedOnPage = true")
    before = int(b.text("[data-field=connections]"))
    # The page itself notes when the burst is drawn (the browser's clock is this machine's):
    # the figure does not depend on how often the test polls the page.
    b.js("""window.burstShownAt = null;
            const wanted = arguments[0];
            new MutationObserver(() => {
              const field = document.querySelector('[data-field=connections]');
              if (window.burstShownAt === null && field && parseInt(field.textContent, 10) >= wanted) {
                window.burstShownAt = Date.now() / 1000;
              }
            }).observe(document.body, {subtree: true, childList: true, characterData: true});""", before + 15)
    burst = [psycopg.connect(pg_cluster.dsn(), autocommit=True) for _ in range(15)]
    try:
        changed_at = time.time()
        b.wait(lambda: int(b.text("[data-field=connections]")) >= before + 15, timeout=30,
               message="the burst on the overview")
        shown = float(b.js("return window.burstShownAt"))
        seq = int(b.find(section).get_attribute("data-seq"))
        assert b.js("return window.stayedOnPage") is True  # updated in place, not reloaded
        taken_at = dict(stack.samples)[seq]
        # The sample that shows the burst started at most one interval after it (plus the
        # scheduler's wake-up), and was on the page within a second of starting (its
        # queries, the event stream, the drawing): the overview follows within one
        # sampling interval of the change, plus the time one sample takes.
        assert taken_at <= changed_at + INTERVAL + 0.5, (taken_at - changed_at, seq, stack.samples[-5:])
        assert 0 <= shown - taken_at <= 1.0, (shown - taken_at, seq)
        latency = shown - changed_at
        print(f"the burst showed in the browser {latency:.2f} s after the connections were opened, "
              f"{shown - taken_at:.2f} s after the sample that saw it began (sampling interval {INTERVAL:g} s)")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "overview-latency.json").write_text(json.dumps(
            {"seconds": round(latency, 3), "sampling_interval": INTERVAL, "sample_started_after_change":
             round(taken_at - changed_at, 3), "drawn_after_sample_started": round(shown - taken_at, 3)}))
        b.screenshot("overview")
    finally:
        for conn in burst:
            conn.close()
    stack.no_console_errors("overview")


def test_an_alert_arrives_live_is_acknowledged_and_resolved(stack: Stack) -> None:
    b = stack.browser
    stack.page("/alerts")
    b.wait(lambda: b.find("#live-state").get_attribute("data-state") == "live", message="the event stream open")
    b.js("window.stayedOnPage = true")
    post_alerts(stack.am, [_am_alert("PgperfBrowserProbe")])
    row = "tr[data-alert-id]"
    b.wait(lambda: any("PgperfBrowserProbe" in r.text for r in b.find_all(row)), timeout=30,
           message="the alert on the page, without a reload")
    assert b.js("return window.stayedOnPage") is True
    assert "PgperfBrowserProbe" in b.text("#toasts")
    b.screenshot("alerts")
    alert = stack.alert("PgperfBrowserProbe")
    assert alert is not None
    alert_id = alert["alert_id"]

    b.find(f"tr[data-alert-id='{alert_id}'] button[data-action=ack]").click()
    b.wait(lambda: b.find(f"tr[data-alert-id='{alert_id}'] [data-field=status]").text == "acknowledged",
           message="acknowledged")
    silence_id = stack.api(f"/api/v1/alerts/{alert_id}")["silence_id"]
    silence = requests.get(f"{stack.am.url}/api/v2/silence/{silence_id}", timeout=5).json()
    assert silence["status"]["state"] == "active" and silence["createdBy"] == "operator"
    assert {m["name"]: m["value"] for m in silence["matchers"]}["alertname"] == "PgperfBrowserProbe"

    stack.page(f"/alerts/{alert_id}")
    assert b.text("[data-field=silence-state]") == "active"
    # Prometheus (here: the test) still fires it: resolving by hand is refused, and says why.
    b.find("button[data-action=resolve]").click()
    b.wait(lambda: b.find_all("#refused"), message="the refusal of a still-firing alert")
    assert "Prometheus still fires this alert" in b.text("#refused")
    b.screenshot("alert-still-firing")
    assert stack.api(f"/api/v1/alerts/{alert_id}")["status"] == "acknowledged"
    # The condition clears: Alertmanager holds the alert no more, and resolving by hand works.
    ended = _am_alert("PgperfBrowserProbe")
    ended["endsAt"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    post_alerts(stack.am, [ended])
    wait_until(lambda: not [a for a in requests.get(f"{stack.am.url}/api/v2/alerts", timeout=5).json()
                            if a["labels"].get("alertname") == "PgperfBrowserProbe"],
               timeout=30, message="the alert gone from Alertmanager")
    stack.page(f"/alerts/{alert_id}")
    b.find("button[data-action=resolve]").click()
    b.wait(lambda: b.text("[data-field=status]") == "resolved", message="resolved")
    assert requests.get(f"{stack.am.url}/api/v2/silence/{silence_id}", timeout=5).json()["status"]["state"] == "expired"
    # The page may be drawn again as the resolution's event arrives: read its tables
    # through b.wait, which takes a stale element as "not yet".
    trail = b.wait(lambda: [[td.text for td in tr.find_elements("css selector", "td")]
                            for tr in b.find_all("#audit tr")[1:]], message="the audit trail")
    assert [(t[1], t[2], t[3], t[4]) for t in trail] == [("acknowledge", "operator", "operator", "127.0.0.1"),
                                                          ("resolve", "operator", "operator", "127.0.0.1")], trail
    assert all(t[0].endswith(" UTC") for t in trail)  # when
    timeline = b.wait(lambda: [tr.text for tr in b.find_all("#timeline tr")[1:]], message="the timeline")
    assert [line.split(" UTC ")[1] for line in timeline] == ["fired", "acknowledged operator", "resolved operator"]
    b.screenshot("alert")
    stack.no_console_errors("alert")


def test_markup_in_an_alert_is_shown_as_text(stack: Stack) -> None:
    b = stack.browser
    markup = '<script>window.pwned = 1</script><img src="x" onerror="window.pwned = 2"><b>bold</b>'
    stack.page("/alerts")
    post_alerts(stack.am, [_am_alert("PgperfMarkupProbe", summary=f"look: {markup}", description=markup)])
    b.wait(lambda: any("PgperfMarkupProbe" in r.text for r in b.find_all("tr[data-alert-id]")), timeout=30,
           message="the alert on the page")
    assert f"look: {markup}" in b.text("#alert-list")  # the characters, as text
    assert b.js("return window.pwned") is None and not b.find_all("#alert-list img, #alert-list b")
    alert = stack.alert("PgperfMarkupProbe")
    assert alert is not None
    stack.page(f"/alerts/{alert['alert_id']}")
    assert markup in b.text("#annotations")
    assert b.js("return window.pwned") is None and not b.find_all("#annotations img, #annotations b")
    b.screenshot("alert-markup")
    stack.no_console_errors("markup")


def test_every_page_renders_without_console_errors(stack: Stack) -> None:
    b = stack.browser
    stack.page("/")
    link = b.wait(lambda: b.find_all("a[href^='/statements/']"), timeout=20, message="a statement on the overview")
    statement = link[0].get_attribute("href")
    b.get(statement)
    b.wait(lambda: "pgperfCharts" in b.js("return Object.keys(window)"), message="charts.js ran")
    b.screenshot("statement")
    stack.no_console_errors("statement")
    stack.page("/targets")
    assert b.find_all("tr[data-collector='statements'] .badge.ok")
    b.screenshot("targets")
    stack.no_console_errors("targets")
    stack.page("/reports/")
    b.find("select[name=window]").send_keys("the last hour")
    b.find("button[data-action=generate]").click()
    b.wait(lambda: b.path.startswith("/reports/perf-report-"), timeout=60, message="the new report")
    b.wait(lambda: b.js("return window.pgperfCharts && Object.keys(window.pgperfCharts.charts).length") >= 5,
           message="the report's charts drawn")
    b.screenshot("report")
    stack.no_console_errors("report")
    stack.page("/reports/")
    b.screenshot("reports")
    stack.no_console_errors("reports")


def test_a_viewer_cannot_acknowledge(stack: Stack) -> None:
    b = stack.browser
    post_alerts(stack.am, [_am_alert("PgperfViewerProbe")])
    alert = wait_until(lambda: stack.alert("PgperfViewerProbe"), timeout=30, message="the alert recorded")
    b.sign_in(stack.url, VIEWER)
    stack.page("/alerts")
    row = f"tr[data-alert-id='{alert['alert_id']}']"
    ack = b.find(f"{row} button[data-action=ack]")
    assert not ack.is_enabled() and ack.get_attribute("title") == "Only an operator can acknowledge"
    assert not b.find(f"{row} button[data-action=resolve]").is_enabled()
    b.screenshot("alerts-viewer")
    stack.no_console_errors("viewer")
    b.js("arguments[0].disabled = false; arguments[0].click()", ack)  # the form posted anyway: refused
    b.wait(lambda: "Forbidden" in b.text("h1"), message="the refusal")
    assert "needs the operator role" in b.text("main")
    assert stack.api(f"/api/v1/alerts/{alert['alert_id']}")["status"] == "firing"
    b.console()  # the 403 of that post is logged as a failed load: expected here
    b.sign_in(stack.url, OPERATOR)


def test_tls_and_basic_authentication_in_front(pg_cluster: Cluster, pki: Path) -> None:  # noqa: F811
    config = make_config(pg_cluster.dsn(), sampling_interval=1, api={"token": OPERATOR})
    exporter = Exporter(config, web_config=load_web_config(str(_web_config(pki))))
    browser = Browser(ca_file=pki / "ca.crt")
    try:
        exporter.start()
        base = f"https://127.0.0.1:{exporter.server.port}"
        assert requests.get(base + "/login", verify=str(pki / "ca.crt"), timeout=10).status_code == 401
        credentials = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
        browser.driver.execute_cdp_cmd("Network.enable", {})
        browser.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {credentials}"}})
        browser.sign_in(base, OPERATOR)
        cookie = next(c for c in browser.driver.get_cookies() if c["name"].endswith("pgperf_session"))
        assert cookie["name"] == "__Host-pgperf_session" and cookie["secure"] and cookie["httpOnly"]
        assert cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        live = "section[data-target] [data-live]"
        browser.wait(lambda: browser.find(live).get_attribute("data-seq") != "0", timeout=20, message="a sample")
        first = int(browser.find(live).get_attribute("data-seq"))
        browser.wait(lambda: int(browser.find(live).get_attribute("data-seq")) > first, timeout=20,
                     message="a live update through TLS and basic authentication")
        browser.screenshot("overview-tls")
        assert browser.console_errors() == []
        logout = browser.find("form[action='/logout'] button")
        logout.click()
        browser.wait(lambda: browser.path.startswith("/login"), message="signed out")
        browser.get(base + "/targets")
        assert browser.path == "/login?next=/targets"
    finally:
        browser.quit()
        exporter.stop()
