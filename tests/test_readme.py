"""The README's Python example runs as written (with the test server's DSN)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tools.cluster import Cluster

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLE_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def test_readme_python_example_runs(pg_cluster: Cluster, pgbench: object, tmp_path: Path) -> None:
    text = README.read_text()
    match = re.search(r"<!-- readme-example: start -->\n```python\n(.*?)```\n<!-- readme-example: end -->", text, re.S)
    assert match, "the README's Python example markers are missing"
    code = match.group(1)
    assert EXAMPLE_DSN in code
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGPERF_")}
    env["PGPERF_STORE_SPOOL_DIR"] = str(tmp_path / "spool")
    with pgbench(clients=1):  # type: ignore[operator]
        proc = subprocess.run([sys.executable, "-c", code.replace(EXAMPLE_DSN, pg_cluster.dsn())],
                              capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "connections:" in proc.stdout
    assert " calls " in proc.stdout
