"""The ``pgperf`` command as a user runs it: a real process, real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import requests

from helpers import make_config, parse, value, wait_until
from pgperf.sampling import TargetSampler
from tools.cluster import Cluster, free_port


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PGPERF_", "PG"))}


@contextmanager
def serve(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgperf", "serve", *args, "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _reachable(url) or proc.poll() is not None, message="exporter listening")
        assert proc.poll() is None, proc.communicate()[0]
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _reachable(url: str) -> bool:
    try:
        requests.get(url + "/healthz", timeout=1)
        return True
    except requests.ConnectionError:
        return False


def test_serve_as_documented(pg_cluster: Cluster, pgbench: Any) -> None:
    with pgbench(clients=2), serve("--dsn", pg_cluster.dsn(), "--profile", "development",
                                   "--sampling-interval", "1", "--no-store") as (proc, url):
        samples = wait_until(
            lambda: (s := parse(requests.get(url + "/metrics", timeout=5).text))
            and value(s, "pg_up") == 1 and s.get("pg_stat_statements_calls_total") and s,
            message="pg_up 1 and statement series",
        )
        assert value(samples, "pgperf_host_cpu_seconds_total") is not None
        assert requests.get(url + "/readyz", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        output, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert time.monotonic() - started < 10
        assert "serving http://127.0.0.1:" in output
        assert "received SIGTERM, shutting down" in output


def test_serve_reports_address_in_use(pg_cluster: Cluster) -> None:
    with serve("--dsn", pg_cluster.dsn(), "--no-store") as (_, url):
        port = url.rsplit(":", 1)[1]
        proc = subprocess.run(
            [sys.executable, "-m", "pgperf", "serve", "--dsn", pg_cluster.dsn(), "--no-store",
             "--web.listen-address", f"127.0.0.1:{port}"],
            capture_output=True, text=True, env=_env(), timeout=30,
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr


def test_check_passes_on_a_prepared_server(pg_cluster: Cluster) -> None:
    proc = subprocess.run([sys.executable, "-m", "pgperf", "check", "--dsn", pg_cluster.dsn()],
                          capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"connected to PostgreSQL {pg_cluster.major}" in proc.stdout
    assert "pg_stat_statements" in proc.stdout
    assert "collector statements:" in proc.stdout


def test_check_explains_missing_pg_stat_statements(make_cluster: Any) -> None:
    cluster: Cluster = make_cluster(preload_pg_stat_statements=False)
    proc = subprocess.run([sys.executable, "-m", "pgperf", "check", "--dsn", cluster.dsn()],
                          capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 1
    assert "shared_preload_libraries = 'pg_stat_statements'" in proc.stdout
    assert "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;" in proc.stdout
    # Created but not loaded (setup-role.sql creates it anyway): said so, and the collector
    # is disabled as not_preloaded.
    cluster.execute("CREATE EXTENSION pg_stat_statements")
    proc = subprocess.run([sys.executable, "-m", "pgperf", "check", "--dsn", cluster.dsn()],
                          capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 1
    assert "is created in schema public but not loaded" in proc.stdout
    config = make_config(cluster.dsn())
    sampler = TargetSampler(config.resolved_targets()[0], config)
    sampler.open()
    try:
        snap = sampler.sample()
        assert snap is not None
        status = {s.name: s for s in snap.statuses}["statements"]
        assert status.disabled == "not_preloaded"
    finally:
        sampler.close()


def test_check_reports_unreachable_server() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pgperf", "check", "--dsn", f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/postgres"],
        capture_output=True, text=True, env=_env(), timeout=60,
    )
    assert proc.returncode == 1
    assert "cannot connect (connection_refused)" in proc.stdout
    assert "hunter2" not in proc.stdout + proc.stderr


def test_version_and_module_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "pgperf", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("pgperf ")


def test_reload_survives_an_audit_log_that_refuses_rows(pg_cluster: Cluster, tmp_path: Any) -> None:
    """An audit insert failing with something else than an unreachable store (here a trigger;
    in life a read-only store or a missing grant) is logged; the reload stays applied and
    pgperf keeps serving."""
    schema = "cli_audit_refused"
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    cfg = tmp_path / "pgperf.yaml"
    cfg.write_text("thresholds:\n  slow_query_time_ms: 1000\n")
    env = {**_env(), "PGPERF_STORE_SCHEMA": schema, "PGPERF_STORE_ENABLED": "true",
           "PGPERF_STORE_SPOOL_DIR": str(tmp_path / "spool"), "PGPERF_API_TOKEN": "reload-token-1234"}
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgperf", "serve", "--dsn", pg_cluster.dsn(), "--config", str(cfg),
         "--profile", "development", "--sampling-interval", "1", "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _reachable(url) or proc.poll() is not None, message="exporter listening")
        wait_until(lambda: pg_cluster.execute(f"SELECT to_regclass('{schema}.audit_log')")[0][0], timeout=30,
                   message="store migrated")
        pg_cluster.execute(
            f"CREATE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RAISE EXCEPTION 'audit log is read-only'; END$$;"
            f"CREATE TRIGGER refuse BEFORE INSERT ON {schema}.audit_log FOR EACH ROW EXECUTE FUNCTION {schema}.refuse()")
        cfg.write_text("thresholds:\n  slow_query_time_ms: 2000\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(2)
        assert proc.poll() is None, "pgperf stopped after a SIGHUP whose audit row was refused"
        assert requests.get(url + "/healthz", timeout=5).status_code == 200
        cfg.write_text("thresholds:\n  slow_query_time_ms: 3000\n")
        response = requests.post(url + "/-/reload", headers={"Authorization": "Bearer reload-token-1234"}, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "reloaded"
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    assert output.count("not recorded in the audit log: the store refused the row (RaiseException: "
                        "audit log is read-only)") == 2, output
    assert "config_reload by signal:SIGHUP (applied)" in output and "Traceback" not in output


def test_alerts_usage_errors_exit_2(pg_cluster: Cluster) -> None:
    """Invalid arguments exit 2 (the README's "invalid configuration or usage"), with the reason."""
    for args, message in ((["list", "--since", "yesterday"], "--since: expected an RFC 3339 time (2024-01-01T00:00:00Z) "
                                                             "or a duration back from now (1h, 2d), got 'yesterday'"),
                          (["list", "--since", "99999999999d"], "since: the duration '99999999999d' is out of range"),
                          (["list", "--since", "0001-01-01T00:00:00+05:00"], "is out of range"),
                          (["ack", "abc", "--by", " "], "--by: who acts"),
                          (["resolve", "abc", "--by", "x" * 101], "--by: who acts"),
                          (["list", "--state", "open"], "invalid choice: 'open'")):
        proc = subprocess.run([sys.executable, "-m", "pgperf", "alerts", *args, "--dsn", pg_cluster.dsn()],
                              capture_output=True, text=True, env=_env(), timeout=60)
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)


