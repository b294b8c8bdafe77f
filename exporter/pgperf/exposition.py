"""Rendering of the latest snapshots for ``/metrics`` and ``/probe``.

A prometheus-client custom collector, registered on pgperf's own ``CollectorRegistry``,
turns snapshots into fresh metric families; the text is rendered once per new set of
snapshots and then served from memory, so a scrape costs no database round trip and a
burst of concurrent scrapes costs one rendering. Process metrics (``process_*``) are
rendered live on every scrape, and gzip is applied per response.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ._version import __version__
from .collectors import Family
from .config import Config
from .sampler import Snapshot

__all__ = ["CONTENT_TYPE", "MetricsCache", "SnapshotCollector", "THRESHOLD_METRICS", "self_families"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Profile thresholds exposed as metrics, so one set of rules serves every profile and
# every instance compares against its own exporter's values. (config key, metric, scale)
THRESHOLD_METRICS: tuple[tuple[str, str, float, str], ...] = (
    ("slow_query_time_ms", "pgperf_threshold_slow_query_seconds", 0.001, "Mean execution time above which a statement is slow, in seconds."),
    ("slow_queries_error_count", "pgperf_threshold_slow_statements_error", 1, "Number of slow statements at which the slow-query alert becomes an error."),
    ("query_spike_factor", "pgperf_threshold_query_spike_factor", 1, "Factor over its own baseline at which a statement's mean time is a spike."),
    ("cache_hit_ratio_min", "pgperf_threshold_cache_hit_ratio_min", 0.01, "Lowest acceptable buffer cache hit ratio (0 to 1)."),
    ("cpu_usage_max_percent", "pgperf_threshold_cpu_usage_max_ratio", 0.01, "Highest acceptable host CPU usage (0 to 1)."),
    ("memory_usage_max_percent", "pgperf_threshold_memory_usage_max_ratio", 0.01, "Highest acceptable host memory usage (0 to 1)."),
    ("disk_usage_max_percent", "pgperf_threshold_disk_usage_max_ratio", 0.01, "Highest acceptable usage of the data directory's filesystem (0 to 1)."),
    ("disk_full_within_hours", "pgperf_threshold_disk_full_within_seconds", 3600, "Alert when the disk is predicted to fill within this many seconds."),
    ("connection_utilization_warning_percent", "pgperf_threshold_connection_utilization_warning_ratio", 0.01, "Connection utilization that raises a warning (0 to 1)."),
    ("connection_utilization_critical_percent", "pgperf_threshold_connection_utilization_critical_ratio", 0.01, "Connection utilization that is critical (0 to 1)."),
    ("error_rate_max", "pgperf_threshold_error_rate_max_ratio", 0.01, "Highest acceptable share of transactions rolled back (0 to 1)."),
    ("replication_lag_max_seconds", "pgperf_threshold_replication_lag_max_seconds", 1, "Highest acceptable replication lag, in seconds."),
    ("long_running_query_seconds", "pgperf_threshold_long_running_query_seconds", 1, "Run time above which an active query is long-running, in seconds."),
    ("idle_in_transaction_seconds", "pgperf_threshold_idle_in_transaction_seconds", 1, "Idle time above which a session idle in a transaction is reported, in seconds."),
    ("xid_age_max_percent", "pgperf_threshold_xid_age_max_ratio", 0.01, "Highest acceptable transaction ID age as a share of the wraparound horizon (0 to 1)."),
    ("dead_tuple_max_percent", "pgperf_threshold_dead_tuple_max_ratio", 0.01, "Highest acceptable share of dead tuples in a table (0 to 1)."),
    ("checkpoints_requested_max_percent", "pgperf_threshold_checkpoints_requested_max_ratio", 0.01, "Highest acceptable share of requested (not timed) checkpoints (0 to 1)."),
)


def _metric(fam: Family, extra: Sequence[tuple[str, str]] = ()) -> Metric:
    # prometheus-client appends "_total" to counter families when rendering; counters that
    # keep postgres_exporter's name without "_total" are therefore exposed untyped.
    kind: str = fam.type
    name = fam.name
    if kind == "counter":
        if name.endswith("_total"):
            name = name[: -len("_total")]
        else:
            kind = "unknown"
    elif kind == "info":
        kind = "gauge"
    metric = Metric(name, fam.help, kind)
    sample_name = fam.name
    extra_names = tuple(k for k, _ in extra)
    extra_values = tuple(v for _, v in extra)
    names = extra_names + fam.labels
    for values, value in fam.samples:
        metric.add_sample(sample_name, dict(zip(names, extra_values + values)), value)
    return metric


def _gauge(name: str, help_text: str, labels: tuple[str, ...], samples: Iterable[tuple[tuple[Any, ...], float]]) -> Family:
    return Family(name, "gauge", help_text, labels, tuple((tuple(str(v) for v in k), float(x)) for k, x in samples))


def _counter(name: str, help_text: str, labels: tuple[str, ...], samples: Iterable[tuple[tuple[Any, ...], float]]) -> Family:
    return Family(name, "counter", help_text, labels, tuple((tuple(str(v) for v in k), float(x)) for k, x in samples))


def self_families(snapshot: Snapshot, config: Config) -> list[Family]:
    """pg_up, per-collector status and pgperf's own sampling metrics for one snapshot."""
    s = snapshot
    c = s.counters
    out = [
        _gauge("pg_up", "Whether the last sample could connect to PostgreSQL (1 for yes, 0 for no).", (), [((), 1.0 if s.up else 0.0)]),
        _gauge(
            "pg_scrape_collector_success", "Whether the collector succeeded in the last sample (1 for yes, 0 for no).",
            ("collector",), [((st.name,), 1.0 if st.success else 0.0) for st in s.statuses],
        ),
        _gauge(
            "pg_scrape_collector_duration_seconds", "Time the collector took in the last sample, in seconds.",
            ("collector",), [((st.name,), st.duration) for st in s.statuses],
        ),
        _gauge(
            "pgperf_collector_disabled", "1 for a collector disabled on this server, with the reason (see docs/metrics.md).",
            ("collector", "reason"), [((st.name, st.disabled), 1.0) for st in s.statuses if st.disabled],
        ),
        _counter(
            "pgperf_collector_errors_total", "Samples in which the collector failed (timeouts, query errors).",
            ("collector",), [((name,), n) for name, n in sorted(c.collector_errors.items())],
        ),
        _gauge(
            "pgperf_connection_error", "1 while the last sample could not reach PostgreSQL, labelled with the kind of error.",
            ("kind",), [] if s.up else [((s.error_kind or "other",), 1.0)],
        ),
        _counter(
            "pgperf_connection_errors_total", "Samples that could not reach PostgreSQL, by kind of error.",
            ("kind",), [((kind,), n) for kind, n in sorted(c.connection_errors.items())],
        ),
        _gauge("pgperf_sampling_duration_seconds", "Time the last sample took, all collectors included, in seconds.", (), [((), s.duration)]),
        _gauge("pgperf_sampling_interval_seconds", "Configured sampling interval, in seconds.", (), [((), s.interval)]),
        _counter("pgperf_samples_total", "Samples taken.", (), [((), c.samples)]),
        _counter("pgperf_sampling_overruns_total", "Sampling ticks skipped because the previous sample was still running.", (), [((), c.overruns)]),
        _gauge("pgperf_last_sample_timestamp_seconds", "Time of the last sample, in seconds since the epoch.", (), [((), s.taken_at)]),
    ]
    if c.last_success is not None:
        out.append(_gauge(
            "pgperf_last_successful_sample_timestamp_seconds",
            "Time of the last sample that reached PostgreSQL, in seconds since the epoch.", (), [((), c.last_success)],
        ))
    if s.server is not None:
        out.append(_gauge(
            "pg_static", "Version string as reported by PostgreSQL.", ("short_version", "version"),
            [((s.server.short_version, s.server.version), 1.0)],
        ))
        out.append(_gauge("pg_server_version_num", "server_version_num of PostgreSQL.", (), [((), s.server.version_num)]))
    thresholds = config.thresholds
    for key, name, scale, help_text in THRESHOLD_METRICS:
        out.append(_gauge(name, help_text, (), [((), getattr(thresholds, key) * scale)]))
    return out


