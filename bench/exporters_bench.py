"""pgperf and postgres_exporter side by side on one PostgreSQL 15.

The database: 1,000 tables (a few indexes each) in a database ``bench``, about 2,000
distinct statements in pg_stat_statements (``pg_stat_statements.max = 5000``) and pgbench
running at a steady rate throughout. Each exporter connects as its own role, so that its
database time can be read from pg_stat_statements (``userid``); pgperf's sample store
writes as a third role into its own database, and is counted apart.

Two pairs of exporters run:

* the *window* pair runs for the whole benchmark (8 minutes, so that ``make bench`` stays
  under 10; the memory after 10 minutes comes from ``make soak``), scraped every 15 s like
  Prometheus scrapes: CPU seconds, resident memory at the end, database time per
  collection cycle and the latency of those scrapes come from it;
* the *latency* pair is started for the /metrics latency figures only (hundreds of
  sequential scrapes, then 50 concurrent scrapers), so that their work does not count in
  the window pair's CPU time.

postgres_exporter queries the database on every scrape; pgperf samples in a background
thread every 15 s and serves the latest sample from memory.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tools.cluster import Cluster, free_port

POSTGRES_EXPORTER = "/usr/bin/prometheus-postgres-exporter"
DATABASE = "bench"
STORE_DATABASE = "pgperf"
TOP_N = 100  # per-queryid statements served by each exporter

#: role -> password; each exporter (and pgperf's store) connects as its own role.
ROLES = {
    "pgperf": "bench-pgperf-secret",
    "pgperf_latency": "bench-pgperf-secret",
    "pgperf_all_tables": "bench-pgperf-secret",
    "pgperf_store": "bench-store-secret",
    "postgres_exporter": "bench-pge-secret",
    "postgres_exporter_latency": "bench-pge-secret",
    "postgres_exporter_default": "bench-pge-secret",
}


# -- the database ---------------------------------------------------------------------------


def create_roles(cluster: Cluster) -> None:
    with cluster.connect() as conn:
        for role, password in ROLES.items():
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' IN ROLE pg_monitor")
        conn.execute(f"CREATE DATABASE {DATABASE}")
        conn.execute(f"CREATE DATABASE {STORE_DATABASE} OWNER pgperf_store")
    with cluster.connect(DATABASE) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


def create_tables(cluster: Cluster, tables: int) -> float:
    """*tables* tables t_1 ... t_n with 20 rows each, two indexes, analyzed; seconds taken."""
    started = time.perf_counter()
    with cluster.connect(DATABASE) as conn:
        conn.execute(f"""
DO $$
BEGIN
  FOR i IN 1..{tables} LOOP
    EXECUTE format('CREATE TABLE t_%s (id int PRIMARY KEY, a int, b text, c numeric, d timestamptz,'
                   ' e bool)', i);
    EXECUTE format('CREATE INDEX ON t_%s (a)', i);
    EXECUTE format('INSERT INTO t_%s SELECT g, g %% 7, md5(g::text), g * 1.5, now(), g %% 2 = 0'
                   ' FROM generate_series(1, 20) g', i);
  END LOOP;
