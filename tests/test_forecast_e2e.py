"""The issue's acceptance check for forecasts, end to end: a database grows at a steady rate
while ``pgperf serve`` samples it; the report's growth per day of its size is within 30 % of
the rate measured, and the disk's date comes with its interval.

What is real: a PostgreSQL cluster; a database into which a thread inserts rows at a steady
pace for the whole test; ``pgperf serve`` sampling it every second into its store (the
database_size collector every second too, measuring that database only), the transaction ID
age from its wraparound collector; ``pgperf report`` and ``GET /api/v1/forecasts`` reading the
store. The growth the test measures itself is pg_database_size() and the next transaction ID
read before and after, against the clock. A minute of samples is too short for the default
minimum history of two days: ``reports.forecast.min_history`` is 30 s here (the forecast's
buckets are then seconds wide).

What is synthetic: the disk. The machine's own filesystem changes with whatever else runs on
it, and a minute of it dates nothing (the simulated future is hourly, the horizon ten times
the history). So the host collector is off, and three days of disk samples growing 5 GB a
day towards a 300 GB disk are written into the store before pgperf starts, for the same
target: the disk forecast of the report rests on them, and must come with its interval.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from psycopg import sql

from browser import Browser
from helpers import wait_until
from pgperf.store import ensure_partitions, migrate
from tools.cluster import Cluster, free_port

pytestmark = pytest.mark.slow

DB = "forecast_growth"
SCHEMA = "forecast_e2e"
TARGET = "growth"
VIEWER = "viewer-token-0123456789"
SAMPLING = 60.0  # seconds of sampling while the table grows
GB = 1e9

# Three days of the disk, one sample every 5 minutes, ending where pgperf takes over: 5 GB a
# day towards 300 GB from 250 GB (the trend full in 10 days), with noise of up to 5 GB.
_DISK_HISTORY = """
INSERT INTO {s}.resource_metrics (target, "timestamp", interval_seconds, pg_up, disk_usage_bytes, disk_usage_percent,
    disk_total_bytes)
SELECT %(target)s, %(end)s - (864 - i) * interval '5 minutes', 300, true, (250e9 + 5e9 * d + 5e9 * n)::bigint,
       round(((250e9 + 5e9 * d) / 300e9 * 100)::numeric, 2), 300e9::bigint
FROM generate_series(1, 864) AS i,
     LATERAL (SELECT (i - 864) / 288.0 AS d, (hashtext(i::text) %% 1000) / 1000.0 AS n) x
"""


class Grower(threading.Thread):
    """Inserts 100 rows of about 100 bytes every 50 ms, each batch its own transaction."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.stop = threading.Event()
        self.batches = 0

    def run(self) -> None:
        with self.cluster.connect(DB) as conn:
            tick = time.monotonic()
            while not self.stop.is_set():
                conn.execute("INSERT INTO growing (payload) SELECT repeat(md5(g::text), 3) FROM generate_series(1, 100) g")
                self.batches += 1
                tick += 0.05
                time.sleep(max(0.0, tick - time.monotonic()))


def measure(cluster: Cluster) -> tuple[float, float, float]:
    """(epoch seconds, pg_database_size of DB, the next transaction ID)."""
    row = cluster.execute("SELECT extract(epoch FROM clock_timestamp())::float8, pg_database_size(%s)::float8,"
                          " pg_snapshot_xmax(pg_current_snapshot())::text::float8", params=(DB,))[0]
    return float(row[0]), float(row[1]), float(row[2])


@pytest.fixture
def growing(pg_cluster: Cluster) -> Iterator[Grower]:
    pg_cluster.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg_cluster.execute(f"CREATE DATABASE {DB}")
    pg_cluster.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", dbname=DB)
    pg_cluster.execute("CREATE TABLE growing (id bigserial PRIMARY KEY, payload text NOT NULL)", dbname=DB)
    grower = Grower(pg_cluster)
    grower.start()
    try:
        yield grower
    finally:
        grower.stop.set()
        grower.join(timeout=10)
        pg_cluster.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


CONFIG = f"""
databases:
  include: [{DB}]  # the size of the growing database alone, not of the store's
collectors:
  host: {{enabled: false}}
  database_size: {{interval: 1s}}
reports:
  daily: false
  weekly: false
  forecast: {{min_history: 30s}}
"""