def _pgperf(*args: str, schema: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgperf", *args], capture_output=True, text=True, timeout=120,
                          env={**_env(), "PGPERF_STORE_SCHEMA": schema})


def test_one_time_syntax_for_reports_and_alerts(pg_cluster: Cluster) -> None:
    """``--from``, ``--to`` and ``--since`` take the same times: RFC 3339 or a duration back
    from now (``pgperf report --from 1h`` was refused while ``alerts list --since 1h`` worked)."""
    schema = "cli_times"
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    dsn = ["--dsn", pg_cluster.dsn()]
    before = time.time()
    report = _pgperf("report", *dsn, "--from", "1h", "--to", "30m", "--format", "json", "--no-save", schema=schema)
    assert report.returncode == 0, report.stderr
    period = json.loads(report.stdout)["period"]
    start, end = (datetime.fromisoformat(period[k].replace("Z", "+00:00")).timestamp() for k in ("start", "end"))
    assert before - 3600 - 1 <= start <= time.time() - 3600 and end - start == 1800, period
    absolute = _pgperf("report", *dsn, "--from", "2024-01-01T00:00:00Z", "--to", "2024-01-01T06:00",
                       "--format", "json", "--no-save", schema=schema)
    assert absolute.returncode == 0, absolute.stderr
    assert json.loads(absolute.stdout)["period"] == {"start": "2024-01-01T00:00:00.000Z", "end": "2024-01-01T06:00:00.000Z"}
    assert _pgperf("alerts", "list", *dsn, "--since", "1h", schema=schema).returncode == 0
    assert _pgperf("alerts", "list", *dsn, "--since", "2024-01-01T00:00:00+01:00", schema=schema).returncode == 0
    for args, message in ((["--from", "yesterday"], "--from: expected an RFC 3339 time (2024-01-01T00:00:00Z) or a "
                                                    "duration back from now (1h, 2d), got 'yesterday'"),
                          (["--from", "1h", "--to", "2h"], "must be after the start"),
                          (["--from=-1h"], "--from: expected an RFC 3339 time"),
                          (["--from", "1h", "--to", "99999999999d"], "--to: the duration '99999999999d' is out of range")):
        refused = _pgperf("report", *dsn, *args, schema=schema)
        assert refused.returncode == 2 and message in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stderr


