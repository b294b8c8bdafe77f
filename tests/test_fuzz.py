"""Property tests: any input to the configuration loader, the DSN redaction and the
webhook parser gives a clear error or a valid result — never an unhandled exception,
never a 500."""

from __future__ import annotations

import json
import string
from datetime import timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from helpers import make_config
from pgperf.alerts.webhook import WebhookError, parse_webhook
from pgperf.config import Config, ConfigError, env_variables, load_config
from pgperf.redact import redact
from tools.cluster import Cluster

# -- DSN redaction -------------------------------------------------------------------------

passwords = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " ", min_size=1, max_size=30)


@given(secret=passwords, user=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
       host=st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True),
       key=st.sampled_from(["password", "sslpassword", "PGPASSWORD", "Password"]),
       scheme=st.sampled_from(["postgresql", "postgres", "http", "https", "redis", "amqp+ssl"]))
def test_redaction_hides_every_form(secret: str, user: str, host: str, key: str, scheme: str) -> None:
    token = "Zq9" + secret  # a prefix that appears nowhere else in the DSN
    uri_secret = quote(token, safe="")
    escaped = token.replace("\\", "\\\\").replace("'", "\\'")
    forms = [
        f"{scheme}://{user}:{uri_secret}@{host}:5432/app",
        f"postgresql://{user}@{host}/app?sslmode=require&{key}={uri_secret}",
        f"host={host} user={user} {key}='{escaped}' dbname=app",
        f"connection to {scheme}://{user}:{uri_secret}@{host}/db failed",
    ]
    if not any(c in token for c in " '\\"):
        forms.append(f"host={host} {key}={token} user={user}")
    for form in forms:
        cleaned = redact(form)
        assert token not in cleaned and uri_secret not in cleaned, (form, cleaned)


@given(st.text(max_size=300))
def test_redaction_never_fails(text: str) -> None:
    assert isinstance(redact(text), str)


# -- configuration loader ----------------------------------------------------------------

KEYS = sorted({str(p[-1]) for p in env_variables().values()} | {"thresholds", "collectors", "store", "web", "targets"})
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["10s", "-1", "1m30s", "auto", "development", "fast"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=5)), max_leaves=20)
documents = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), values, max_size=8)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(document=documents)
def test_config_file_gives_config_or_clear_error(tmp_path_factory: pytest.TempPathFactory, document: dict[str, Any]) -> None:
    path = tmp_path_factory.mktemp("cfg") / "pgperf.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        config = load_config(config_file=str(path), env={})
    except ConfigError as exc:
        # Every problem names where it comes from and what is wrong: "<where>: <key>: <reason>".
        assert exc.problems and all(p.startswith((str(path), "profile ")) and ": " in p for p in exc.problems)
    else:
        assert isinstance(config, Config)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_config_file_any_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "pgperf.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(config_file=str(path), env={})
    except ConfigError as exc:
        assert exc.problems


@settings(max_examples=200, deadline=None)
@given(env=st.dictionaries(st.sampled_from(sorted(env_variables())), st.text(max_size=15), max_size=6))
# Found by hypothesis, once in several thousand runs: a problem with two settings together
# (the critical level below the profile's warning level) was said to come from "environment".
@example(env={"PGPERF_THRESHOLDS_CONNECTION_UTILIZATION_CRITICAL_PERCENT": "0"})
@example(env={"PGPERF_ALERTS_ALERTMANAGER_URL": "http://a:9093", "PGPERF_ALERTS_ALERTMANAGER_URLS": "http://b:9093"})
@example(env={"PGPERF_DSN": "dbname='<a b>'"})
def test_environment_gives_config_or_clear_error(env: dict[str, str]) -> None:
    env = {k: v.replace("\x00", "") for k, v in env.items()}
    try:
        load_config(env=env)
    except ConfigError as exc:
        assert all(p.startswith(("environment variable PGPERF_", "profile ")) for p in exc.problems), exc.problems


SECRET_PATHS = [("api", "token"), ("api", "viewer_token"), ("api", "tokens", 0, "token"), ("dsn",),
                ("targets", 0, "dsn"), ("store", "dsn")]


@settings(max_examples=200, deadline=None)
@given(path=st.sampled_from(SECRET_PATHS),
       secret=st.one_of(st.integers(10**9, 10**18), st.floats(1e9, 1e18), st.lists(st.integers(10**9, 10**18), max_size=2),
                        st.text(alphabet=string.ascii_letters + string.digits, min_size=9, max_size=15)))
def test_config_errors_never_show_a_secret(tmp_path_factory: pytest.TempPathFactory, path: tuple[Any, ...],
                                           secret: Any) -> None:
    document: dict[str, Any] = {"targets": [{"name": "a", "dsn": "x"}]} if path[0] == "targets" else {}
    node: Any = document
    for key, nxt in zip(path, path[1:], strict=False):
        if isinstance(key, int):
            node = node[key]
            continue
        if key not in node:
            node[key] = [{"name": "t", "role": "viewer"}] if isinstance(nxt, int) else {}
        node = node[key]
    node[path[-1]] = secret
    cfg = tmp_path_factory.mktemp("cfg") / "pgperf.yaml"
    cfg.write_text(yaml.safe_dump(document))
    try:
        load_config(config_file=str(cfg), env={})
    except ConfigError as exc:
        shown = [str(secret)] + ([str(v) for v in secret] if isinstance(secret, list) else [])
        assert not any(s in p for s in shown for p in exc.problems), exc.problems


