"""The wheel holds what pgperf needs at run time, and nothing the repository keeps for
its developers (tools/, tests/, bench/, the dashboard generator)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

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