def env(pg_cluster: Cluster, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "pgperf.yaml"
    config.write_text(CONFIG)
    return {**os.environ, "PGPERF_CONFIG": str(config), "PGPERF_STORE_SCHEMA": SCHEMA,
            "PGPERF_STORE_DSN": pg_cluster.dsn(), "PGPERF_STORE_SPOOL_DIR": str(tmp_path / "spool"),
            "PGPERF_TARGET_NAME": TARGET, "PGPERF_API_VIEWER_TOKEN": VIEWER}


def pgperf(*args: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgperf", *args], capture_output=True, text=True, timeout=120,
                          env=environ)


def test_a_growing_database_is_forecast_at_its_rate(pg_cluster: Cluster, growing: Grower, tmp_path: Path) -> None:
    dsn = pg_cluster.dsn(dbname=DB)
    environ = env(pg_cluster, tmp_path)
    with pg_cluster.connect() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        migrate(conn, SCHEMA)
        now = datetime.now(UTC)
        ensure_partitions(conn, SCHEMA, [(now - timedelta(days=d)).date() for d in range(4)])
        conn.execute(sql.SQL(_DISK_HISTORY).format(s=sql.Identifier(SCHEMA)),
                     {"target": TARGET, "end": now - timedelta(seconds=5)})
    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "pgperf", "serve", "--dsn", dsn, "--profile", "development",
                              "--sampling-interval", "1", "--web.listen-address", f"127.0.0.1:{port}"],
                             env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def sampled() -> int:
            assert serve.poll() is None, "pgperf serve exited"
            rows = pg_cluster.execute(f"SELECT count(database_size_bytes) FROM {SCHEMA}.resource_metrics"
                                      " WHERE target = %s", params=(TARGET,))
            return int(rows[0][0])

        wait_until(lambda: sampled() >= 2, timeout=60, interval=0.5, message="pgperf's first samples stored")
        first = measure(pg_cluster)
        time.sleep(SAMPLING)
        last = measure(pg_cluster)
        wait_until(lambda: sampled() >= SAMPLING * 0.8, timeout=30, message="a sample a second stored")
        api = requests.get(f"http://127.0.0.1:{port}/api/v1/forecasts?metric=database_size_bytes&since=10m",
                           headers={"Authorization": f"Bearer {VIEWER}"}, timeout=60)
    finally:
        serve.terminate()
        try:
            _, errors = serve.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            _, errors = serve.communicate()
    assert serve.returncode == 0, errors[-3000:]
    rate = (last[1] - first[1]) / (last[0] - first[0]) * 86400  # bytes per day, measured here
    xids = (last[2] - first[2]) / (last[0] - first[0]) * 86400
    assert rate > 1e9 and growing.batches > 0.8 * SAMPLING / 0.05  # the table grew all along, ~25 GB a day

    window = ["--from", (datetime.now(UTC) - timedelta(minutes=10)).isoformat(), "--to", datetime.now(UTC).isoformat()]
    report_env = {k: v for k, v in environ.items() if k != "PGPERF_STORE_DSN"}
    proc = pgperf("report", "--dsn", dsn, "--store-dsn", pg_cluster.dsn(), "--profile", "development", *window,
                  "--format", "json", environ=report_env)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    forecasts = {(f["metric"], f["subject"]): f for f in data["forecasts"]}

    size = forecasts[("database_size_bytes", None)]
    age = forecasts[("transaction_id_age", None)]
    print(f"database size: {rate:,.0f} bytes a day measured, {size['growth_per_day']:,.0f} forecast; transaction "
          f"IDs: {xids:,.0f} a day measured, {age['growth_per_day']:,.0f} forecast")  # shown with -s
    assert size["reason"] is None, size
    assert size["growth_per_day"] == pytest.approx(rate, rel=0.30), (size, rate)
    assert size["points"] >= SAMPLING * 0.8 and "second medians" in size["method"]
    # The transaction ID age grows with every transaction the cluster assigns.
    assert age["growth_per_day"] == pytest.approx(xids, rel=0.30), (age, xids)

    disk = forecasts[("disk_usage_bytes", None)]  # the synthetic history
    assert disk["limit"] == 300 * GB and disk["growth_per_day"] == pytest.approx(5 * GB, rel=0.1)
    low, at, high = (datetime.fromisoformat(x) for x in (disk["interval"]["low"], disk["reaches_limit_at"],
                                                           disk["interval"]["high"]))
    # Samples up to 5 GB above the trend reach the disk's size up to a day before it.
    assert low < at < high and timedelta(days=8) < at - datetime.now(UTC) < timedelta(days=10.5), disk
    assert any(r["rule"] == "capacity_disk" for r in data["recommendations"])

    assert api.status_code == 200, api.text
    served = api.json()["forecasts"]
    assert [f["metric"] for f in served] == ["database_size_bytes"]
    assert served[0]["growth_per_day"] == pytest.approx(rate, rel=0.30)

    text = pgperf("report", "--dsn", dsn, "--store-dsn", pg_cluster.dsn(), "--profile", "development", *window,
                  "--format", "text", "--no-save", environ=report_env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    section = lines.index("🔮 Forecasts (as of the window's end):")
    assert lines[section + 1].startswith("- Disk full in ") and "; 95 % interval " in lines[section + 1]
    assert lines[section + 2].startswith("- Database size grows by ")

    page = tmp_path / "report.html"
    html = pgperf("report", "--dsn", dsn, "--store-dsn", pg_cluster.dsn(), "--profile", "development", *window,
                  "--format", "html", "--no-save", "--output", str(page), environ=report_env)
    assert html.returncode == 0, html.stderr
    browser = Browser()
    try:  # the forecasts' charts of real data in a real browser, without a script error
        browser.get(page.resolve().as_uri())
        drawn = browser.wait(lambda: browser.js(
            "return window.pgperfCharts && Object.keys(window.pgperfCharts.charts).filter(function (k) {"
            " return k.indexOf('chart-forecast-') === 0; })"), message="the forecasts' charts drawn")
        assert len(drawn) >= 3, drawn  # the disk, the database size, the transaction ID age (connections too)
        assert browser.console_errors() == []
    finally:
        browser.quit()
