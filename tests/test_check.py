"""``pgperf check`` against a real PostgreSQL, in this process: it classifies a collector's
failure as ``pgperf serve`` does (one runner for both), and it says what it thinks of the role."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from helpers import make_config
from pgperf.check import run_check
from pgperf.collectors import REGISTRY, CollectorResult, CollectorSpec
from pgperf.config import Config
from pgperf.sampling import CollectorStatus, TargetSampler
from tools.cluster import Cluster

BARE_SECRET = "check-bare-secret"
ROLE_SECRET = "check-role-secret"
SETUP_SQL = Path(__file__).resolve().parent.parent / "docs" / "setup-role.sql"


def _sleeper(ctx: Any) -> CollectorResult:
    ctx.conn.execute("SELECT pg_sleep(2)")  # beyond the 300 ms statement_timeout below
    return CollectorResult(())


SLOW = CollectorSpec(name="slow_query", description="a query slower than statement_timeout", collect=_sleeper, metrics=())


def checked(config: Config, registry: Sequence[CollectorSpec] = REGISTRY) -> tuple[int, list[str]]:
    lines: list[str] = []
    status = run_check(config, lines.append, registry)
    return status, lines


def served(config: Config, registry: Sequence[CollectorSpec]) -> dict[str, CollectorStatus]:
    sampler = TargetSampler(config.resolved_targets()[0], config, registry=registry)
    sampler.open()
    try:
        snap = sampler.sample()
    finally:
        sampler.close()
    assert snap is not None and snap.up
    return {s.name: s for s in snap.statuses}


def verdict(lines: list[str], collector: str) -> tuple[str, str]:
    """(level, kind) of check's line about *collector*: ("warn", reason) for a collector
    the sampler would disable, ("FAIL", error kind) for one that fails, ("ok", "")."""
    for line in lines:
        match = re.match(rf"\s*\[\s*(\w+)\] collector {collector}: (?:would be disabled|fails) \((\w+)\)", line)
        if match:
            return match[1], match[2]
        if re.match(rf"\s*\[\s*ok\] collector {collector}: \d+ series", line):
            return "ok", ""
    raise AssertionError(f"no line about collector {collector} in {lines}")


@pytest.fixture
def bare_role(pg_cluster: Cluster) -> Iterator[str]:
    """A role with no monitoring privilege at all (no pg_monitor)."""
    pg_cluster.execute("DROP ROLE IF EXISTS pgperf_check_bare")
    pg_cluster.execute(f"CREATE ROLE pgperf_check_bare LOGIN PASSWORD '{BARE_SECRET}'")
    yield pg_cluster.dsn(user="pgperf_check_bare", password=BARE_SECRET)
    pg_cluster.execute("DROP ROLE IF EXISTS pgperf_check_bare")


def test_check_and_serve_classify_a_missing_privilege_alike(bare_role: str) -> None:
    """pg_ls_waldir() needs pg_monitor: serve disables the wal collector
    (insufficient_privilege); check says it would be disabled, for the same reason, and a
    warning is not what makes check fail."""
    config = make_config(bare_role)
    status = served(config, REGISTRY)["wal"]
    assert status.disabled == "insufficient_privilege"
    _, lines = checked(config)
    assert verdict(lines, "wal") == ("warn", status.disabled)
    assert verdict(lines, "database") == ("ok", "")


def test_check_and_serve_classify_a_statement_timeout_alike(pg_cluster: Cluster) -> None:
    config = make_config(pg_cluster.dsn(), connection={"statement_timeout": "300ms"})
    registry = (REGISTRY[0], SLOW)
    status = served(config, registry)["slow_query"]
    assert status.error == "statement_timeout" and not status.success
    exit_status, lines = checked(config, registry)
    assert verdict(lines, "slow_query") == ("FAIL", status.error)
    assert exit_status == 1  # a collector that would fail on every sample fails the check
    assert verdict(lines, REGISTRY[0].name) == ("ok", "")


def role_line(lines: list[str]) -> str:
    """check's line about the role's privileges."""
    found = [line for line in lines if re.match(r"\s*\[\s*\w+\] role ", line)]
    assert len(found) == 1, lines
    return found[0]


def test_a_superuser_works_but_check_names_the_role_to_use(pg_cluster: Cluster) -> None:
    exit_status, lines = checked(make_config(pg_cluster.dsn()))  # postgres: a superuser
    line = role_line(lines)
    assert line.startswith("  [warn] role postgres is a superuser: monitoring works"), line
    assert "more privilege than pgperf needs" in line
    assert "connect as the role pgperf instead (docs/setup-role.sql creates it" in line
    assert exit_status == 0  # a warning: monitoring works


def test_the_setup_role_is_what_check_expects(pg_cluster: Cluster) -> None:
    """The role docs/setup-role.sql creates, the one check names: no warning about it."""
    with pg_cluster.connect() as conn:
        conn.execute(SETUP_SQL.read_text())
        conn.execute(f"ALTER ROLE pgperf PASSWORD '{ROLE_SECRET}'")
    exit_status, lines = checked(make_config(pg_cluster.dsn(user="pgperf", password=ROLE_SECRET)))
    assert role_line(lines) == "  [  ok] role can read every session's statistics (pg_monitor or pg_read_all_stats)"
    assert not any("superuser" in line for line in lines)
    assert not any(line.lstrip().startswith(("[warn]", "[FAIL]")) for line in lines
                   if " collector " in line), lines
    assert exit_status == 0
