"""The Alertmanager half of the bundle: alertmanager.yml and its templates, through amtool.

Routing is checked with ``amtool config routes test`` (the receivers an alert with given
labels reaches, in order), templates with ``amtool template render``. The tests that run a
real Alertmanager are in test_bundle.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools import bundle

pytestmark = pytest.mark.bundle

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
TEMPLATES = ROOT / "alertmanager" / "templates"
# Settings that hold a secret; each has a *_file twin, which is the only form allowed.
SECRET_KEYS = {"api_url", "routing_key", "service_key", "auth_password", "smtp_auth_password",
               "credentials", "password", "bot_token", "api_key", "auth_secret", "token"}


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("amtool")
    assert path, "amtool is missing: install the Debian package prometheus-alertmanager (make deps)"
    return subprocess.run([path, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def receivers_for(**labels: str) -> list[str]:
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}",
                    *(f"{k}={v}" for k, v in labels.items()))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().split(",")


def test_config_is_valid() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout and "5 receivers" in result.stdout, result.stdout
    assert list(TEMPLATES.glob("*.tmpl")), "no template matches templates/*.tmpl"


@pytest.mark.parametrize(("severity", "expected"), [
    ("critical", ["pgperf", "pagerduty", "slack"]),
    ("error", ["pgperf", "slack"]),
    ("warning", ["pgperf", "slack"]),
    ("info", ["pgperf", "webhook", "email"]),
    ("", ["pgperf", "slack"]),  # no severity: still reaches people
])
def test_routes_by_severity(severity: str, expected: list[str]) -> None:
    labels = {"alertname": "PgperfSomething", "instance": "db1:9187", "category": "availability"}
    if severity:
        labels["severity"] = severity
    assert receivers_for(**labels) == expected


def test_verify_receivers_critical_pages_and_warning_does_not() -> None:
    """The issue's acceptance check, with amtool's own verification flag."""
    def verify(receivers: str, **labels: str) -> subprocess.CompletedProcess[str]:
        return amtool("config", "routes", "test", f"--config.file={CONFIG}",
                      f"--verify.receivers={receivers}", *(f"{k}={v}" for k, v in labels.items()))

    assert verify("pgperf,pagerduty,slack", severity="critical", alertname="PgperfPostgresDown").returncode == 0
    assert verify("pgperf,slack", severity="warning", alertname="PgperfCacheHitRatioLow").returncode == 0
    assert "pagerduty" not in receivers_for(severity="warning", alertname="PgperfCacheHitRatioLow")
    assert verify("pgperf,pagerduty,slack", severity="warning").returncode != 0


def test_pgperf_gets_every_alert_first_and_resolved_ones_too() -> None:
    cfg = config()
    first = cfg["route"]["routes"][0]
    assert first["receiver"] == "pgperf" and first["continue"] is True and "matchers" not in first
    (pgperf,) = [r for r in cfg["receivers"] if r["name"] == "pgperf"]
    hook = pgperf["webhook_configs"][0]
    assert hook["url"] == "http://pgperf:9187" + bundle.WEBHOOK_PATH
    assert hook["send_resolved"] is True
    assert hook["http_config"]["authorization"]["credentials_file"].startswith(bundle.SECRETS_DIR)


def test_every_severity_has_its_own_timings() -> None:
    routes = config()["route"]["routes"]
    timings = {}
    for route in routes:
        for matcher in route.get("matchers", []):
            if m := re.fullmatch(r'severity="(\w+)"', matcher):
                timings.setdefault(m.group(1), set()).add(
                    (route["group_wait"], route["group_interval"], route["repeat_interval"]))
    assert set(timings) == {"critical", "error", "warning", "info"}
    assert all(len(t) == 1 for t in timings.values()), timings  # one timing per severity
    assert len({t for ts in timings.values() for t in ts}) == 4, "each severity its own pace"


def test_no_secret_is_written_inline() -> None:
    text = CONFIG.read_text()
    inline = [line for line in text.splitlines()
              if re.match(rf"\s*-?\s*({'|'.join(SECRET_KEYS)})\s*:", line)]
    assert not inline, inline

    def walk(node: Any, path: str = "") -> list[str]:
        if isinstance(node, dict):
            return [p for k, v in node.items() for p in
                    ([f"{path}.{k}"] if k in SECRET_KEYS else walk(v, f"{path}.{k}"))]
        if isinstance(node, list):
            return [p for item in node for p in walk(item, path)]
        return []

    assert not walk(config())
    files = bundle.secret_files()
    assert files and all(f.startswith(bundle.SECRETS_DIR + "/") for f in files), files
    assert {Path(f).name for f in files} == {
        "smtp-password", "pgperf-api-token", "pagerduty-routing-key", "slack-webhook-url", "webhook-token"}


def test_inhibition_rules() -> None:
    rules = config()["inhibit_rules"]

    def find(source: str) -> dict[str, Any]:
        return next(r for r in rules if source in r["source_matchers"])

    critical = find('severity="critical"')
    assert critical["target_matchers"] == ['severity=~"error|warning|info"']
    assert {"alertname", "instance"} <= set(critical["equal"])
    down = find('alertname="PgperfPostgresDown"')
    assert 'alertname!="PgperfPostgresDown"' in down["target_matchers"]
    assert down["equal"] == ["instance", "target"]
    exhausted = find('alertname="PgperfConnectionsExhausted"')
    assert exhausted["target_matchers"] == ['alertname="PgperfConnectionUtilizationHigh"']


ALERT = {
    "status": "firing",
    "labels": {"alertname": "PgperfConnectionsExhausted", "severity": "critical", "category": "connections",
               "instance": "pgperf:9187", "target": "main", "job": "pgperf"},
    "annotations": {
        "summary": "PostgreSQL is running out of connections",
        "description": "Client connections use 97% of max_connections on pgperf:9187/main (critical from 95%); "
                       "0 are left for non-superusers: new sessions are refused once none is left.",
        "value": "0.97", "threshold": "0.95",
        "runbook_url": "https://github.com/pgperf/pgperf/blob/main/docs/runbook.md#pgperfconnectionsexhausted",
        "dashboard_url": "https://grafana.example.com/d/pgperf-overview?var-instance=pgperf:9187&var-target=main",
    },
    "startsAt": "2024-01-02T03:04:05Z", "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "http://prometheus:9090/graph", "fingerprint": "0123456789abcdef",
}


@pytest.fixture
def notification(tmp_path: Path) -> Path:
    resolved = {**ALERT, "status": "resolved", "endsAt": "2024-01-02T03:10:00Z",
                "annotations": {**ALERT["annotations"], "summary": "An earlier one"}}
    labels = ALERT["labels"]
    data = {"receiver": "slack", "status": "firing", "externalURL": "http://alertmanager:9093",
            "groupLabels": {k: labels[k] for k in ("alertname", "instance", "target")},
            "commonLabels": labels, "commonAnnotations": {}, "alerts": [ALERT, resolved]}
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    return path


def render(name: str, data: Path, kind: str = "text") -> str:
    result = amtool("template", "render", f"--template.glob={TEMPLATES}/*.tmpl", f"--template.type={kind}",
                    f"--template.text={{{{ template \"{name}\" . }}}}", f"--template.data={data}")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_templates_used_by_the_receivers_exist() -> None:
    used = set(re.findall(r'template "([\w.]+)"', CONFIG.read_text()))
    defined = set(re.findall(r'define "([\w.]+)"', "".join(p.read_text() for p in TEMPLATES.glob("*.tmpl"))))
    assert used and used <= defined, used - defined


def test_slack_and_pagerduty_texts(notification: Path) -> None:
    title = "[FIRING:1] CRITICAL PgperfConnectionsExhausted on pgperf:9187/main"
    assert render("pgperf.slack.title", notification) == title
    assert render("pgperf.slack.color", notification) == "danger"
    text = render("pgperf.slack.text", notification)
    assert text.startswith("*PostgreSQL is running out of connections*\nClient connections use 97%")
    assert f"<{ALERT['annotations']['runbook_url']}|Runbook>" in text
    assert f"<{ALERT['annotations']['dashboard_url']}|Dashboard>" in text
    assert "since 2024-01-02 03:04:05 UTC" in text
    assert "*Resolved:* An earlier one (at 2024-01-02 03:10:00 UTC)" in text
    assert render("pgperf.pagerduty.description", notification) == (
        "PgperfConnectionsExhausted on pgperf:9187/main: PostgreSQL is running out of connections")


def test_email_texts(notification: Path) -> None:
    assert render("pgperf.email.subject", notification) == (
        "[pgperf] [FIRING:1] CRITICAL PgperfConnectionsExhausted on pgperf:9187/main")
    text = render("pgperf.email.text", notification)
    assert "Runbook:   " + ALERT["annotations"]["runbook_url"] in text
    html = render("pgperf.email.html", notification, kind="html")
    assert "<td>0.97 (threshold 0.95)</td>" in html
    assert 'href="https://grafana.example.com/d/pgperf-overview?var-instance=pgperf:9187&amp;var-target=main"' in html
    assert "instance=pgperf:9187 job=pgperf severity=critical target=main" in html


@pytest.mark.parametrize(("profile", "expected"), [
    ("production", {"critical": "pgperf,pagerduty,slack", "error": "pgperf,slack", "warning": "pgperf,slack",
                    "info": "pgperf,webhook,email"}),
    ("analytics", {"critical": "pgperf,slack", "error": "pgperf,slack", "warning": "pgperf,slack",
                   "info": "pgperf,webhook,email"}),
    ("development", {"critical": "pgperf", "error": "pgperf", "warning": "pgperf", "info": "pgperf,webhook"}),
])
def test_a_profile_routes_only_to_the_channels_it_turns_on(profile: str, expected: dict[str, str],
                                                           tmp_path: Path) -> None:
    rendered = bundle.alertmanager_config("http://pgperf:9187", profile=profile)
    path = tmp_path / "alertmanager.yml"
    path.write_text(bundle.dump(rendered))
    checked = amtool("check-config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for severity, receivers in expected.items():
        result = amtool("config", "routes", "test", f"--config.file={path}", f"severity={severity}", "alertname=X")
        assert result.stdout.strip() == receivers, (severity, result.stdout, result.stderr)
    if profile == "production":  # every channel on: the committed file as it is
        assert rendered == bundle.alertmanager_config("http://pgperf:9187")
    with pytest.raises(ValueError, match="unknown notification channels"):
        bundle.with_channels(config(), {"sms": False})
