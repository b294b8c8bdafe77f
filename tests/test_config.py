"""Configuration: profiles, precedence, validation errors with locations, exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgperf.config import PROFILES, ConfigError, env_variables, load_config


def test_profiles_carry_the_seed_values() -> None:
    dev = load_config(flags={"profile": "development"}, env={})
    assert dev.sampling_interval == 10
    t = dev.thresholds
    assert (t.slow_query_time_ms, t.cache_hit_ratio_min, t.cpu_usage_max_percent,
            t.memory_usage_max_percent, t.error_rate_max) == (500, 90, 95, 95, 5)
    r = dev.retention
    assert (r.query_metrics_days, r.resource_metrics_days, r.alerts_days, r.reports_days) == (7, 7, 30, 90)

    prod = load_config(flags={"profile": "production"}, env={})
    assert prod.sampling_interval == 60
    t = prod.thresholds
    assert (t.slow_query_time_ms, t.cache_hit_ratio_min, t.cpu_usage_max_percent,
            t.memory_usage_max_percent, t.error_rate_max) == (2000, 98, 80, 85, 0.5)
    n = prod.notifications
    assert n.email and n.slack and n.webhook

    analytics = load_config(flags={"profile": "analytics"}, env={})
    assert analytics.thresholds.slow_query_time_ms > prod.thresholds.slow_query_time_ms
    assert analytics.retention.query_metrics_days > prod.retention.query_metrics_days


def test_default_profile_is_production() -> None:
    assert load_config(env={}).profile == "production"


def test_precedence_flag_over_env_over_file_over_profile(tmp_path: Path) -> None:
    cfg = tmp_path / "pgperf.yaml"
    cfg.write_text("profile: development\nsampling_interval: 30s\nthresholds:\n  slow_query_time_ms: 700\n")
    from_file = load_config(config_file=str(cfg), env={})
    assert from_file.sampling_interval == 30
    assert from_file.thresholds.slow_query_time_ms == 700
    assert from_file.thresholds.cache_hit_ratio_min == 90  # still from the profile

    env = {"PGPERF_SAMPLING_INTERVAL": "20", "PGPERF_THRESHOLDS_SLOW_QUERY_TIME_MS": "800"}
    from_env = load_config(config_file=str(cfg), env=env)
    assert from_env.sampling_interval == 20
    assert from_env.thresholds.slow_query_time_ms == 800

    from_flag = load_config(config_file=str(cfg), env=env, flags={"sampling_interval": "5"})
    assert from_flag.sampling_interval == 5
    assert from_flag.thresholds.slow_query_time_ms == 800


def test_profile_from_env_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "pgperf.yaml"
    cfg.write_text("profile: analytics\n")
    assert load_config(config_file=str(cfg), env={}).profile == "analytics"
    assert load_config(config_file=str(cfg), env={"PGPERF_PROFILE": "development"}).profile == "development"


def test_every_setting_has_an_environment_variable() -> None:
    names = env_variables()
    assert names["PGPERF_DSN"] == ("dsn",)
    assert names["PGPERF_STORE_DSN"] == ("store", "dsn")
    assert names["PGPERF_STORE_SCHEMA"] == ("store", "schema")
    assert names["PGPERF_WEB_LISTEN_ADDRESS"] == ("web", "listen_address")
    assert names["PGPERF_COLLECTORS_STATEMENTS_TOP_N"] == ("collectors", "statements", "top_n")
    assert names["PGPERF_API_TOKEN"] == ("api", "token")
    config = load_config(env={"PGPERF_COLLECTORS_HOST_ENABLED": "false", "PGPERF_STORE_SCHEMA": "mon"})
    assert config.collectors.host.enabled is False
    assert config.store.schema_name == "mon"


def test_data_source_name_is_read_after_pgperf_dsn() -> None:
    assert load_config(env={"DATA_SOURCE_NAME": "postgresql://a@h/db"}).dsn == "postgresql://a@h/db"
    both = {"DATA_SOURCE_NAME": "postgresql://a@h/db", "PGPERF_DSN": "postgresql://b@h/db"}
    assert load_config(env=both).dsn == "postgresql://b@h/db"


def test_durations() -> None:
    for text, seconds in [("500ms", 0.5), ("10s", 10), ("1m", 60), ("1m30s", 90), ("2", 2), ("1h", 3600)]:
        assert load_config(flags={"sampling_interval": text}, env={}).sampling_interval == seconds


def test_all_problems_reported_with_their_location(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "profile: development\n"
        "sampling_interval: -5\n"
        "colour: blue\n"
        "thresholds:\n"
        "  slow_query_time_ms: fast\n"
        "collectors:\n"
        "  statements:\n"
        "    top_n: many\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(config_file=str(cfg), env={"PGPERF_CONNECTION_POOL_SIZE": "lots"})
    problems = info.value.problems
    text = "\n".join(problems)
    assert f"{cfg}:2: sampling_interval: Input should be greater than 0" in text
    assert f"{cfg}:3: colour: unknown key" in text
    assert f"{cfg}:5: thresholds.slow_query_time_ms: Input should be a valid number" in text
    assert f"{cfg}:8: collectors.statements.top_n: Input should be a valid integer" in text
    assert "environment variable PGPERF_CONNECTION_POOL_SIZE: connection.pool_size" in text
    assert len(problems) == 5


def test_invalid_secrets_are_not_echoed(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "api:\n"
        "  viewer_token: 918273645546372819\n"  # YAML reads digits as a number: not a string
        "  token: [77665544332211]\n"
        "  tokens:\n"
        "    - {name: ci, role: operator, token: 55443322}\n"
        "alerts:\n"
        "  alertmanager_url: ftp://admin:hunter2@alertmanager:9093\n"
        "dsn: 123456789\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(config_file=str(cfg), env={})
    text = "\n".join(info.value.problems)
    assert "api.viewer_token: Input should be a valid string (got '...')" in text
    assert "api.tokens.0.token" in text and "alerts.alertmanager_url" in text and "dsn" in text
    for secret in ("918273645546372819", "77665544332211", "55443322", "hunter2", "123456789"):
        assert secret not in text, (secret, text)
    assert "ftp://admin:***@alertmanager:9093" in text  # the rest of a URL still helps


def test_unknown_environment_variable_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"PGPERF_SAMPLNG_INTERVAL": "5"})
    assert "did you mean PGPERF_SAMPLING_INTERVAL?" in str(info.value)


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("profile: development\nthresholds: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_file=str(cfg), env={})
    assert f"{cfg}:3:1: not valid YAML" in str(info.value)


def test_missing_file_and_bad_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(config_file=str(tmp_path / "missing.yaml"), env={})
    with pytest.raises(ConfigError, match="unknown profile 'staging'; choose one of development, production, analytics"):
        load_config(env={"PGPERF_PROFILE": "staging"})


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError, match=r"connection_utilization_warning_percent \(99\) must be below"):
        load_config(env={"PGPERF_THRESHOLDS_CONNECTION_UTILIZATION_WARNING_PERCENT": "99"})


@pytest.mark.parametrize(("env", "where"), [
    # The input hypothesis found (tests/test_fuzz.py::test_environment_gives_config_or_clear_error):
    # the critical level set below the profile's warning level was said to come from "environment".
    ({"PGPERF_THRESHOLDS_CONNECTION_UTILIZATION_CRITICAL_PERCENT": "0"},
     "environment variable PGPERF_THRESHOLDS_CONNECTION_UTILIZATION_CRITICAL_PERCENT and profile production: "
     "thresholds: connection_utilization_warning_percent (80) must be below connection_utilization_critical_percent (0)"),
    ({"PGPERF_ALERTS_ALERTMANAGER_URL": "http://a:9093", "PGPERF_ALERTS_ALERTMANAGER_URLS": "http://b:9093"},
     "environment variable PGPERF_ALERTS_ALERTMANAGER_URL and environment variable PGPERF_ALERTS_ALERTMANAGER_URLS: "
     "alerts: alertmanager_url and alertmanager_urls are both set"),
])
def test_a_section_problem_names_the_variables_it_comes_from(env: dict[str, str], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    (problem,) = info.value.problems
    assert problem.startswith(where), problem


def test_a_section_problem_in_a_file_names_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "pgperf.yaml"
    cfg.write_text("profile: production\nthresholds:\n  connection_utilization_critical_percent: 50\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_file=str(cfg), env={"PGPERF_THRESHOLDS_CONNECTION_UTILIZATION_WARNING_PERCENT": "60"})
    (problem,) = info.value.problems
    assert problem.startswith(f"environment variable PGPERF_THRESHOLDS_CONNECTION_UTILIZATION_WARNING_PERCENT and "
                              f"{cfg}:2 and profile production: thresholds: "), problem


def test_configuration_is_frozen() -> None:
    config = load_config(env={})
    with pytest.raises(Exception, match="frozen"):
        config.sampling_interval = 1  # type: ignore[misc]


def test_targets_from_file(tmp_path: Path) -> None:
    cfg = tmp_path / "t.yaml"
    cfg.write_text("targets:\n  - name: main\n    dsn: postgresql://a@h1/db\n  - name: replica\n    dsn: postgresql://a@h2/db\n")
    config = load_config(config_file=str(cfg), env={})
    assert [t.name for t in config.resolved_targets()] == ["main", "replica"]
    cfg.write_text("targets:\n  - name: main\n    dsn: host=x\n  - name: main\n    dsn: host=y\n")
    with pytest.raises(ConfigError, match="duplicate target names"):
        load_config(config_file=str(cfg), env={})


@pytest.mark.parametrize("args", [
    ["serve", "--sampling-interval", "-1"],
    ["serve", "--web.listen-address", "nowhere"],
    ["check", "--profile", "development", "--config", "/nonexistent.yaml"],
])
def test_cli_exits_2_on_bad_configuration(args: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGPERF_")}
    proc = subprocess.run([sys.executable, "-m", "pgperf", *args], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "invalid configuration" in proc.stderr


def test_cli_lists_every_problem_of_a_bad_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("bogus: 1\nsampling_interval: -3\nthresholds:\n  cpu_usage_max_percent: lots\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGPERF_")}
    proc = subprocess.run([sys.executable, "-m", "pgperf", "serve", "--config", str(cfg)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    for expected in ("bogus: unknown key", "sampling_interval: Input should be greater than 0",
                     "thresholds.cpu_usage_max_percent: Input should be a valid number"):
        assert expected in proc.stderr


def test_profiles_are_complete() -> None:
    for name in PROFILES:
        config = load_config(flags={"profile": name}, env={})
        assert config.profile == name


def test_list_items_have_their_own_lines_and_keys_get_suggestions(tmp_path: Path) -> None:
    path = tmp_path / "items.yaml"
    path.write_text("profile: production\n"             # 1
                    "api:\n"                            # 2
                    "  tokens:\n"                       # 3
                    "    - name: ok\n"                  # 4
                    "      role: viewer\n"              # 5
                    "      token: 0123456789abcdef\n"   # 6
                    "    - name: bad\n"                 # 7
                    "      role: viewer\n"              # 8
                    "      token: short\n"              # 9
                    "targets:\n"                        # 10
                    "  - name: a\n"                     # 11
                    "    dsnn: host=y\n"                # 12
                    "samplng_interval: 5\n")            # 13
    with pytest.raises(ConfigError) as err:
        load_config(config_file=str(path), env={})
    problems = err.value.problems
    assert f"{path}:9: api.tokens.1.token: must be at least 16 characters long" in problems
    assert any(p.startswith(f"{path}:12: targets.0.dsnn: unknown key") and p.endswith("did you mean 'dsn'?")
               for p in problems), problems
    assert any(p.startswith(f"{path}:13: samplng_interval:") and "did you mean 'sampling_interval'" in p
               for p in problems), problems
    assert all("short" not in p for p in problems)  # a secret's value is never shown


@pytest.mark.parametrize("variable", ["PGPERF_API_TOKEN", "PGPERF_API_VIEWER_TOKEN"])
def test_environment_tokens_need_16_characters(variable: str) -> None:
    for value in ("", "x" * 15):
        with pytest.raises(ConfigError, match=f"{variable}: api.*at least 16 characters"):
            load_config(env={variable: value})
    assert load_config(env={variable: "x" * 16}).api is not None


@pytest.mark.parametrize("dsn, why", [
    ("postgresq://u:hunter2@h/db", "cannot be parsed"),
    ("dbnam=x password=hunter2", "unknown option 'dbnam'"),
    ("postgresql://u:hunter2@h/db?sslmod=disable", "unknown option 'sslmod'"),
    ("password=hun ter2", "cannot be parsed"),
])
def test_a_malformed_dsn_is_bad_configuration(dsn: str, why: str, tmp_path: Path) -> None:
    for where in ({"flags": {"dsn": dsn}}, {"flags": {"store": {"dsn": dsn}}},
                  {"flags": {"targets": [{"name": "a", "dsn": dsn}]}}):
        with pytest.raises(ConfigError, match="not a valid PostgreSQL connection string") as err:
            load_config(env={}, **where)
        assert why in str(err.value) and "hunter2" not in str(err.value) and "hun ter2" not in str(err.value)
    proc = subprocess.run([sys.executable, "-m", "pgperf", "check", "--dsn", dsn], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "hunter2" not in proc.stdout + proc.stderr


def test_target_name_follows_libpq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "db.internal")
    monkeypatch.setenv("PGPORT", "6543")
    monkeypatch.setenv("PGDATABASE", "app")
    assert load_config(env={}).resolved_targets()[0].name == "db.internal:6543/app"
    assert load_config(env={}, flags={"dsn": "host=other dbname=x"}).resolved_targets()[0].name == "other:6543/x"


@pytest.mark.parametrize("dsn", ["postgresql://u@db1/my%20app", "host=db1 dbname='<app>'", "host=db1 dbname=a" + "b" * 130])
def test_a_dsn_whose_database_makes_no_target_name_is_a_configuration_error(dsn: str) -> None:
    """No target_name: the target is named host:port/dbname, and a database name with a space
    or a '<' is no valid target name. Said at load time, with the setting to use, not as a
    pydantic ValidationError from wherever the targets are first asked for."""
    with pytest.raises(ConfigError) as info:
        load_config(env={"PGPERF_DSN": dsn, "PGPASSWORD": "x"})
    (problem,) = info.value.problems
    assert problem.startswith("environment variable PGPERF_DSN: dsn: the target is named after its DSN's host, port "
                              "and database"), problem
    assert "set target_name (PGPERF_TARGET_NAME)" in problem
    named = load_config(env={"PGPERF_DSN": dsn, "PGPERF_TARGET_NAME": "app"})
    assert [t.name for t in named.resolved_targets()] == ["app"]
    proc = subprocess.run([sys.executable, "-m", "pgperf", "check", "--dsn", dsn], capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith(("PGPERF_", "PG"))})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "set target_name (PGPERF_TARGET_NAME)" in proc.stderr and "Traceback" not in proc.stderr


def test_a_database_name_from_the_libpq_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGDATABASE", "my app")
    with pytest.raises(ConfigError) as info:
        load_config(env={})
    assert info.value.problems[0].startswith("libpq environment variables (PGHOST, PGPORT, PGDATABASE, PGUSER): dsn: ")
