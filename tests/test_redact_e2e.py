"""Secrets in statement texts never leave pgperf, end to end on a real PostgreSQL.

pg_stat_statements keeps utility statements as they were sent. The test runs statements
that carry passwords, user-mapping options, conninfo strings, pgcrypto keys and a secret
setting while the exporter samples them with ``include_query`` and ``expose_query_text``
on, then looks for the secrets everywhere a text goes: /metrics, every column of every
table of the store, ``pgperf report`` in each format, the HTTP reports and API, the logs.
Rows and a report written by an earlier version (secrets in clear) are put in the store
too: reports made or served from them must not show those secrets either.
"""

from __future__ import annotations

import html
import json
import logging
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from psycopg.types.json import Jsonb

from console_client import ConsoleClient
from helpers import make_config, running_exporter, wait_until
from pgperf.redact import redact_statement
from tools.cluster import Cluster

SCHEMA = "redact_e2e"
TOKEN = "redact-e2e-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Every secret holds this, so that one search finds any of them.
MARK = "S3cr3t"
# Secrets of rows "written by an earlier version": in the store by construction, never shown
# (nor any part of them: a report cuts long texts).
OLD_MARK = "0ldS3cr3t"
OLD_PART = OLD_MARK[:6]
LEGACY_QUERY_ID = "-4242"


def _secret_statements(available: set[str]) -> list[str]:
    """Statements whose text holds a secret, as users run them."""
    wrapper = "postgres_fdw" if "postgres_fdw" in available else "redact_fdw"
    return [
        f"CREATE ROLE redact_r1 PASSWORD '{MARK}-create-role'",
        f"ALTER ROLE redact_r1 ENCRYPTED PASSWORD '{MARK}-alter-role'",
        f"CREATE USER redact_u1 WITH LOGIN PASSWORD $pw${MARK}-create-user$pw$",
        f"ALTER USER redact_u1 /* rotated */ PASSWORD\n  E'{MARK}-alter-user\\'s'",
        # A wrapper without handler or validator takes any option (no extension needed).
        "CREATE FOREIGN DATA WRAPPER redact_fdw",
        f"CREATE SERVER redact_srv FOREIGN DATA WRAPPER redact_fdw OPTIONS (host 'db', password '{MARK}-server')",
        f"CREATE SERVER redact_map_srv FOREIGN DATA WRAPPER {wrapper} OPTIONS (host '127.0.0.1', dbname 'postgres')",
        f"CREATE USER MAPPING FOR redact_u1 SERVER redact_map_srv OPTIONS (user 'redact_u1', password '{MARK}-mapping')",
        f"ALTER USER MAPPING FOR redact_u1 SERVER redact_map_srv OPTIONS (SET password '{MARK}-alter-mapping')",
        "CREATE SUBSCRIPTION redact_sub CONNECTION "
        f"'host=127.0.0.1 port=1 user=rep password={MARK}-subscription dbname=app' PUBLICATION p"
        " WITH (connect = false, enabled = false, slot_name = NONE)",
        f"COMMENT ON ROLE redact_r1 IS 'replicates from postgresql://rep:{MARK}-uri@db.example.com/app'",
        # dblink_connect's conninfo: a DO block is kept as sent (a SELECT would be normalized).
        "DO $$BEGIN PERFORM dblink_connect('redact', "
        f"'hostaddr=127.0.0.1 port=1 user=u password={MARK}-dblink'); EXCEPTION WHEN OTHERS THEN NULL; END$$",
        f"DO $$BEGIN PERFORM pgp_sym_encrypt('card 4111', '{MARK}-pgcrypto'); EXCEPTION WHEN OTHERS THEN NULL; END$$",
        f"SET app.api_key = '{MARK}-setting'",
    ]


CLEANUP = [
    "RESET app.api_key",
    "DROP SUBSCRIPTION IF EXISTS redact_sub",
    "DROP USER MAPPING IF EXISTS FOR redact_u1 SERVER redact_map_srv",
    "DROP SERVER IF EXISTS redact_map_srv",
    "DROP SERVER IF EXISTS redact_srv",
    "DROP FOREIGN DATA WRAPPER IF EXISTS redact_fdw",
    "DROP ROLE IF EXISTS redact_r1",
    "DROP ROLE IF EXISTS redact_u1",
]


