"""Compatibility with postgres_exporter 0.20's default families, measured on a live server.

The families and their label names are test data (``compat/postgres_exporter_0_20.yaml``,
read from postgres_exporter's sources). pgperf runs against a primary under load with a
standby on a slot, WAL archived and a VACUUM under way, the states in which those families
have samples; every family 0.20 serves on this PostgreSQL major must be in pgperf's
``/metrics`` with at least its label names. At least 99 % must be; the rest are listed,
with the reason, in docs/metrics.md ("Compatibility with postgres_exporter").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from compat_scene import scene, slow_vacuum
from helpers import make_config, running_exporter, wait_until
from tools.cluster import Cluster
from tools.docs import NOT_SERVED

pytestmark = [pytest.mark.collectors, pytest.mark.slow]

FAMILIES = Path(__file__).parent / "compat" / "postgres_exporter_0_20.yaml"


def expected(major: int) -> list[dict[str, Any]]:
    """0.20's families on PostgreSQL *major* (its ``pg`` conditions)."""
    out = []
    for fam in yaml.safe_load(FAMILIES.read_text())["families"]:
        cond = fam.get("pg")
        if cond == "<17" and major >= 17 or cond == ">=14" and major < 14:
            continue
        out.append(fam)
    return out


def labels_of(text: str) -> dict[str, set[str]]:
    """Family name -> every label name its samples carry, from an exposition text."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition("{")
        if not rest:
            out.setdefault(line.split()[0], set())
            continue
        names = {pair.split("=", 1)[0] for pair in _pairs(rest.rsplit("}", 1)[0])}
        out.setdefault(name, set()).update(names)
    return out


def _pairs(labels: str) -> list[str]:
    """Split ``a="x",b="y,z"`` at the commas outside quoted values."""
    out, cur, quoted, escaped = [], "", False, False
    for ch in labels:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append(cur)
            cur = ""
            continue
        cur += ch
    return [*out, cur] if cur else out


def test_postgres_exporter_0_20_families_on_a_live_server(make_cluster: Callable[..., Cluster]) -> None:
    with scene(make_cluster) as s, slow_vacuum(s.primary):
        config = make_config(s.primary.dsn(), sampling_interval=1)
        with running_exporter(config) as exporter:
            def served() -> dict[str, set[str]] | None:
                body = exporter.get("/metrics").text
                found = labels_of(body)
                return found if "pg_stat_progress_vacuum_phase" in found and "pg_stat_replication_pg_wal_lsn_diff" \
                    in found else None

            found = wait_until(served, timeout=30, message="a sample with the VACUUM and the standby")
    families = expected(s.primary.major)
    missing = [f["name"] for f in families if not set(f["labels"]) <= found.get(f["name"], {"-"})]
    share = 1 - len(missing) / len(families)
    print(f"\npostgres_exporter 0.20 on PostgreSQL {s.primary.major}: {len(families) - len(missing)} of "
          f"{len(families)} families served with their labels ({share:.1%}); missing: {missing}")
    assert share >= 0.99, missing
    undocumented = [name for name in missing if name not in NOT_SERVED]
    assert not undocumented, f"served nowhere and not explained in docs/metrics.md: {undocumented}"