# -- webhook -------------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=25)
# Times at every offset and in every year datetime holds, the extremes included: year 1 east of
# UTC and year 9999 west of it cannot be converted to UTC at all.
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
aware_times = st.one_of(
    st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), st.datetimes(), offsets),
    st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "9999-12-31T23:59:59Z",
                     "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "9000-12-31T23:59:59.999999Z"]))
alert_like = st.fixed_dictionaries({
    "status": st.one_of(st.sampled_from(["firing", "resolved"]), json_values),
    "labels": st.one_of(st.dictionaries(st.sampled_from(["alertname", "severity", "instance", "x"]), st.text(max_size=10)),
                        json_values),
    "startsAt": st.one_of(st.sampled_from(["2026-11-29T10:00:00Z", "2026-11-29T10:00:00.123456789+02:00", "bad"]),
                          aware_times, json_values),
}, optional={"annotations": json_values, "endsAt": st.one_of(aware_times, json_values), "fingerprint": json_values})
payloads = st.one_of(json_values, st.fixed_dictionaries({"version": st.sampled_from(["4", "3", 4]),
                                                         "alerts": st.one_of(st.lists(alert_like, max_size=3), json_values)}))


@settings(max_examples=500, deadline=None)
@given(payload=payloads)
def test_webhook_parser_total(payload: Any) -> None:
    try:
        events = parse_webhook(payload)
    except WebhookError as exc:
        assert str(exc)
    else:
        assert all(e.name and e.status in ("firing", "resolved") for e in events)


@pytest.fixture(scope="module")
def webhook_client(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from pgperf.app import App

    pg_cluster.execute("DROP SCHEMA IF EXISTS fuzz CASCADE")
    config = make_config(pg_cluster.dsn(), api={"token": "fuzz-token-0123456789"}, sampling_interval=60,
                         store={"enabled": True, "schema": "fuzz", "spool_dir": str(tmp_path_factory.mktemp("spool"))})
    app = App(config)
    assert app.client is not None
    app.client.migrate()
    yield Client(app.web)
    app.stop()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=payloads, raw=st.one_of(st.none(), st.binary(max_size=64)))
def test_webhook_endpoint_never_500(webhook_client: Any, payload: Any, raw: bytes | None) -> None:
    body = raw if raw is not None else json.dumps(payload).encode()
    response = webhook_client.post("/api/v1/alerts/webhook", data=body, headers={"Authorization": "Bearer fuzz-token-0123456789"})
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    assert "error" in response.get_json() if response.status_code == 400 else True


durations = st.builds(lambda n, unit: f"{n}{unit}", st.one_of(st.integers(0, 10**20), st.floats(0, 1e300)),
                      st.sampled_from(["", "ms", "s", "m", "h", "d"]))
since_values = st.one_of(st.text(max_size=12), durations, aware_times,
                         st.sampled_from(["inf", "-inf", "nan", "1e300", "-1e300", "99999999999d", "1e308d"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.dictionaries(st.sampled_from(["state", "severity", "since", "limit", "target", "x"]),
                             st.text(max_size=12), max_size=4), since=st.one_of(st.none(), since_values))
def test_alert_listing_never_500(webhook_client: Any, query: dict[str, str], since: str | None) -> None:
    if since is not None:
        query = {**query, "since": since}
    for path in ("/api/v1/alerts", "/api/v1/audit"):
        response = webhook_client.get(path, query_string=query, headers={"Authorization": "Bearer fuzz-token-0123456789"})
        assert response.status_code in (200, 400), response.get_data(as_text=True)


# -- report windows ------------------------------------------------------------------------

times = st.one_of(st.text(max_size=40), st.datetimes().map(lambda d: d.isoformat()), aware_times,
                  st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-02", "2024-13-01T00:00:00", "now", "",
                                   "2024-01-01T00:00:00+25:00", "9999-12-31T23:59:59Z"]), st.integers(), st.none())


@settings(max_examples=400, deadline=None)
@given(start=times, end=times)
def test_report_window_parsing_total(start: Any, end: Any) -> None:
    from pgperf.http.parsing import parse_time
    from pgperf.reports.service import ReportService

    try:
        a, b = parse_time(start, "from"), parse_time(end, "to")
        ReportService.check_window(a, b)
    except ValueError as exc:
        assert str(exc)
    else:
        assert a.tzinfo is not None and b.tzinfo is not None and a < b


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, st.fixed_dictionaries({"from": times, "to": times},
                                                        optional={"target": json_values, "kind": json_values})))
def test_report_generation_endpoint_never_500(webhook_client: Any, body: Any) -> None:
    response = webhook_client.post("/api/v1/reports", data=json.dumps(body), headers={"Authorization": "Bearer fuzz-token-0123456789"})
    assert response.status_code in (201, 400, 503), response.get_data(as_text=True)
