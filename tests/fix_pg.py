"""pytest plugin: a throwaway PostgreSQL for the whole test session, started once.

The major version comes from ``TEST_PG_MAJOR`` (default 15, Debian's). Tests marked
``pg(">= 14")`` run only on matching majors; the others are deselected (not skipped) and
the run says so. When the server cannot start, the fixture fails once with the server's
log and every test needing it errors with the same message.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tools.cluster import Cluster, find_bindir

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}


def pg_major() -> int:
    return int(os.environ.get("TEST_PG_MAJOR", "15"))


def _matches(spec: str, major: int) -> bool:
    for symbol in (">=", "<=", "==", ">", "<"):
        if spec.strip().startswith(symbol):
            return _OPS[symbol](major, int(spec.strip()[len(symbol):]))
    return major == int(spec)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    major = pg_major()
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("pg")
        if marker and not _matches(marker.args[0], major):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str:
    return f"PostgreSQL major under test: {pg_major()} (TEST_PG_MAJOR)"


def _shared_tmp() -> str:
    # pytest's tmp_path is under a root-only directory; the postgres user needs its own.
    path = os.environ.get("PGPERF_TEST_TMP", "/tmp")
    os.makedirs(path, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def pg_bindir() -> Any:
    return find_bindir(pg_major())


@pytest.fixture(scope="session")
def pg_cluster(pg_bindir: Any) -> Iterator[Cluster]:
    cluster = Cluster(pg_bindir, base_dir=_shared_tmp(), name="pgperf-test")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_dsn(pg_cluster: Cluster) -> str:
    return pg_cluster.dsn()


@pytest.fixture
def pg_conn(pg_cluster: Cluster) -> Iterator[psycopg.Connection[Any]]:
    with pg_cluster.connect() as conn:
        yield conn


@pytest.fixture
def make_cluster(pg_bindir: Any) -> Iterator[Callable[..., Cluster]]:
    """Dedicated clusters for tests that stop, restart or reconfigure their server."""
    made: list[Cluster] = []

    def make(**kwargs: Any) -> Cluster:
        cluster = Cluster(pg_bindir, base_dir=_shared_tmp(), name="pgperf-test", **kwargs)
        made.append(cluster)
        return cluster.start()

    yield make
    for cluster in made:
        cluster.destroy()


@pytest.fixture
def pgbench(pg_cluster: Cluster) -> Callable[..., Any]:
    """``with pgbench(clients=2):`` runs a pgbench workload on the session cluster."""
    return pg_cluster.pgbench
