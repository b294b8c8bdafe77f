"""What query insight costs: one plans refresh and one second of wait sampling.

A throwaway PostgreSQL 15 (pg_wait_sampling preloaded, HypoPG created where Debian's
packages are installed) gets 2,000 distinct statements in pg_stat_statements over 200
tables, and active sessions while the waits are sampled. Measured, each as the median of
several runs:

* a plans refresh of the top ``max_statements`` statements by total time (and of all
  2,000, to show how it scales), and the index advice made from those plans;
* one reading of the wait sampling sources (pg_stat_activity; pg_wait_sampling's profile);
* for scale, one read of all pg_stat_statements entries, the largest query of every
  sampling cycle;
* the sampling cost insight is judged against: one sample of the same server by pgperf's
  sampler (every collector of the production profile).

"Database time" is what pg_stat_statements records for the role doing the work (insight and
the sampler each connect as a role of their own), as the side-by-side comparison of
``make bench`` measures the sampler; "database CPU" the CPU time of its backend process
(/proc/PID/schedstat, in nanoseconds: parsing, planning and the protocol included);
"pgperf CPU" the CPU time of the thread doing the work (the active sessions' clients are
other threads of this process); "wall" the elapsed time. At the default intervals insight
costs four looks at pg_stat_activity per sampling interval (at most one a second), or one
read of pg_wait_sampling's profile per sampling interval where it is preloaded, plus a plans
refresh and its advice every 80 sampling intervals (at least 5 minutes apart); that is set
against the sampling cost per second, at the budget's 15 s sampling and at each profile's
interval.

    .venv/bin/python bench/insight_bench.py [--statements 2000] [--max-statements 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pgperf.config import PROFILES, load_config
from pgperf.db import SessionSettings
from pgperf.insight import Statement, WaitSampler, advise, detect_insight, refresh_plans
from pgperf.insight.options import InsightOptions
from pgperf.sampling import TargetSampler
from tools.cluster import Cluster, find_bindir

SETTINGS = SessionSettings(statement_timeout=10.0, lock_timeout=1.0)
TABLES = 200
SHAPES = (
    "SELECT a, b FROM {t} WHERE c = $1",
    "SELECT count(*) FROM {t} WHERE d > $1",
    "SELECT * FROM {t} WHERE e = $1 ORDER BY f LIMIT 10",
    "UPDATE {t} SET g = g + 1 WHERE a = $1",
    "SELECT sum(h) FROM {t} WHERE i BETWEEN $1 AND $2",
    "DELETE FROM {t} WHERE j = $1 AND a < 0",
    "SELECT x.a FROM {t} x JOIN {t} y ON x.a = y.b WHERE x.c = $1",
    "INSERT INTO {t} (a) SELECT $1 WHERE false",
    "SELECT DISTINCT b FROM {t} WHERE c < $1",
    "SELECT a, max(j) FROM {t} GROUP BY a HAVING count(*) > $1",
)


class Meter:
    """Wall time, this thread's CPU time, one backend's CPU time and one role's database time
    (pg_stat_statements, read on *admin*, another role's connection) of a block."""

    def __init__(self, backend_pid: int, role: str, admin: psycopg.Connection[Any]) -> None:
        self.backend = psutil.Process(backend_pid)
        self.schedstat = Path(f"/proc/{backend_pid}/schedstat")
        self.role = role
        self.admin = admin

    @contextmanager
    def measure(self, into: dict[str, list[float]]) -> Iterator[None]:
        # thread_time: the active sessions' client threads run in this process too.
        db_time = self._db_time()
        wall, cpu, db = time.perf_counter(), time.thread_time(), self._db()
        yield
        into.setdefault("wall_ms", []).append((time.perf_counter() - wall) * 1000)
        into.setdefault("pgperf_cpu_ms", []).append((time.thread_time() - cpu) * 1000)
        into.setdefault("db_cpu_ms", []).append((self._db() - db) * 1000)
        into.setdefault("db_time_ms", []).append(self._db_time() - db_time)

    def _db_time(self) -> float:
        row = self.admin.execute(
            "SELECT coalesce(sum(total_exec_time + total_plan_time), 0) FROM public.pg_stat_statements s"
            " JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = %s", (self.role,)).fetchone()
        return float(row[0]) if row else 0.0

    def _db(self) -> float:
        try:  # nanoseconds on a CPU; cpu_times() counts clock ticks of 10 ms
            return int(self.schedstat.read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            times = self.backend.cpu_times()
            return float(times.user + times.system)


def _median(runs: dict[str, list[float]]) -> dict[str, float]:
    return {key: round(statistics.median(values), 3) for key, values in runs.items()}


def _populate(cluster: Cluster, statements: int) -> None:
    per_table = len(SHAPES)
    tables = max(1, -(-statements // per_table))
    with cluster.connect() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_wait_sampling")
        for n in range(tables):
            conn.execute(f"CREATE TABLE t{n:03d} (a int, b int, c int, d int, e int, f int, g int, h int, i int, j int)")
            conn.execute(f"INSERT INTO t{n:03d} SELECT g, g % 7, g % 11, g, g % 13, g, 0, g, g, g % 17"
                         " FROM generate_series(1, 20000) g")
        conn.execute("ANALYZE")
        conn.execute("SELECT pg_stat_statements_reset()")
        done = 0
        for n in range(tables):
            for shape in SHAPES:
                if done >= statements:
                    break
                text = shape.format(t=f"t{n:03d}")
                params = (1, 2) if "$2" in text else (1,)
                # Server-side binding: pg_stat_statements records the text with $n as it is here.
                conn.execute(text.replace("$1", "%s").replace("$2", "%s"), params)
                done += 1


def _top(conn: psycopg.Connection[Any], limit: int) -> list[Statement]:
    rows = conn.execute(
        "SELECT s.queryid, s.query, d.datname, r.rolname, s.calls, s.total_exec_time"
        " FROM public.pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid JOIN pg_roles r ON r.oid = s.userid"
        " WHERE s.query ~ '^(SELECT|INSERT|UPDATE|DELETE) ' AND s.query ~ ' t[0-9]{3}'"
        " ORDER BY s.total_exec_time DESC LIMIT %s", (limit,)).fetchall()
    return [Statement(int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5])) for r in rows]


@contextmanager
def _active_sessions(cluster: Cluster, sessions: int) -> Iterator[None]:
    """*sessions* connections that keep running short statements (sleeps and scans)."""
    stop = threading.Event()

    def work(i: int) -> None:
        with cluster.connect() as conn:
            while not stop.is_set():
                if i % 2:
                    conn.execute("SELECT pg_sleep(0.05)")
                else:
                    conn.execute(f"SELECT count(*) FROM t{i % TABLES:03d} WHERE d > %s", (i,))

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(sessions)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(10)


def run(statements: int = 2000, max_statements: int | None = None, repeats: int = 5,
        sessions: int = 16, base_dir: str | None = None) -> dict[str, Any]:
    max_statements = max_statements or InsightOptions().plans.max_statements
    cluster = Cluster(find_bindir(15), base_dir=base_dir, name="pgperf-insight-bench", settings={
        "shared_preload_libraries": "'pg_stat_statements,pg_wait_sampling'", "pg_stat_statements.max": 10000,
        "max_connections": 100})
    cluster.start()
    results: dict[str, Any] = {"statements": statements, "max_statements": max_statements, "sessions": sessions}
    try:
        _populate(cluster, statements)
        hypopg = bool(cluster.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'hypopg'")[0][0])
        if hypopg:
            cluster.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
        for role in ("insight_bench", "sampler_bench"):  # their database time apart in pg_stat_statements
            cluster.execute(f"CREATE ROLE {role} SUPERUSER LOGIN PASSWORD '{PASSWORD}'")
        dsn = cluster.dsn(user="insight_bench", password=PASSWORD)
        with psycopg.connect(dsn, autocommit=True, **SETTINGS.connect_kwargs(dsn)) as conn, \
                cluster.connect() as admin:
            meter = Meter(conn.info.backend_pid, "insight_bench", admin)
            server = detect_insight(conn)
            results["pg_stat_statements_entries"] = conn.execute(
                "SELECT count(*) FROM public.pg_stat_statements").fetchone()[0]  # type: ignore[index]
            top = _top(conn, max_statements)
            everything = _top(conn, statements)
            results["hypopg"] = server.hypopg_schema is not None
            results["plans_top"] = _timed(meter, repeats, lambda: refresh_plans(conn, top, server, SETTINGS), batch=4)
            refresh = refresh_plans(conn, top, server, SETTINGS)
            results["plans_top"]["planned"] = len(refresh.plans)
            results["plans_top"]["skipped"] = sum(refresh.skipped.values())
            results["plans_all"] = _timed(meter, 1, lambda: refresh_plans(conn, everything, server, SETTINGS))
            results["advice_top"] = _timed(meter, repeats, lambda: advise(conn, refresh.plans, top, server, SETTINGS),
                                           batch=2)
            results["advice_top"]["advice"] = len(advise(conn, refresh.plans, top, server, SETTINGS))
            results["pg_stat_statements_read"] = _timed(meter, repeats, lambda: conn.execute(
                "SELECT * FROM public.pg_stat_statements(false)").fetchall(), batch=20)
            with _active_sessions(cluster, sessions):
                results["active_sessions"] = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'").fetchone()[0]  # type: ignore[index]
                activity = WaitSampler("bench", source="pg_stat_activity")
                profile = WaitSampler("bench", source="pg_wait_sampling")
                profile.sample(conn, server)  # the baseline reading
                results["waits_pg_stat_activity"] = _timed(meter, repeats, lambda: activity.sample(conn, server),
                                                           batch=100, pause=0.01)
                results["waits_pg_wait_sampling"] = _timed(meter, repeats, lambda: profile.sample(conn, server),
                                                           batch=100, pause=0.01)
            results["sample"] = _sampling(cluster, admin, repeats)
    finally:
        cluster.destroy()
    source = "waits_pg_wait_sampling" if server.wait_sampling else "waits_pg_stat_activity"
    results["waits_default_source"] = source.removeprefix("waits_")
    results["intervals"] = {"budget_15s": BUDGET_INTERVAL, **{
        profile: float(load_config(flags={"profile": profile}, env={}).sampling_interval) for profile in PROFILES}}
    per_second(results)
    return results


def per_second(results: dict[str, Any]) -> None:
    """Add to *results* insight's cost per second at its default intervals for each sampling
    interval of ``results["intervals"]``, and the sampling cost per second, from the costs
    measured per piece of work."""
    defaults = InsightOptions()
    for kind in ("db_time_ms", "db_cpu_ms", "pgperf_cpu_ms"):
        work = results["plans_top"][kind] + results["advice_top"][kind]
        # pg_stat_activity is looked at every insight.waits.interval; pg_wait_sampling's
        # cumulative profile is read once per sampling interval (insight.service).
        results[f"insight_{kind}_per_second"] = {name: {
            "pg_stat_activity": round(work / defaults.plans.every(seconds)
                                      + results["waits_pg_stat_activity"][kind] / defaults.waits.every(seconds), 4),
            "pg_wait_sampling": round(work / defaults.plans.every(seconds) + results["waits_pg_wait_sampling"][kind]
                                      / max(defaults.waits.every(seconds), seconds), 4),
        } for name, seconds in results["intervals"].items()}
        results[f"sampling_{kind}_per_second"] = {name: round(results["sample"][kind] / seconds, 4)
                                                   for name, seconds in results["intervals"].items()}


PASSWORD = "bench-0123456789"  # the throwaway cluster's roles (pg_hba asks for one over TCP)
#: The sampling interval of the budget (bench/README.md: "under 1 % of one core at 15 s").
BUDGET_INTERVAL = 15.0


def _sampling(cluster: Cluster, admin: psycopg.Connection[Any], repeats: int) -> dict[str, Any]:
    """One sample of *cluster* by pgperf's sampler (production profile's collectors, store
    off), as its own role."""
    config = load_config(flags={"profile": "production", "dsn": cluster.dsn(user="sampler_bench", password=PASSWORD),
                                "store": {"enabled": False}}, env={})
    sampler = TargetSampler(config.resolved_targets()[0], config)
    sampler.open()
    try:
        sampler.sample(wait=True)  # the first sample reads every statement text
        with sampler.db.connection() as conn:  # the pool's one connection: the sampler's
            meter = Meter(conn.info.backend_pid, "sampler_bench", admin)
        return _timed(meter, repeats, lambda: sampler.sample(wait=True), batch=2)
    finally:
        sampler.close()


def _timed(meter: Meter, repeats: int, work: Callable[[], object], *, batch: int = 1,
           pause: float = 0.0) -> dict[str, Any]:
    """Median over *repeats* measurements of *batch* calls each, per call: the kernel
    counts a process's CPU time in clock ticks (10 ms), far coarser than one reading."""
    runs: dict[str, list[float]] = {}
    for _ in range(repeats):
        with meter.measure(runs):
            for _ in range(batch):
                work()
                if pause:
                    time.sleep(pause)
    per_call = {key: [v / batch for v in values] for key, values in runs.items()}
    if pause:  # the pauses are not work
        per_call["wall_ms"] = [v - pause * 1000 for v in per_call["wall_ms"]]
    return {**_median(per_call), "runs": repeats * batch}


def _print(results: dict[str, Any]) -> None:
    print(f"insight with {results['pg_stat_statements_entries']:,} statements in pg_stat_statements, "
          f"{results['active_sessions']} active sessions while sampling waits, HypoPG: {results['hypopg']}")
    print(f"{'work':58} {'wall ms':>10} {'db time ms':>10} {'db CPU ms':>10} {'pgperf CPU ms':>14}")
    rows = [
        (f"plans refresh, top {results['max_statements']} ({results['plans_top']['planned']} planned)", "plans_top"),
        (f"plans refresh, all {results['statements']:,}", "plans_all"),
        ("index advice from the top statements' plans", "advice_top"),
        ("wait sampling: one reading of pg_stat_activity (1 s)", "waits_pg_stat_activity"),
        ("wait sampling: one reading of pg_wait_sampling (1 s)", "waits_pg_wait_sampling"),
        ("for scale: one read of every pg_stat_statements entry", "pg_stat_statements_read"),
        ("one sample by pgperf's sampler (the sampling cost)", "sample"),
    ]
    for label, key in rows:
        r = results[key]
        print(f"{label:58} {r['wall_ms']:>10.3f} {r['db_time_ms']:>10.3f} {r['db_cpu_ms']:>10.3f} "
              f"{r['pgperf_cpu_ms']:>14.3f}")
    print("per second, insight at its default intervals against sampling at each interval "
          "(waits from pg_stat_activity / pg_wait_sampling):")
    for kind, label in (("db_time_ms", "database time"), ("db_cpu_ms", "database CPU"), ("pgperf_cpu_ms", "pgperf CPU")):
        for name, sampling in results[f"sampling_{kind}_per_second"].items():
            insight = results[f"insight_{kind}_per_second"][name]
            print(f"  {label:14} {name:12} sampling {sampling:8.3f} ms/s; insight "
                  f"{insight['pg_stat_activity']:.3f} ms/s ({insight['pg_stat_activity'] / sampling:.3f}x) / "
                  f"{insight['pg_wait_sampling']:.3f} ms/s ({insight['pg_wait_sampling'] / sampling:.3f}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--statements", type=int, default=2000)
    parser.add_argument("--max-statements", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = run(args.statements, args.max_statements, args.repeats, args.sessions)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