END $$""")
        conn.execute("ANALYZE")
    return time.perf_counter() - started


# Distinct statement shapes per table: different column lists and predicates normalise to
# different queryids.
_SHAPES = (
    "SELECT id, a FROM t_{n} WHERE id = %s",
    "SELECT b, c FROM t_{n} WHERE a = %s",
    "SELECT count(*) FROM t_{n} WHERE c > %s",
    "SELECT id, d, e FROM t_{n} WHERE b LIKE %s",
    "UPDATE t_{n} SET c = c + 1 WHERE id = %s",
)


def create_statements(cluster: Cluster, tables: int, statements: int, runs: int = 3) -> int:
    """Run about *statements* distinct statements *runs* times each; return the number of
    pg_stat_statements entries afterwards."""
    per_table = max(1, -(-statements // tables))
    shapes = _SHAPES[:per_table]
    done = 0
    args = {"SELECT b, c FROM t_{n} WHERE a = %s": 3, "SELECT count(*) FROM t_{n} WHERE c > %s": 10,
            "SELECT id, d, e FROM t_{n} WHERE b LIKE %s": "a%"}
    with cluster.connect(DATABASE) as conn, conn.pipeline():
        for n in range(1, tables + 1):
            for shape in shapes:
                if done >= statements:
                    break
                sql = shape.format(n=n)
                for r in range(runs):
                    conn.execute(sql.encode(), (args.get(shape, r + 1),))  # type: ignore[arg-type]
                done += 1
    return int(cluster.execute("SELECT count(*) FROM pg_stat_statements")[0][0])


def role_exec_ms(cluster: Cluster) -> dict[str, float]:
    """Total execution time in pg_stat_statements (milliseconds) per role of ROLES."""
    rows = cluster.execute(
        "SELECT r.rolname, sum(s.total_exec_time) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid"
        " WHERE r.rolname = ANY(%s) GROUP BY r.rolname", params=(list(ROLES),))
    found = {name: float(ms) for name, ms in rows}
    return {role: found.get(role, 0.0) for role in ROLES}


# -- postgres_exporter's custom queries -----------------------------------------------------

# The statements query mirrors pgperf's per-queryid families (calls, time, rows, block
# hits and reads, block I/O time, temporary blocks, longest execution) for the top N
# statements; postgres_exporter has no interval state, so its top N is by time since the
# statistics were reset. Column names of PostgreSQL 15 (pg_stat_statements 1.10).
# The table queries are the ones postgres_exporter users commonly add (every user table
# of every database, with --auto-discover-databases), plus the table and index sizes that
# pgperf serves.
QUERIES_YAML = """\
pg_stat_statements:
  master: true
  query: |
    SELECT r.rolname AS user, d.datname, s.queryid::text AS queryid,
           s.calls, s.total_exec_time / 1000 AS seconds_total, s.rows,
           s.shared_blks_hit, s.shared_blks_read, s.temp_blks_written,
           s.blk_read_time / 1000 AS block_read_seconds, s.blk_write_time / 1000 AS block_write_seconds,
           s.max_exec_time / 1000 AS max_seconds
    FROM pg_stat_statements s
    JOIN pg_roles r ON r.oid = s.userid
    JOIN pg_database d ON d.oid = s.dbid
    WHERE s.queryid IS NOT NULL
    ORDER BY s.total_exec_time DESC
    LIMIT {top_n}
  metrics:
    - user: {{usage: LABEL, description: "Role that ran the statement"}}
    - datname: {{usage: LABEL, description: "Database of the statement"}}
    - queryid: {{usage: LABEL, description: "Statement identifier"}}
    - calls: {{usage: COUNTER, description: "Executions"}}
    - seconds_total: {{usage: COUNTER, description: "Execution time, in seconds"}}
    - rows: {{usage: COUNTER, description: "Rows retrieved or affected"}}
    - shared_blks_hit: {{usage: COUNTER, description: "Shared buffer hits"}}
    - shared_blks_read: {{usage: COUNTER, description: "Shared blocks read"}}
    - temp_blks_written: {{usage: COUNTER, description: "Temporary blocks written"}}
    - block_read_seconds: {{usage: COUNTER, description: "Time reading blocks, in seconds"}}
    - block_write_seconds: {{usage: COUNTER, description: "Time writing blocks, in seconds"}}
    - max_seconds: {{usage: GAUGE, description: "Longest execution, in seconds"}}