class SnapshotCollector(Collector):
    """prometheus-client collector over the latest snapshots of one or more targets."""

    def __init__(
        self,
        snapshots: Callable[[], Sequence[Snapshot]],
        config: Config,
        extra: Callable[[], Iterable[Family]] = lambda: (),
    ) -> None:
        self._snapshots = snapshots
        self._config = config
        self._extra = extra

    def describe(self) -> list[Metric]:
        return []  # registering must never touch the database; names come with collect()

    def collect(self) -> Iterator[Metric]:
        snapshots = self._snapshots()
        labelled = len(self._config.resolved_targets()) > 1 and len(snapshots) > 0
        merged: dict[str, tuple[Family, list[tuple[str, Family]]]] = {}
        for snap in snapshots:
            for fam in (*snap.families, *self_families(snap, self._config)):
                entry = merged.get(fam.name)
                if entry is None:
                    merged[fam.name] = (fam, [(snap.target, fam)])
                else:
                    entry[1].append((snap.target, fam))
        for name, (first, parts) in merged.items():
            if labelled:
                metric = _metric(Family(first.name, first.type, first.help, ("target",) + first.labels, ()))
                for target, fam in parts:
                    for sample in _metric(fam, (("target", target),)).samples:
                        metric.samples.append(sample)
                yield metric
            elif len(parts) == 1:
                yield _metric(parts[0][1])
            else:  # several snapshots of one target cannot happen; keep the first
                yield _metric(first)
        for fam in self._extra():
            yield _metric(fam)
        yield _metric(_gauge("pgperf_build_info", "pgperf version (value 1).", ("version",), [((__version__,), 1.0)]))
        yield _metric(_gauge("pgperf_profile_info", "Configuration profile in use (value 1).", ("profile",), [((self._config.profile,), 1.0)]))


class MetricsCache:
    """Rendered exposition text, kept until the snapshots change."""

    def __init__(
        self,
        snapshots: Callable[[], Sequence[Snapshot]],
        config: Config,
        extra: Callable[[], Iterable[Family]] = lambda: (),
        *,
        process_metrics: bool = True,
    ) -> None:
        self._snapshots = snapshots
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(snapshots, config, extra))
        self._live = CollectorRegistry(auto_describe=False)
        if process_metrics:
            ProcessCollector(registry=self._live)
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._plain = b""
        self._extra_key: Callable[[], Any] = lambda: None

    def set_extra_key(self, key: Callable[[], Any]) -> None:
        """Something besides the snapshots whose change must invalidate the cache."""
        self._extra_key = key

    def _current_key(self) -> tuple[Any, ...]:
        return (tuple((s.target, s.seq) for s in self._snapshots()), self._extra_key())

    def render(self, gzipped: bool = False) -> bytes:
        """The exposition text of the latest snapshots, then live process metrics."""
        key = self._current_key()
        with self._lock:
            if key != self._key:
                self._plain = generate_latest(self.registry)
                self._key = key
            cached = self._plain
        body = cached + generate_latest(self._live)
        return gzip.compress(body, compresslevel=1) if gzipped else body