def test_closed_standard_output_ends_quietly(pg_cluster: Cluster) -> None:
    """pgperf check | head -3: once the reader has gone, pgperf stops without a traceback."""
    for args in (["check", "--dsn", pg_cluster.dsn()], ["alerts", "list", "--help"], ["--version"]):
        proc = subprocess.Popen([sys.executable, "-m", "pgperf", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env())
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before pgperf writes a line
        stderr = proc.stderr.read()
        proc.wait(60)
        assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, (args, stderr)
        assert proc.returncode in (0, 141), (args, proc.returncode, stderr)
    with subprocess.Popen(["bash", "-c", f"set -o pipefail; {sys.executable} -m pgperf check --dsn "
                           f"'{pg_cluster.dsn()}' | head -3 >/dev/null"],
                          stderr=subprocess.PIPE, text=True, env=_env()) as shell:
        _, stderr = shell.communicate(timeout=60)
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


# -- commands that need the store --------------------------------------------------------

# (Without --no-alertmanager, ack and resolve would first say that no Alertmanager is configured.)
STORE_COMMANDS = (["alerts", "list"], ["alerts", "ack", "0123456789abcdef", "--by", "dba", "--no-alertmanager"],
                  ["alerts", "resolve", "0123456789abcdef", "--by", "dba", "--no-alertmanager"],
                  ["report", "--period", "daily"], ["migrate"])


def test_commands_without_a_store_say_how_to_name_one(tmp_path: Any) -> None:
    """Nothing names a store (no --dsn, --store-dsn, PGPERF_* or PG* variable) and libpq's
    default socket has no server: each command that needs the store fails at once with the
    settings that name one, exit status 2, instead of three connection-pool warnings and
    "store unreachable" after six seconds."""
    assert not os.path.exists("/var/run/postgresql/.s.PGSQL.5432"), \
        "this test needs no PostgreSQL on libpq's default socket (that would be a store)"
    for args in STORE_COMMANDS:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pgperf", *args], capture_output=True, text=True, env=_env(),
                              timeout=60, cwd=tmp_path)
        took = time.monotonic() - started
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        command = " ".join(args[:2] if args[0] == "alerts" else args[:1])
        assert proc.stderr.startswith(f"pgperf {command}: no store is configured: set the store with --store-dsn "
                                      "DSN (PGPERF_STORE_DSN, store.dsn) or, when the samples are stored in the "
                                      "monitored database, --dsn DSN (PGPERF_DSN, DATA_SOURCE_NAME, dsn)"), proc.stderr
        assert "error connecting in" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        print(f"pgperf {' '.join(args)}: refused in {took:.2f}s")


def test_an_unreachable_store_is_said_once(tmp_path: Any) -> None:
    """A store that is named but down: one line (no pool retries), exit status 1, which
    setting names it and how to set another."""
    for args in STORE_COMMANDS:
        proc = subprocess.run([sys.executable, "-m", "pgperf", *args, "--store-dsn",
                               f"postgresql://pgperf:hunter2@127.0.0.1:{free_port()}/perf"],
                              capture_output=True, text=True, env=_env(), timeout=60)
        assert proc.returncode == 1, (args, proc.returncode, proc.stderr)
        assert "unreachable (connection_refused)" in proc.stderr, proc.stderr
        assert "The store is named by store.dsn: check that it is up, or set the store with --store-dsn" \
            in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "hunter2" not in proc.stderr, proc.stderr


def test_a_store_without_pgperf_tables_is_said(pg_cluster: Cluster) -> None:
    """The right server but the wrong schema (or a store serve never wrote to): the alert
    commands say so and how to name the schema, instead of a traceback."""
    schema = "cli_no_tables"
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    for args in (["list"], ["ack", "0123456789abcdef", "--by", "dba", "--no-alertmanager"],
                 ["resolve", "0123456789abcdef", "--alertmanager.url", "http://127.0.0.1:9"]):
        proc = _pgperf("alerts", *args, "--dsn", pg_cluster.dsn(), schema=schema)
        assert proc.returncode == 1, (args, proc.stderr)
        assert f"has no pgperf tables in schema '{schema}'. Is it the store pgperf serve writes to? Name the schema " \
               "with PGPERF_STORE_SCHEMA" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert pg_cluster.execute(f"SELECT to_regnamespace('{schema}')") == [(None,)]  # nothing created by a read


def test_the_alertmanager_flag_names_every_member(tmp_path: Any, monkeypatch: Any) -> None:
    """serve and the alert commands take the same --alertmanager.url, once per member of the
    cluster; given, it replaces the file's Alertmanager (either form)."""
    from pgperf.cli import build_parser, load

    for name in [k for k in os.environ if k.startswith("PGPERF_")]:
        monkeypatch.delenv(name)
    cfg = tmp_path / "pgperf.yaml"
    cfg.write_text("dsn: host=db1\nalerts:\n  alertmanager_url: http://old:9093\n")
    flags = ["--config", str(cfg), "--alertmanager.url", "http://am-1:9093", "--alertmanager.url", "http://am-2:9093"]
    for command in (["serve"], ["alerts", "ack", "0123"], ["alerts", "resolve", "0123"]):
        config = load(build_parser().parse_args([*command, *flags]))
        assert config.alerts.alertmanagers == ("http://am-1:9093", "http://am-2:9093"), command
        assert load(build_parser().parse_args([*command, "--config", str(cfg)])).alerts.alertmanagers == (
            "http://old:9093",)
