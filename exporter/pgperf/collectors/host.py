"""The host PostgreSQL runs on, read with psutil: CPU, memory, the filesystem holding the
data directory, and network traffic.

Only meaningful when pgperf runs on the database's machine (or in a container sharing its
host): with ``enabled: auto`` (the default) it runs when the target's address is local.
CPU usage is measured between two samples, so the first sample has none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import psutil

from ._base import (
    CollectContext,
    CollectorOptions,
    CollectorResult,
    CollectorSpec,
    Family,
    MetricDef,
    Record,
)


class HostOptions(CollectorOptions):
    enabled: bool | Literal["auto"] = "auto"  # type: ignore[assignment]
    #: Filesystem to measure; default: the server's data_directory.
    disk_path: str | None = None


@dataclass(frozen=True)
class _State:
    cpu: tuple[float, float]  # (busy seconds, total seconds) summed over CPUs
    net: dict[str, tuple[int, int]]  # per interface: (bytes sent, bytes received)
    disk_path: str | None


@dataclass(frozen=True, slots=True)
class HostUsage(Record):
    """The host's figures the store keeps in resource_metrics (percentages 0 to 100)."""

    cpu_usage_percent: float | None  # None on the first sample: CPU use needs two readings
    memory_usage_bytes: int
    memory_usage_percent: float | None
    disk_usage_bytes: int | None  # None when the data directory's filesystem is unknown
    disk_usage_percent: float | None
    disk_total_bytes: int | None
    network_bytes_sent: int | None  # during the interval; None on the first sample
    network_bytes_received: int | None


CPU_USAGE = MetricDef(
    "pgperf_host_cpu_usage_ratio", "gauge",
    "Share of all CPUs busy during the last sampling interval (0 to 1).", source="psutil",
)
CPU_SECONDS = MetricDef(
    "pgperf_host_cpu_seconds_total", "counter",
    "CPU time of the host summed over all CPUs, by mode, in seconds.", ("mode",), source="psutil",
)
CPUS = MetricDef("pgperf_host_cpus", "gauge", "Number of logical CPUs of the host.", source="psutil")
MEM_TOTAL = MetricDef("pgperf_host_memory_total_bytes", "gauge", "Physical memory of the host, in bytes.", source="psutil")
MEM_USED = MetricDef(
    "pgperf_host_memory_used_bytes", "gauge",
    "Memory in use on the host (total minus available), in bytes.", source="psutil",
)
MEM_USAGE = MetricDef("pgperf_host_memory_usage_ratio", "gauge", "Memory in use divided by total memory (0 to 1).", source="psutil")
DISK_TOTAL = MetricDef(
    "pgperf_host_disk_total_bytes", "gauge",
    "Size of the filesystem holding the data directory, in bytes.", ("path",), source="psutil",
)
DISK_USED = MetricDef(
    "pgperf_host_disk_used_bytes", "gauge",
    "Space used on the filesystem holding the data directory, in bytes.", ("path",), source="psutil",
)
DISK_USAGE = MetricDef(
    "pgperf_host_disk_usage_ratio", "gauge",
    "Used share of the filesystem holding the data directory, as df reports it (0 to 1).",
    ("path",), source="psutil",
)
NET_SENT = MetricDef(
    "pgperf_host_network_sent_bytes_total", "counter",
    "Bytes sent on all network interfaces of the host.", source="psutil",
)
NET_RECEIVED = MetricDef(
    "pgperf_host_network_received_bytes_total", "counter",
    "Bytes received on all network interfaces of the host.", source="psutil",
)


def _reachable(path: str) -> str | None:
    """The nearest existing ancestor of *path* (statvfs needs only the parents searchable)."""
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return path or None


def network_deltas(now: dict[str, tuple[int, int]], before: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """Bytes (sent, received) during the interval, summed over the interfaces. Per interface:
    a counter that went down was restarted (interface re-created, counter wrapped), so its
    change counts from zero, i.e. its current value; an interface not seen before (hot-plugged,
    a container's veth) contributes 0, since its counters hold traffic from before the
    interval; one that vanished simply drops out instead of lowering a sum."""
    sent = received = 0
    for name, (s_now, r_now) in now.items():
        last = before.get(name)
        if last is None:
            continue
        sent += s_now - last[0] if s_now >= last[0] else s_now
        received += r_now - last[1] if r_now >= last[1] else r_now
    return sent, received


def collect(ctx: CollectContext) -> CollectorResult:
    options: HostOptions = ctx.options
    previous: _State | None = ctx.previous
    times = psutil.cpu_times()
    total = sum(times)
    idle = times.idle + getattr(times, "iowait", 0.0)
    cpu = (total - idle, total)
    families: list[Family] = [
        CPU_SECONDS.family(((mode,), getattr(times, mode)) for mode in times._fields),
        CPUS.single(psutil.cpu_count()),
    ]
    cpu_ratio = None
    if previous is not None and cpu[1] > previous.cpu[1]:
        cpu_ratio = max(0.0, min(1.0, (cpu[0] - previous.cpu[0]) / (cpu[1] - previous.cpu[1])))
    families.append(CPU_USAGE.single(cpu_ratio))

    mem = psutil.virtual_memory()
    used = mem.total - mem.available
    families += [
        MEM_TOTAL.single(mem.total),
        MEM_USED.single(used),
        MEM_USAGE.single(used / mem.total if mem.total else None),
    ]

    disk_path = options.disk_path or (ctx.server.data_directory if ctx.server else None)
    if disk_path is None and previous is not None:
        disk_path = previous.disk_path  # server unreachable now: keep measuring the same disk
    disk = None
    if disk_path and (reachable := _reachable(disk_path)):
        disk = psutil.disk_usage(reachable)
        families += [
            DISK_TOTAL.family([((disk_path,), disk.total)]),
            DISK_USED.family([((disk_path,), disk.used)]),
            DISK_USAGE.family([((disk_path,), disk.percent / 100.0)]),
        ]

    nics = psutil.net_io_counters(pernic=True) or {}
    net = {name: (c.bytes_sent, c.bytes_recv) for name, c in nics.items()}
    families += [NET_SENT.single(sum(v[0] for v in net.values())),
                 NET_RECEIVED.single(sum(v[1] for v in net.values()))]

    sent = received = None
    if previous is not None:
        sent, received = network_deltas(net, previous.net)
    usage = HostUsage(
        cpu_usage_percent=None if cpu_ratio is None else round(cpu_ratio * 100, 2),
        memory_usage_bytes=used,
        memory_usage_percent=round(used / mem.total * 100, 2) if mem.total else None,
        disk_usage_bytes=disk.used if disk else None,
        disk_usage_percent=round(disk.percent, 2) if disk else None,
        disk_total_bytes=disk.total if disk else None,
        network_bytes_sent=sent,
        network_bytes_received=received,
    )
    return CollectorResult(tuple(families), state=_State(cpu, net, disk_path), record=usage)


SPEC = CollectorSpec(
    name="host",
    description="The database host through psutil: CPU, memory, disk of the data directory, "
    "network. Runs by default when the target is on this machine.",
    collect=collect,
    metrics=(CPU_USAGE, CPU_SECONDS, CPUS, MEM_TOTAL, MEM_USED, MEM_USAGE, DISK_TOTAL,
             DISK_USED, DISK_USAGE, NET_SENT, NET_RECEIVED),
    options=HostOptions,
    needs_database=False,
)