def _pgperf_report(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGPERF_STORE_SCHEMA": SCHEMA, "PGPERF_REPORTS_TOP_N": "100"}
    return subprocess.run([sys.executable, "-m", "pgperf", "report", "--dsn", dsn, "--store-dsn", dsn,
                           "--profile", "development", "--log.level", "debug", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def _store_rows(cluster: Cluster) -> list[str]:
    """Every row of every table of the store, as text (every column)."""
    tables = [r[0] for r in cluster.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition", params=(SCHEMA,))]
    assert {"statement_texts", "query_samples", "query_metrics_hourly", "performance_reports"} <= set(tables)
    return [row[0] for table in tables for row in cluster.execute(f'SELECT t::text FROM {SCHEMA}."{table}" t')]


def _old_rows(cluster: Cluster, target: str, at: datetime) -> None:
    """A statement row and a report as an earlier version stored them: secrets in clear."""
    text = f"ALTER ROLE legacy PASSWORD '{OLD_MARK}-row'"
    cluster.execute(
        f"INSERT INTO {SCHEMA}.query_performance_metrics (target, recorded_at, interval_seconds, query_id,"
        " datname, username, query_text, calls, total_time, mean_time, min_time, max_time, stddev_time,"
        " rows_affected, cache_hits, cache_misses) VALUES (%s, %s, 1, %s, 'postgres', 'postgres', %s,"
        " 1, 900, 900, 900, 900, 0, 0, 0, 0)", params=(target, at, LEGACY_QUERY_ID, text))


def _old_report(cluster: Cluster, data: dict[str, Any]) -> str:
    """A copy of a stored report with secrets put back where an earlier version had them."""
    old = json.loads(json.dumps(data))
    old["report_id"] = f"perf-report-legacy-{uuid.uuid4().hex[:6]}"
    text = f"CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'app', password '{OLD_MARK}-report')"
    old["queries"]["slowest_by_mean"][0]["query_text"] = text
    old["summary"]["slowest_query"]["query_text"] = text
    assert old["recommendations"], "the 900 ms statement makes a slow-query recommendation"
    old["recommendations"].append({**old["recommendations"][0], "message": f"Optimize it. Query: {text[:75]}…"})
    cluster.execute(f"INSERT INTO {SCHEMA}.performance_reports (report_id, target, kind, generated_at, period_start,"
                    " period_end, report_data) VALUES (%s, %s, 'on_demand', now(), now() - interval '1 hour', now(), %s)",
                    params=(old["report_id"], data["target"], Jsonb(old)))
    return str(old["report_id"])


@pytest.mark.slow
def test_no_secret_of_a_statement_text_leaves_pgperf(pg_cluster: Cluster, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    dsn = pg_cluster.dsn()
    pg_cluster.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    for statement in CLEANUP:
        pg_cluster.execute(statement)
    # Contrib's extensions when this PostgreSQL ships them; the statements do without.
    rows = pg_cluster.execute("SELECT name, installed_version IS NOT NULL FROM pg_available_extensions"
                              " WHERE name IN ('postgres_fdw', 'dblink', 'pgcrypto')")
    available = {name for name, _ in rows}
    created = sorted(name for name, installed in rows if not installed)
    for name in created:
        pg_cluster.execute(f"CREATE EXTENSION {name}")
    config = make_config(
        dsn, store={"enabled": True, "schema": SCHEMA, "spool_dir": str(tmp_path / "spool")},
        collectors={"statements": {"include_query": True, "query_length": 4096, "top_n": 10000}},
        expose_query_text=True, api={"token": TOKEN}, log_level="debug",
        reports={"daily": False, "weekly": False, "top_n": 100})
    statements = _secret_statements(available)
    start = datetime.now(UTC) - timedelta(seconds=1)
    caplog.set_level(logging.DEBUG)
    try:
        with running_exporter(config) as exporter:
            wait_until(lambda: exporter.value("pg_up") == 1, message="a first sample")
            with pg_cluster.connect() as conn:
                conn.autocommit = True
                for statement in statements:
                    conn.execute(statement)
            # Positive control: the texts did reach the store, redacted.
            wait_until(lambda: pg_cluster.execute(
                f"SELECT count(*) FROM {SCHEMA}.query_performance_metrics WHERE query_text LIKE 'CREATE USER MAPPING%%'"
                " OR query_text LIKE 'SET app.api_key%%'")[0][0] == 2, timeout=30, message="the statements in the store")
            stored_texts = {r[0] for r in pg_cluster.execute(
                f"SELECT DISTINCT query_text FROM {SCHEMA}.query_performance_metrics")}
            for statement in statements:
                assert redact_statement(statement) in stored_texts, statement
            assert ("CREATE USER MAPPING FOR redact_u1 SERVER redact_map_srv OPTIONS (user '***', password '***')"
                    in stored_texts)

            scrape = exporter.get("/metrics").text
            assert "pg_stat_statements_query_id{" in scrape and "PASSWORD '***'" in scrape
            assert MARK not in scrape

            target = config.resolved_targets()[0].name
            _old_rows(pg_cluster, target, datetime.now(UTC) - timedelta(seconds=2))
            end = datetime.now(UTC) + timedelta(seconds=2)
            window = {"from": start.isoformat(), "to": end.isoformat()}
            made = requests.post(exporter.url + "/api/v1/reports", json=window, headers=AUTH, timeout=60)
            assert made.status_code == 201, made.text
            report = made.json()
            http = [made.text]
            for fmt in ("json", "text", "md", "html"):
                http.append(exporter.get(f"/api/v1/reports/{report['report_id']}?format={fmt}", headers=AUTH).text)
            console = ConsoleClient(exporter.url)
            assert console.login(TOKEN).status_code == 303
            page = console.get(f"/reports/{report['report_id']}")
            assert page.status_code == 200, page.status_code
            http.append(page.text)
            texts = [q["query_text"] for q in report["queries"]["slowest_by_mean"]]
            assert "ALTER ROLE legacy PASSWORD '***'" in texts  # the earlier version's row, redacted
            assert any(t.startswith("ALTER ROLE redact_r1 ENCRYPTED PASSWORD '***'") for t in texts), texts

            legacy = _old_report(pg_cluster, report)
            for path in (f"/api/v1/reports/{legacy}", f"/api/v1/reports/{legacy}?format=text", f"/reports/{legacy}"):
                answer = console.get(path) if path.startswith("/reports/") else exporter.get(path, headers=AUTH)
                assert answer.status_code == 200, (path, answer.status_code)
                body = html.unescape(answer.text)
                assert "OPTIONS (user '***', password '***')" in body, path
                http.append(body)
            for body in http:
                assert MARK not in body and OLD_PART not in body

        cli = [_pgperf_report(dsn, "--from", start.isoformat(), "--to", end.isoformat(), "--format", fmt)
               for fmt in ("text", "md", "json", "html")]
        for proc in cli:
            assert proc.returncode == 0, proc.stderr
            assert "PASSWORD '***'" in proc.stdout
            assert MARK not in proc.stdout + proc.stderr and OLD_PART not in proc.stdout + proc.stderr

        # Stored: every row but the two planted as an earlier version's (the reports made
        # from them included).
        rows = _store_rows(pg_cluster)
        planted = [row for row in rows if legacy in row or (LEGACY_QUERY_ID in row and "ALTER ROLE legacy" in row
                                                             and "report_id" not in row)]
        assert len(planted) == 2 and all(OLD_MARK in row for row in planted)
        assert not [row for row in rows if row not in planted and (MARK in row or OLD_PART in row)]
        assert MARK not in caplog.text and OLD_PART not in caplog.text
        assert any(r.name.startswith("pgperf") for r in caplog.records)
    finally:
        for statement in CLEANUP + [f"DROP EXTENSION IF EXISTS {name}" for name in created]:
            pg_cluster.execute(statement)
