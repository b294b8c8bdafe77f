"""The host collector (psutil)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from collecting import family, run
from pgperf.collectors.host import HostUsage
from tools.cluster import Cluster

pytestmark = pytest.mark.collectors


def test_host_collector(pg_conn: psycopg.Connection[Any], pg_cluster: Cluster) -> None:
    first, t1 = run("host", pg_conn)
    assert family(first, "pgperf_host_cpu_usage_ratio").samples == ()  # needs two readings
    time.sleep(0.3)
    second, _ = run("host", pg_conn, previous=(t1, first.state))
    cpu = family(second, "pgperf_host_cpu_usage_ratio").samples[0][1]
    assert 0 <= cpu <= 1
    mem = family(second, "pgperf_host_memory_usage_ratio").samples[0][1]
    assert 0 < mem < 1
    disk = family(second, "pgperf_host_disk_usage_ratio")
    assert disk.samples[0][0] == (str(pg_cluster.data),)
    assert 0 < disk.samples[0][1] < 1
    assert family(second, "pgperf_host_network_sent_bytes_total").samples[0][1] >= 0
    usage = second.record
    assert isinstance(usage, HostUsage)
    assert usage.cpu_usage_percent is not None and 0 <= usage.cpu_usage_percent <= 100
    assert usage.memory_usage_bytes > 0
    assert usage.disk_usage_bytes is not None and usage.disk_usage_bytes > 0
    assert usage.network_bytes_sent is not None and usage.network_bytes_sent >= 0


def test_host_collector_without_database() -> None:
    result, _ = run("host", None)
    assert family(result, "pgperf_host_memory_total_bytes").samples[0][1] > 0
    assert not any(f.name == "pgperf_host_disk_usage_ratio" for f in result.families)