pg_stat_user_tables:
  query: |
    SELECT current_database() AS datname, schemaname, relname, seq_scan, seq_tup_read, idx_scan,
           idx_tup_fetch, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd, n_live_tup, n_dead_tup,
           n_mod_since_analyze, n_ins_since_vacuum,
           COALESCE(extract(epoch FROM last_vacuum), 0) AS last_vacuum,
           COALESCE(extract(epoch FROM last_autovacuum), 0) AS last_autovacuum,
           COALESCE(extract(epoch FROM last_analyze), 0) AS last_analyze,
           COALESCE(extract(epoch FROM last_autoanalyze), 0) AS last_autoanalyze,
           vacuum_count, autovacuum_count, analyze_count, autoanalyze_count,
           pg_table_size(relid) AS table_size_bytes, pg_indexes_size(relid) AS index_size_bytes
    FROM pg_stat_user_tables
  metrics:
    - datname: {{usage: LABEL, description: "Database"}}
    - schemaname: {{usage: LABEL, description: "Schema"}}
    - relname: {{usage: LABEL, description: "Table"}}
    - seq_scan: {{usage: COUNTER, description: "Sequential scans"}}
    - seq_tup_read: {{usage: COUNTER, description: "Rows fetched by sequential scans"}}
    - idx_scan: {{usage: COUNTER, description: "Index scans"}}
    - idx_tup_fetch: {{usage: COUNTER, description: "Rows fetched by index scans"}}
    - n_tup_ins: {{usage: COUNTER, description: "Rows inserted"}}
    - n_tup_upd: {{usage: COUNTER, description: "Rows updated"}}
    - n_tup_del: {{usage: COUNTER, description: "Rows deleted"}}
    - n_tup_hot_upd: {{usage: COUNTER, description: "Rows HOT updated"}}
    - n_live_tup: {{usage: GAUGE, description: "Estimated live rows"}}
    - n_dead_tup: {{usage: GAUGE, description: "Estimated dead rows"}}
    - n_mod_since_analyze: {{usage: GAUGE, description: "Rows modified since the last analyze"}}
    - n_ins_since_vacuum: {{usage: GAUGE, description: "Rows inserted since the last vacuum"}}
    - last_vacuum: {{usage: GAUGE, description: "Last manual vacuum"}}
    - last_autovacuum: {{usage: GAUGE, description: "Last autovacuum"}}
    - last_analyze: {{usage: GAUGE, description: "Last manual analyze"}}
    - last_autoanalyze: {{usage: GAUGE, description: "Last autoanalyze"}}
    - vacuum_count: {{usage: COUNTER, description: "Manual vacuums"}}
    - autovacuum_count: {{usage: COUNTER, description: "Autovacuums"}}
    - analyze_count: {{usage: COUNTER, description: "Manual analyzes"}}
    - autoanalyze_count: {{usage: COUNTER, description: "Autoanalyzes"}}
    - table_size_bytes: {{usage: GAUGE, description: "Table size, in bytes"}}
    - index_size_bytes: {{usage: GAUGE, description: "Size of the table's indexes, in bytes"}}

pg_statio_user_tables:
  query: |
    SELECT current_database() AS datname, schemaname, relname, heap_blks_read, heap_blks_hit,
           idx_blks_read, idx_blks_hit, toast_blks_read, toast_blks_hit, tidx_blks_read, tidx_blks_hit
    FROM pg_statio_user_tables
  metrics:
    - datname: {{usage: LABEL, description: "Database"}}
    - schemaname: {{usage: LABEL, description: "Schema"}}
    - relname: {{usage: LABEL, description: "Table"}}
    - heap_blks_read: {{usage: COUNTER, description: "Heap blocks read"}}
    - heap_blks_hit: {{usage: COUNTER, description: "Heap buffer hits"}}
    - idx_blks_read: {{usage: COUNTER, description: "Index blocks read"}}
    - idx_blks_hit: {{usage: COUNTER, description: "Index buffer hits"}}
    - toast_blks_read: {{usage: COUNTER, description: "TOAST blocks read"}}
    - toast_blks_hit: {{usage: COUNTER, description: "TOAST buffer hits"}}
    - tidx_blks_read: {{usage: COUNTER, description: "TOAST index blocks read"}}
    - tidx_blks_hit: {{usage: COUNTER, description: "TOAST index buffer hits"}}
