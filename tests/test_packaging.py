"""The wheel holds what pgperf needs at run time, and nothing the repository keeps for
its developers (tools/, tests/, bench/, the dashboard generator)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy

from tools.cluster import Cluster

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_runtime_code_only(tmp_path: Path) -> None:
    # Offline: the build backend comes from the test extras, not from an isolated download.
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(tmp_path)], check=True, cwd=tmp_path)
    wheels = list(tmp_path.glob("pgperf-*.whl"))
    assert len(wheels) == 1, wheels
    names = zipfile.ZipFile(wheels[0]).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"pgperf"}
    modules = {name for name in names if name.endswith(".py")}
    for developer_only in ("tools/", "tests/", "bench/", "pgperf/devtools/", "dashboards/"):
        assert not any(developer_only in name for name in modules), developer_only
    # What serve needs at run time is in it: the CLI, the migrations, the profiles, the pages.
    for needed in ("pgperf/cli.py", "pgperf/store/migrations/", "pgperf/config/profiles/",
                   "pgperf/http/templates/", "pgperf/http/static/", "pgperf/py.typed"):
        assert any(name.startswith(needed) for name in names), needed
    # Every source module of the package is in the wheel.
    source = {"pgperf/" + str(p.relative_to(ROOT / "exporter" / "pgperf"))
              for p in (ROOT / "exporter" / "pgperf").rglob("*.py")}
    assert source == modules


_SERVE_THEN_REPORT = r"""
import sys, time
from datetime import UTC, datetime, timedelta
sys.path[:0] = {paths!r}
from helpers import Exporter, make_config, wait_until
DEFERRED = ("jinja2", "pgperf.reports.builder", "pgperf.reports.forecasting", "pgperf.reports.queries")
exporter = Exporter(make_config({dsn!r}, store={{"enabled": True, "schema": "lazy_numpy", "spool_dir": {spool!r}}})).start()
try:
    wait_until(lambda: len(exporter.monitor.snapshots()) > 0 and exporter.value("pg_up") == 1, message="a sample")
    time.sleep(2.5)  # a few more samples, stored
    exporter.scrape()
    assert exporter.get("/api/v1/targets").status_code in (200, 401, 404)
    print("numpy after sampling:", "numpy" in sys.modules)
    print("deferred after sampling:", sorted(m for m in DEFERRED if m in sys.modules))
    end = datetime.now(UTC)
    report = exporter.monitor.generate_performance_report(end - timedelta(minutes=5), end)
    print("numpy after a report:", "numpy" in sys.modules, report.report_id)
    print("deferred after a report:", sorted(m for m in DEFERRED if m in sys.modules))
    exporter.get("/login")  # the first page
    print("jinja2 after a page:", "jinja2" in sys.modules)
finally:
    exporter.stop()
"""


def test_numpy_is_imported_only_when_a_report_needs_it(pg_cluster: Cluster, tmp_path: Path) -> None:
    """numpy (about 18 MiB resident and a BLAS thread) serves reports, forecasts and
    anomalies only: a pgperf that samples, stores and serves /metrics never imports it,
    and the first report does, through the stand-in of pgperf.reports._numpy. The same
    holds for what builds a report (its queries, builder and forecasts) and for the
    console's template engine (Jinja2), imported with the first report and the first page."""
    script = _SERVE_THEN_REPORT.format(paths=[str(ROOT / "tests"), str(ROOT)], dsn=pg_cluster.dsn(),
                                       spool=str(tmp_path / "spool"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "numpy after sampling: False" in proc.stdout, proc.stdout
    assert "numpy after a report: True" in proc.stdout, proc.stdout
    assert "deferred after sampling: []" in proc.stdout, proc.stdout
    assert ("deferred after a report: ['pgperf.reports.builder', 'pgperf.reports.forecasting', "
            "'pgperf.reports.queries']") in proc.stdout, proc.stdout
    assert "jinja2 after a page: True" in proc.stdout, proc.stdout


def test_the_numpy_stand_in_serves_numpy() -> None:
    from pgperf.reports._numpy import _OnFirstUse

    stand_in: Any = _OnFirstUse("numpy")
    values = numpy.array([3.0, 1.0, 2.0, 10.0])
    assert stand_in.median(values) == numpy.median(values) == 2.5
    assert stand_in.float64 is numpy.float64 and stand_in.ndarray is numpy.ndarray
    assert stand_in.random.default_rng(7).integers(0, 100, 5).tolist() == \
        numpy.random.default_rng(7).integers(0, 100, 5).tolist()