"""


def write_queries(path: Path, top_n: int = TOP_N) -> Path:
    path.write_text(QUERIES_YAML.format(top_n=top_n))
    return path


# -- the exporters ---------------------------------------------------------------------------


@dataclass
class Exporter:
    """One exporter process and its /metrics URL."""

    name: str
    role: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    stores: bool = False  # pgperf with its sample store (role pgperf_store)
    started: float = field(default_factory=time.monotonic)

    @property
    def process(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until /metrics answers with pg_up 1 (pgperf: after its first sample)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                status, body, _ = fetch(self.port, gzipped=False, timeout=10)
                if status == 200 and b"\npg_up 1" in body:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s: {self.log.read_text()[-2000:]}")


def start_pgperf(cluster: Cluster, role: str, work: Path, interval: str, *, store: bool = True,
                 settings: dict[str, str] | None = None) -> Exporter:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPERF_", "PG", "DATA_SOURCE"))}
    env.update(settings or {})
    args = [sys.executable, "-m", "pgperf", "serve", "--profile", "production",
            "--dsn", cluster.dsn(user=role, password=ROLES[role], dbname=DATABASE),
            "--sampling-interval", interval, "--web.listen-address", f"127.0.0.1:{port}"]
    if store:
        env["PGPERF_STORE_SPOOL_DIR"] = str(work / f"spool-{role}")
        env["PGPERF_STORE_SCHEMA"] = role
        args += ["--store-dsn", cluster.dsn(user="pgperf_store", password=ROLES["pgperf_store"],
                                            dbname=STORE_DATABASE)]
    else:
        args.append("--no-store")
    log = work / f"{role}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    return Exporter("pgperf", role, proc, port, log, stores=store)


def start_postgres_exporter(cluster: Cluster, role: str, work: Path, queries: Path | None) -> Exporter:
    """postgres_exporter with the query file and every database (*queries*), or with its
    default collectors and flags only (None)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATA_SOURCE"))}
    env["DATA_SOURCE_NAME"] = cluster.dsn(user=role, password=ROLES[role], dbname=DATABASE) + "?sslmode=disable"
    args = [POSTGRES_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    if queries is not None:
        args += [f"--extend.query-path={queries}", "--auto-discover-databases", "--exclude-databases=template0,template1"]
    log = work / f"{role}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    return Exporter("postgres_exporter", role, proc, port, log)


def version_of_postgres_exporter() -> str:
    out = subprocess.run([POSTGRES_EXPORTER, "--version"], capture_output=True, text=True)
    text = (out.stdout + out.stderr).split()
    return text[2] if len(text) > 2 else "unknown"


# -- scraping -------------------------------------------------------------------------------


def fetch(port: int, *, gzipped: bool = True, timeout: float = 60.0, decode: bool = True,
          conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes, float]:
    """One GET /metrics: (status, body, seconds until the whole body arrived). With
    *decode*, a gzipped body is decompressed (after the clock stopped); the timed loops
    leave that out, so that the client's work does not compete with the exporter's."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "gzip" if gzipped else "identity"}
    try:
        t0 = time.perf_counter()
        c.request("GET", "/metrics", headers=headers)
        response = c.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - t0
        if decode and response.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return response.status, body, elapsed
    finally:
        if own:
            c.close()


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, max(0, int(round(q * n + 0.5)) - 1))] * 1000

    return {"n": n, "p50_ms": statistics.median(ordered) * 1000, "p90_ms": at(0.90), "p99_ms": at(0.99),
            "max_ms": ordered[-1] * 1000, "mean_ms": statistics.fmean(ordered) * 1000}


def sequential(port: int, n: int, gzipped: bool = True) -> dict[str, float]:
    """*n* scrapes one after the other on one keep-alive connection, like Prometheus."""
    times = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(n):
            status, _, elapsed = fetch(port, gzipped=gzipped, decode=False, conn=conn)
            if status != 200:
                raise RuntimeError(f"scrape answered {status}")
            times.append(elapsed)
    finally:
        conn.close()
    return percentiles(times)


def concurrent(port: int, scrapers: int, total: int, gzipped: bool = True) -> dict[str, float]:
    """*total* scrapes by *scrapers* clients at once, each on its own keep-alive connection."""
    per = max(1, total // scrapers)
    barrier = threading.Barrier(scrapers)

    def client() -> list[float]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        out = []
        try:
            barrier.wait()
            for _ in range(per):
                status, _, elapsed = fetch(port, gzipped=gzipped, decode=False, conn=conn)
                if status != 200:
                    raise RuntimeError(f"scrape answered {status}")
                out.append(elapsed)
        finally:
            conn.close()
        return out

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=scrapers) as pool:
        results = [f.result() for f in [pool.submit(client) for _ in range(scrapers)]]
    wall = time.perf_counter() - started
    figures = percentiles([t for r in results for t in r])
    figures["scrapers"] = scrapers
    figures["scrapes_per_second"] = figures["n"] / wall
    return figures


def series(body: bytes) -> dict[str, Any]:
    """Sample lines of one exposition, in all and for the families of interest."""
    lines = [line for line in body.decode().splitlines() if line and not line.startswith("#")]
    prefixes = ("pg_stat_statements", "pg_stat_user_tables", "pg_statio_user_tables", "pg_settings", "process_",
                "go_", "pg_stat_database", "pg_stat_activity", "pg_locks", "pg_host", "pgperf_")
    by = {p: sum(1 for line in lines if line.startswith(p)) for p in prefixes}
    tables = sum(1 for line in lines if line.startswith("pg_stat_user_tables_seq_scan{"))
    return {"total": len(lines), "bytes": len(body), "by_prefix": by, "tables": tables}


# -- the 10-minute window ----------------------------------------------------------------------


class Window:
    """The window pair, scraped every *scrape_every* seconds for *seconds*; CPU, RSS and
    database time are read at *warm_up* and at the end."""

    def __init__(self, cluster: Cluster, exporters: list[Exporter], seconds: float, warm_up: float,
                 scrape_every: float, first_scrape: float) -> None:
        self.cluster = cluster
        self.exporters = exporters
        self.seconds = seconds
        self.warm_up = warm_up
        self.scrape_every = scrape_every
        self.first_scrape = first_scrape  # monotonic time of the first scrape
        self.started = min(e.started for e in exporters)  # times count from the exporters' start
        self.quiet_point: dict[str, Any] | None = None
        self.latencies: dict[str, list[float]] = {e.role: [] for e in exporters}
        self.scrape_errors: dict[str, int] = {e.role: 0 for e in exporters}
        self.samples: dict[str, float] = {}  # pgperf's pgperf_samples_total at the last scrape
        self.start_point: dict[str, Any] | None = None
        self.end_point: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="window", daemon=True)
        self._thread.start()

    def _point(self) -> dict[str, Any]:
        point: dict[str, Any] = {"t": time.monotonic() - self.started, "db_ms": role_exec_ms(self.cluster)}
        for e in self.exporters:
            point[e.role] = {"cpu_s": e.cpu_seconds(), "rss": e.rss(), "scrapes": len(self.latencies[e.role])}
        return point

    def _scrape(self, e: Exporter) -> None:
        try:
            status, body, elapsed = fetch(e.port, gzipped=True, timeout=self.scrape_every, decode=e.name == "pgperf")
            if status != 200:
                raise OSError(status)
            self.latencies[e.role].append(elapsed)
            if e.name == "pgperf":
                for line in body.decode().splitlines():
                    if line.startswith("pgperf_samples_total "):
                        self.samples[e.role] = float(line.split()[1])
        except (OSError, http.client.HTTPException):
            self.scrape_errors[e.role] += 1

    def mark_quiet(self) -> None:
        """From now on nothing else runs on the machine (the other sections are done)."""
        if self.end_point is None:
            point = self._point()
            point["pgperf_samples"] = dict(self.samples)
            self.quiet_point = point

    def _run(self) -> None:
        next_scrape = self.first_scrape
        while not self._stop.is_set():
            now = time.monotonic()
            if self.start_point is None and now - self.started >= self.warm_up:
                self.start_point = self._point()
                self.start_point["pgperf_samples"] = dict(self.samples)
            if now - self.started >= self.seconds:
                break
            if now >= next_scrape:
                # One after the other, pgperf first: postgres_exporter's scrape is its collection,
                # which would slow the others' if they ran at the same time.
                for e in sorted(self.exporters, key=lambda e: e.name != "pgperf"):
                    self._scrape(e)
                next_scrape += self.scrape_every
            self._stop.wait(0.2)
        for e in self.exporters:
            if e.name == "pgperf":
                self._scrape(e)  # the current sample count at the end
        self.end_point = self._point()
        self.end_point["pgperf_samples"] = dict(self.samples)

    def remaining(self) -> float:
        return max(0.0, self.seconds - (time.monotonic() - self.started))

    def finish(self) -> dict[str, Any]:
        self._thread.join()
        start, end = self.start_point, self.end_point
        assert start is not None and end is not None
        hours = (end["t"] - start["t"]) / 3600
        # Database time from the moment the other sections were done, if enough cycles are
        # left: while they run, every query competes with them for the cores.
        db_start = start
        quiet = self.quiet_point
        if quiet is not None and all(self._cycles(e, quiet, end) >= 4 for e in self.exporters):
            db_start = quiet
        out: dict[str, Any] = {"seconds": end["t"], "measured_seconds": end["t"] - start["t"],
                               "db_from_seconds": db_start["t"]}
        for e in self.exporters:
            a, b = start[e.role], end[e.role]
            cycles = self._cycles(e, db_start, end)
            db_ms = end["db_ms"][e.role] - db_start["db_ms"][e.role]
            lat = self.latencies[e.role][1:] or self.latencies[e.role]
            out[e.role] = {
                "role": e.role,
                "cpu_seconds": b["cpu_s"] - a["cpu_s"],
                "cpu_seconds_total": b["cpu_s"],
                "cpu_seconds_per_hour": (b["cpu_s"] - a["cpu_s"]) / hours if hours else 0.0,
                "rss_bytes": b["rss"],
                "rss_start_bytes": a["rss"],
                "cycles": cycles,
                "db_ms_per_cycle": db_ms / cycles if cycles else 0.0,
                "scrape": percentiles(lat) if lat else {},
                "scrape_errors": self.scrape_errors[e.role],
            }
            if e.stores:
                store_ms = end["db_ms"]["pgperf_store"] - db_start["db_ms"]["pgperf_store"]
                out[e.role]["store_db_ms_per_cycle"] = store_ms / cycles if cycles else 0.0
        return out

    @staticmethod
    def _cycles(e: Exporter, a: dict[str, Any], b: dict[str, Any]) -> float:
        """Collection cycles between two points: pgperf's samples, postgres_exporter's scrapes."""
        if e.name == "pgperf":
            return float(b["pgperf_samples"].get(e.role, 0.0) - a["pgperf_samples"].get(e.role, 0.0))
        return float(b[e.role]["scrapes"] - a[e.role]["scrapes"])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


# -- the comparison ---------------------------------------------------------------------------


@dataclass
class Sizes:
    tables: int
    statements: int
    window_seconds: float
    warm_up: float
    scrape_every: float
    interval: str
    sequential_pgperf: int
    sequential_pge: int
    scrapers: int
    concurrent_pgperf: int
    concurrent_pge: int
    pgbench_rate: int

    @property
    def interval_seconds(self) -> float:
        return float(self.interval.rstrip("s"))

    @classmethod
    def full(cls) -> Sizes:
        return cls(tables=1000, statements=2000, window_seconds=480, warm_up=60, scrape_every=15, interval="15s",
                   sequential_pgperf=300, sequential_pge=100, scrapers=50, concurrent_pgperf=500,
                   concurrent_pge=200, pgbench_rate=50)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(tables=20, statements=40, window_seconds=12, warm_up=4, scrape_every=2, interval="2s",
                   sequential_pgperf=10, sequential_pge=5, scrapers=4, concurrent_pgperf=16, concurrent_pge=8,
                   pgbench_rate=20)


class Comparison:
    """Set up the database, start the window pair; later the latency pair; then finish."""

    def __init__(self, sizes: Sizes, work: Path) -> None:
        self.sizes = sizes
        self.work = work / "compare"
        self.work.mkdir(parents=True, exist_ok=True)
        self.cluster = Cluster(name="pgperf-bench-compare", settings={
            "pg_stat_statements.max": 5000, "shared_buffers": "'256MB'", "max_connections": 200,
        })
        self.exporters: list[Exporter] = []
        self.window: Window | None = None
        self.facts: dict[str, Any] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Comparison:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.window is not None:
            self.window.stop()
        for e in self.exporters:
            e.stop()
        self._stack.close()
        self.cluster.destroy()

    def start(self) -> None:
        """The database (tables first), then the window pair, then statements and load."""
        s = self.sizes
        if not Path(POSTGRES_EXPORTER).exists():
            raise RuntimeError(f"{POSTGRES_EXPORTER} not found: apt-get install prometheus-postgres-exporter")
        self.cluster.start()
        create_roles(self.cluster)
        self.facts["tables_seconds"] = create_tables(self.cluster, s.tables)
        queries = write_queries(self.work / "queries.yaml")
        self.queries = queries
        pgperf = start_pgperf(self.cluster, "pgperf", self.work, s.interval)
        pge = start_postgres_exporter(self.cluster, "postgres_exporter", self.work, queries)
        # postgres_exporter as it comes (default collectors and flags): the reference of
        # pgperf's database time with every collector at its defaults.
        pge_default = start_postgres_exporter(self.cluster, "postgres_exporter_default", self.work, None)
        self.exporters += [pgperf, pge, pge_default]
        t0 = time.perf_counter()
        self.facts["statements_entries"] = create_statements(self.cluster, s.tables, s.statements)
        self.facts["statements_seconds"] = time.perf_counter() - t0
        self._stack.enter_context(self.cluster.pgbench(clients=2, rate=s.pgbench_rate, dbname=DATABASE))
        for e in (pgperf, pge, pge_default):
            e.wait_ready()
        # The collections are staggered, as they would be on their own schedules: pgperf
        # samples at its start and every interval after; the pgperf serving every table a
        # third of an interval later; postgres_exporter is scraped (and collects) half an
        # interval later. Together they would compete for the cores and slow each other.
        every_at = self._phase(pgperf, s.interval_seconds / 3)
        time.sleep(max(0.0, every_at - time.monotonic()))
        # pgperf serving every table, like postgres_exporter's query file: the same coverage of
        # the tables, for the database time (no store: its writes are counted apart anyway).
        every = start_pgperf(self.cluster, "pgperf_all_tables", self.work, s.interval, store=False,
                             settings={"PGPERF_COLLECTORS_TABLES_LIMIT": "100000"})
        self.exporters.append(every)
        every.wait_ready()
        self.window = Window(self.cluster, [pgperf, pge, pge_default, every], s.window_seconds, s.warm_up,
                             s.scrape_every,
                             first_scrape=self._phase(pgperf, s.interval_seconds / 2))
        self.facts["postgres"] = self.cluster.major
        self.facts["postgres_exporter_version"] = version_of_postgres_exporter()

    def _phase(self, pgperf: Exporter, offset: float) -> float:
        """The next monotonic time that is *offset* seconds after one of pgperf's samples."""
        _, body, _ = fetch(pgperf.port, gzipped=False)
        last = next(float(line.split()[1]) for line in body.decode().splitlines()
                    if line.startswith("pgperf_last_sample_timestamp_seconds "))
        at = time.monotonic() - (time.time() - last) + offset
        step = self.sizes.interval_seconds
        while at < time.monotonic():
            at += step
        return at

    def quiet(self) -> None:
        """The other sections are done: database time is measured from here (if long enough)."""
        if self.window is not None:
            self.window.mark_quiet()

    def latency(self) -> dict[str, Any]:
        """The latency pair: sequential and concurrent scrapes, gzip and plain; series."""
        s = self.sizes
        out: dict[str, Any] = {}
        pgperf = start_pgperf(self.cluster, "pgperf_latency", self.work, s.interval, store=False)
        pge = start_postgres_exporter(self.cluster, "postgres_exporter_latency", self.work, self.queries)
        self.exporters += [pgperf, pge]
        try:
            for e, n, total in ((pgperf, s.sequential_pgperf, s.concurrent_pgperf),
                                (pge, s.sequential_pge, s.concurrent_pge)):
                e.wait_ready()
                _, body, _ = fetch(e.port, gzipped=False)
                fetch(e.port)  # warm
                out[e.name] = {
                    "series": series(body),
                    "load": os.getloadavg()[0],
                    "sequential_gzip": sequential(e.port, n, gzipped=True),
                    "sequential_plain": sequential(e.port, max(10, n // 3), gzipped=False),
                    "concurrent_gzip": concurrent(e.port, s.scrapers, total, gzipped=True),
                    "load_after": os.getloadavg()[0],
                }
                e.stop()
        finally:
            pgperf.stop()
            pge.stop()
        out["statements_entries"] = int(self.cluster.execute("SELECT count(*) FROM pg_stat_statements")[0][0])
        return out

    def finish(self) -> dict[str, Any]:
        assert self.window is not None
        figures = self.window.finish()
        self.window = None
        for e in self.exporters:
            e.stop()
        return {**self.facts, "tables": self.sizes.tables, "statements": self.sizes.statements,
                "interval": self.sizes.interval, "top_n": TOP_N, "window": figures}


@contextlib.contextmanager
def comparison(quick: bool, work: Path) -> Iterator[Comparison]:
    with Comparison(Sizes.quick() if quick else Sizes.full(), work) as comp:
        yield comp


def available() -> bool:
    return shutil.which(POSTGRES_EXPORTER) is not None
