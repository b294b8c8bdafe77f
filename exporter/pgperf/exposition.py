"""Rendering of the latest snapshots for ``/metrics`` and ``/probe``.

A prometheus-client custom collector, registered on pgperf's own ``CollectorRegistry``,
turns snapshots into fresh metric families; the text is rendered once per new set of
snapshots (right after each sample) and then served from memory, so a scrape costs no
database round trip and a burst of concurrent scrapes costs one rendering. Process
metrics (``process_*``) are rendered live on every scrape; gzip compresses the bulk once
per rendering and only the few live kilobytes per response.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ._version import __version__
from .collectors import LEGACY_ALIASES, Family, MetricDef
from .config import Config
from .db import describe_dsn
from .sampling import Snapshot

__all__ = [
    "CONTENT_TYPE", "SELF_METRICS", "THRESHOLD_METRICS", "MetricsCache", "SnapshotCollector", "self_families",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: prometheus-client's formatting of sample values (Go's), typed.
_float_text: Callable[[float], str] = floatToGoString

# Names the text format takes as they are (the "legacy" character set); prometheus-client
# quotes or escapes any other, and such families are left to it (_slow).
_PLAIN_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PLAIN_LABEL_NAME = re.compile(r"(?!__)[a-zA-Z_][a-zA-Z0-9_]*")

# A gzip member header (RFC 1952): no name, no modification time, fastest compression.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"

# Profile thresholds exposed as metrics, per target, so one set of rules serves every
# profile and every target compares against its own values. (config key, metric, scale)
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
    ("table_bloat_max_percent", "pgperf_threshold_table_bloat_max_ratio", 0.01, "Highest acceptable estimated share of bloat in a table (0 to 1)."),
    ("index_bloat_max_percent", "pgperf_threshold_index_bloat_max_ratio", 0.01, "Highest acceptable estimated share of bloat in a b-tree index (0 to 1)."),
    ("bloat_min_size_mb", "pgperf_threshold_bloat_min_bytes", 1024 * 1024, "Estimated bloat below which a table or index is not reported, in bytes."),
    ("unused_index_min_size_mb", "pgperf_threshold_unused_index_min_bytes", 1024 * 1024, "Size from which an index never scanned is reported, in bytes."),
    ("unused_index_min_days", "pgperf_threshold_unused_index_min_age_seconds", 86400, "How long index scans must have been counted before an index is called unused, in seconds."),
    ("blocking_max_seconds", "pgperf_threshold_blocking_max_seconds", 1, "Transaction age of a root blocker, with sessions waiting behind it, that raises an alert, in seconds."),
    ("xid_exhaustion_within_hours", "pgperf_threshold_xid_exhaustion_within_seconds", 3600, "Alert when the transaction ID age maximum is reached within this many seconds at the current consumption rate."),
    ("vacuum_max_hours", "pgperf_threshold_vacuum_max_seconds", 3600, "Run time above which a VACUUM of one table is reported, in seconds."),
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
        metric.add_sample(sample_name, dict(zip(names, extra_values + values, strict=True)), value)
    return metric


def _def(name: str, kind: str, help_text: str, labels: tuple[str, ...] = (), compat: bool = False) -> MetricDef:
    return MetricDef(name, kind, help_text, labels, source="pgperf", compat=compat)  # type: ignore[arg-type]


UP = _def("pg_up", "gauge", "Whether the last sample could connect to PostgreSQL (1 for yes, 0 for no).", compat=True)
COLLECTOR_SUCCESS = _def("pg_scrape_collector_success", "gauge", "Whether the collector succeeded in the last sample (1 for yes, 0 for no).", ("collector",), compat=True)
COLLECTOR_DURATION = _def("pg_scrape_collector_duration_seconds", "gauge", "Time the collector took in the last sample, in seconds.", ("collector",), compat=True)
COLLECTOR_DISABLED = _def("pgperf_collector_disabled", "gauge", "1 for a collector disabled on this server, with the reason (see docs/metrics.md).", ("collector", "reason"))
COLLECTOR_LAST_RUN = _def("pgperf_collector_last_run_timestamp_seconds", "gauge", "Time of the collector run whose families are served, in seconds since the epoch (older than the sample for collectors with an interval).", ("collector",))
DATABASE_VISIT = _def("pgperf_database_visit_success", "gauge", "Whether database-scoped collectors could connect to this database in the last sample (1 for yes, 0 for no).", ("datname",))
COLLECTOR_ERRORS = _def("pgperf_collector_errors_total", "counter", "Samples in which the collector failed (timeouts, query errors).", ("collector",))
CONNECTION_ERROR = _def("pgperf_connection_error", "gauge", "1 while the last sample could not reach PostgreSQL, labelled with the kind of error.", ("kind",))
CONNECTION_ERRORS = _def("pgperf_connection_errors_total", "counter", "Samples that could not reach PostgreSQL, by kind of error.", ("kind",))
SAMPLING_DURATION = _def("pgperf_sampling_duration_seconds", "gauge", "Time the last sample took, all collectors included, in seconds.")
SAMPLING_INTERVAL = _def("pgperf_sampling_interval_seconds", "gauge", "Configured sampling interval, in seconds.")
SAMPLING_LATENESS = _def("pgperf_sampling_lateness_seconds", "gauge", "How long after its scheduled time the last sample started, in seconds (many targets on too few cores start late).")
SAMPLES = _def("pgperf_samples_total", "counter", "Samples taken.")
OVERRUNS = _def("pgperf_sampling_overruns_total", "counter", "Sampling ticks skipped because the previous sample was still running.")
LAST_SAMPLE = _def("pgperf_last_sample_timestamp_seconds", "gauge", "Time of the last sample, in seconds since the epoch.")
LAST_SUCCESS = _def("pgperf_last_successful_sample_timestamp_seconds", "gauge", "Time of the last sample that reached PostgreSQL, in seconds since the epoch.")
STATIC = _def("pg_static", "gauge", "Version string as reported by PostgreSQL.", ("short_version", "version", "server"), compat=True)
# postgres_exporter's own health families, mapped onto pgperf's sampling: one sample is one
# of its scrapes (pgperf samples on its own schedule; a scrape of /metrics costs nothing).
SCRAPE_ERROR = _def("pg_exporter_last_scrape_error", "gauge", "Whether the last sample had an error: PostgreSQL unreachable or a collector failed (1), or none (0); disabled collectors do not count.", compat=True)
SCRAPES = _def("pg_exporter_scrapes_total", "counter", "Samples taken (postgres_exporter's name for pgperf_samples_total).", compat=True)
SCRAPE_DURATION = _def("pg_exporter_last_scrape_duration_seconds", "gauge", "Time the last sample took, in seconds (postgres_exporter's name for pgperf_sampling_duration_seconds).", compat=True)
VERSION_NUM = _def("pg_server_version_num", "gauge", "server_version_num of PostgreSQL.")
BUILD_INFO = _def("pgperf_build_info", "gauge", "pgperf version (value 1).", ("version",))
PROFILE_INFO = _def("pgperf_profile_info", "gauge", "Configuration profile in use (value 1).", ("profile",))
THRESHOLDS = {key: _def(name, "gauge", help_text) for key, name, _, help_text in THRESHOLD_METRICS}

#: Every family pgperf itself adds, for docs/metrics.md.
SELF_METRICS: tuple[MetricDef, ...] = (
    UP, COLLECTOR_SUCCESS, COLLECTOR_DURATION, COLLECTOR_DISABLED, COLLECTOR_LAST_RUN, DATABASE_VISIT,
    COLLECTOR_ERRORS, CONNECTION_ERROR,
    CONNECTION_ERRORS, SAMPLING_DURATION, SAMPLING_INTERVAL, SAMPLING_LATENESS, SAMPLES, OVERRUNS, LAST_SAMPLE,
    LAST_SUCCESS, STATIC, VERSION_NUM, BUILD_INFO, PROFILE_INFO, SCRAPE_ERROR, SCRAPES, SCRAPE_DURATION,
    *THRESHOLDS.values(),
)


def _server(config: Config, target: str) -> str:
    """postgres_exporter's ``server`` label: ``host:port`` of the target's DSN."""
    for t in config.resolved_targets():
        if t.name == target:
            return describe_dsn(t.dsn).rsplit("/", 1)[0]
    return ""


def self_families(snapshot: Snapshot, config: Config) -> list[Family]:
    """pg_up, per-collector status and pgperf's own sampling metrics for one snapshot, with
    the thresholds its target is judged by (its profile's, or the process's)."""
    s = snapshot
    c = s.counters
    out = [
        UP.single(1 if s.up else 0),
        COLLECTOR_SUCCESS.family(((st.name,), 1 if st.success else 0) for st in s.statuses),
        COLLECTOR_DURATION.family(((st.name,), st.duration) for st in s.statuses),
        COLLECTOR_DISABLED.family(((st.name, st.disabled), 1) for st in s.statuses if st.disabled),
        COLLECTOR_LAST_RUN.family(((st.name,), st.ran_at) for st in s.statuses),
        DATABASE_VISIT.family(((d,), 0 if err else 1) for d, err in sorted(s.databases.items())),
        COLLECTOR_ERRORS.family(((name,), n) for name, n in sorted(c.collector_errors.items())),
        CONNECTION_ERROR.family([] if s.up else [((s.error_kind or "other",), 1)]),
        CONNECTION_ERRORS.family(((kind,), n) for kind, n in sorted(c.connection_errors.items())),
        SAMPLING_DURATION.single(s.duration),
        SAMPLING_INTERVAL.single(s.interval),
        SAMPLING_LATENESS.single(s.lateness),
        SAMPLES.single(c.samples),
        OVERRUNS.single(c.overruns),
        LAST_SAMPLE.single(s.taken_at),
        LAST_SUCCESS.single(c.last_success),
        SCRAPE_ERROR.single(0 if s.up and not any(st.error for st in s.statuses) else 1),
        SCRAPES.single(c.samples),
        SCRAPE_DURATION.single(s.duration),
    ]
    if s.server is not None:
        out.append(STATIC.family([((s.server.short_version, s.server.version, _server(config, s.target)), 1)]))
        out.append(VERSION_NUM.single(s.server.version_num))
    thresholds = config.thresholds_of(s.target)
    for key, _, scale, _ in THRESHOLD_METRICS:
        # Rounded: 700 * 0.001 is 0.7000000000000001 in binary floating point.
        out.append(THRESHOLDS[key].single(round(getattr(thresholds, key) * scale, 10)))
    return out


Group = tuple[Family, Sequence[tuple[Family, Sequence[tuple[str, str]]]]]


def _groups(snapshots: Sequence[Snapshot], config: Config) -> Iterator[Group]:
    """The families to expose, one group per name: its head (name, type, help, labels) and
    the families whose samples it holds, each with its extra leading labels. With several
    targets in the process every family gains a ``target`` label."""
    labelled = config.several_targets and len(snapshots) > 0
    merged: dict[str, list[tuple[str, Family]]] = {}
    aliases = config.compat.legacy_aliases
    for snap in snapshots:
        for fam in (*snap.families, *self_families(snap, config)):
            if aliases or fam.name not in LEGACY_ALIASES:
                merged.setdefault(fam.name, []).append((snap.target, fam))
    for parts in merged.values():
        first = parts[0][1]
        if not labelled:  # one target: its families as they are
            yield first, ((first, ()),)
        else:
            head = Family(first.name, first.type, first.help, ("target", *first.labels), ())
            yield head, [(fam, (("target", target),)) for target, fam in parts]


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
        for head, sources in _groups(self._snapshots(), self._config):
            if len(sources) == 1 and not sources[0][1]:  # one target: its family as it is
                yield _metric(sources[0][0])
                continue
            metric = _metric(head)
            for fam, extra in sources:
                metric.samples.extend(_metric(fam, extra).samples)
            yield metric
        for fam in self._extra():
            yield _metric(fam)
        yield _metric(BUILD_INFO.family([((__version__,), 1)]))
        yield _metric(PROFILE_INFO.family([((self._config.profile,), 1)]))


def _render(groups: Iterable[Group]) -> str:
    """The text exposition of families, byte for byte what prometheus-client's
    ``generate_latest`` makes of the same families converted by ``_metric``, without a
    ``Metric`` per family and a label dict per sample.

    *groups*: one per family rendered, each its head (name, type, help) and the families
    whose samples it holds, each with extra leading labels. Families whose names
    prometheus-client would escape or quote are rendered by prometheus-client itself.
    """
    out: list[str] = []
    append = out.append
    for head, sources in groups:
        if not _plain_names(head, sources):
            append(_slow(head, sources))
            continue
        append(_header(head))
        for fam, extra in sources:
            name = fam.name
            names = tuple(k for k, _ in extra) + fam.labels
            extra_values = tuple(v for _, v in extra)
            if not names:
                for _, value in fam.samples:
                    append(f"{name} {_float_text(value)}\n")
                continue
            order = sorted(range(len(names)), key=names.__getitem__)
            for values, value in fam.samples:
                full = extra_values + values if extra_values else values
                labels = ",".join([f'{names[i]}="{_escape_value(full[i])}"' for i in order])
                append(f"{name}{{{labels}}} {_float_text(value)}\n")
    return "".join(out)


def _plain_names(head: Family, sources: Sequence[tuple[Family, Sequence[tuple[str, str]]]]) -> bool:
    """Names prometheus-client writes as they are: a legacy metric name, legacy and
    distinct label names."""
    if not _PLAIN_METRIC_NAME.fullmatch(head.name):
        return False
    for fam, extra in sources:
        names = tuple(k for k, _ in extra) + fam.labels
        if fam.name != head.name or len(set(names)) != len(names):
            return False
        if not all(_PLAIN_LABEL_NAME.fullmatch(n) for n in names):
            return False
    return True


def _exposed_type(fam: Family) -> str:
    # See _metric: counters without "_total" are untyped, info families are gauges.
    if fam.type == "counter":
        return "counter" if fam.name.endswith("_total") else "untyped"
    return "gauge" if fam.type == "info" else fam.type


def _header(fam: Family) -> str:
    doc = fam.help.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {fam.name} {doc}\n# TYPE {fam.name} {_exposed_type(fam)}\n"


def _escape_value(value: str) -> str:
    # Label values: backslash, newline and double quote escaped (the text format).
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value


def _slow(head: Family, sources: Sequence[tuple[Family, Sequence[tuple[str, str]]]]) -> str:
    metric = _metric(Family(head.name, head.type, head.help, head.labels, ()))
    for fam, extra in sources:
        metric.samples.extend(_metric(fam, extra).samples)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed([metric]))
    return generate_latest(registry).decode()


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def _lines(fam: Family, extra: Sequence[tuple[str, str]]) -> str:
    """The sample lines of one family, with *extra* leading labels (see ``_render``)."""
    name = fam.name
    names = tuple(k for k, _ in extra) + fam.labels
    extra_values = tuple(v for _, v in extra)
    if not names:
        return "".join([f"{name} {_float_text(value)}\n" for _, value in fam.samples])
    order = sorted(range(len(names)), key=names.__getitem__)
    out: list[str] = []
    append = out.append
    for values, value in fam.samples:
        full = extra_values + values if extra_values else values
        labels = ",".join([f'{names[i]}="{_escape_value(full[i])}"' for i in order])
        append(f"{name}{{{labels}}} {_float_text(value)}\n")
    return "".join(out)


@dataclass(frozen=True)
class _Part:
    """One target's samples of one family name: rendered, or (names prometheus-client
    escapes) the families for prometheus-client to render with the other targets'."""

    head: Family
    sources: tuple[tuple[Family, tuple[tuple[str, str], ...]], ...]
    text: str | None


class _Block:
    """One target's part of the exposition, rendered once per snapshot: its family names
    in order, each with its sample lines (and the ``target`` label when labelled)."""

    __slots__ = ("key", "labelled", "parts")

    def __init__(self, snapshot: Snapshot, config: Config, labelled: bool) -> None:
        self.key = _key(snapshot)
        self.labelled = labelled
        grouped: dict[str, list[Family]] = {}
        aliases = config.compat.legacy_aliases
        for fam in (*snapshot.families, *self_families(snapshot, config)):
            if aliases or fam.name not in LEGACY_ALIASES:
                grouped.setdefault(fam.name, []).append(fam)
        extra: tuple[tuple[str, str], ...] = (("target", snapshot.target),) if labelled else ()
        self.parts: dict[str, _Part] = {}
        for name, fams in grouped.items():
            # One target: its first family of each name, as it is (see _groups).
            sources = tuple((f, extra) for f in (fams if labelled else fams[:1]))
            head = fams[0]
            plain = _plain_names(head, sources)
            text = "".join([_lines(f, e) for f, e in sources]) if plain else None
            self.parts[name] = _Part(head, sources, text)


def _assemble(blocks: Sequence[_Block]) -> str:
    """The exposition of several targets' blocks: each family name once, in the order of
    first appearance, its HELP and TYPE from the first target that has it, then every
    target's samples in target order — the grouping prometheus-client gets from
    ``SnapshotCollector``. Only the joining is done here; the rendering was done per block."""
    by_name: dict[str, list[_Part]] = {}
    for block in blocks:
        for name, part in block.parts.items():
            by_name.setdefault(name, []).append(part)
    out: list[str] = []
    for parts in by_name.values():
        head = parts[0].head
        if all(p.text is not None for p in parts):
            out.append(_header(head))
            out.extend(p.text for p in parts if p.text)
            continue
        labels = (*(k for k, _ in parts[0].sources[0][1]), *head.labels)
        merged = Family(head.name, head.type, head.help, labels, ())
        out.append(_slow(merged, [source for p in parts for source in p.sources]))
    return "".join(out)


@dataclass(frozen=True)
class _Rendered:
    """The snapshots' part of the exposition, plain and (once asked for) as the start of a
    gzip member."""

    keys: tuple[tuple[str, int, float], ...] = ()
    generation: int = -1
    plain: bytes = b""
    deflated: bytes | None = _GZIP_HEADER  # gzip header and raw deflate, flushed to a byte boundary
    crc: int = 0

    def current(self, snapshots: Sequence[Snapshot], generation: int) -> bool:
        return generation == self.generation and tuple(map(_key, snapshots)) == self.keys


def _key(snap: Snapshot) -> tuple[str, int, float]:
    """What tells one sample from another: a target whose sampler was replaced (its
    definition changed) counts its samples from 1 again, at another time."""
    return snap.target, snap.seq, snap.taken_at


def _deflated(plain: bytes) -> bytes:
    deflate = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    return _GZIP_HEADER + deflate.compress(plain) + deflate.flush(zlib.Z_SYNC_FLUSH)


class MetricsCache:
    """Rendered exposition text, kept until the snapshots change.

    The text has three parts: the snapshots' families (the bulk), then the extra families
    (the store's) with pgperf's build and profile (rendered again when their key changes),
    then the live process metrics (every scrape). A gzipped response is the compressed
    first part, the rest compressed on its own and the gzip trailer: one scrape compresses
    a few kilobytes, not the whole text.

    The bulk is rendered per target (a ``_Block`` per snapshot, kept until that target's
    next sample) and joined: a sample of one target renders that target's families only,
    whatever the number of targets. With one target the sampler's ``refresh`` renders and
    compresses the whole text right after each sample, so that no scrape waits for it.
    With several, the scrape renders the blocks of the targets sampled since the last
    scrape, joins them (and compresses the text, for gzip), once per new set of samples:
    rendering after every sample would render samples no scrape sees whenever Prometheus
    scrapes less often than pgperf samples, and compressing the whole text after every
    sample of every target would grow with the square of the number of targets.
    """

    def __init__(
        self,
        snapshots: Callable[[], Sequence[Snapshot]],
        config: Config,
        extra: Callable[[], Iterable[Family]] = lambda: (),
        *,
        process_metrics: bool = True,
    ) -> None:
        self._snapshots = snapshots
        self._config = config
        self._extra = extra
        #: The same exposition through prometheus-client (without process metrics).
        self.registry = CollectorRegistry(auto_describe=False)
        collector = SnapshotCollector(snapshots, config, extra)
        self.registry.register(collector)
        self._live = CollectorRegistry(auto_describe=False)
        self._process_metrics = process_metrics
        if process_metrics:
            ProcessCollector(registry=self._live)
        self._collector = collector
        self._generation = 0
        self._lock = threading.Lock()
        self._blocks: dict[str, _Block] = {}
        self._rendered = _Rendered()
        self._tail_key: tuple[Any, ...] | None = None
        self._tail = b""
        self._extra_key: Callable[[], Any] = lambda: None

    def set_extra_key(self, key: Callable[[], Any]) -> None:
        """Something besides the snapshots whose change must invalidate the cache."""
        self._extra_key = key

    def set_config(self, config: Config) -> None:
        """A reloaded configuration (thresholds, profile): render again at the next scrape."""
        with self._lock:
            self._config = config
            self._collector._config = config
            self._generation += 1
            self._blocks.clear()

    def _labelled(self, snapshots: Sequence[Snapshot]) -> bool:
        return self._config.several_targets and len(snapshots) > 0

    def _block(self, snap: Snapshot, labelled: bool) -> _Block:
        """*snap*'s block, rendered now if it is not the one kept (call with the lock held)."""
        block = self._blocks.get(snap.target)
        if block is None or block.key != _key(snap) or block.labelled != labelled:
            block = _Block(snap, self._config, labelled)
            self._blocks[snap.target] = block
        return block

    def refresh(self) -> None:
        """With one target, render the text of its latest sample now (the sampler calls
        this after each sample, so that scrapes find it ready); with several, the scrape
        renders what changed."""
        snapshots = tuple(self._snapshots())
        if len(snapshots) > 1 or self._rendered.current(snapshots, self._generation):
            return
        with self._lock:
            self._update(snapshots, gzipped=True)

    def _update(self, snapshots: Sequence[Snapshot], gzipped: bool) -> _Rendered:
        """The rendering of *snapshots*, made now if it is not the one kept (lock held)."""
        rendered = self._rendered
        if not rendered.current(snapshots, self._generation):
            labelled = self._labelled(snapshots)
            blocks = [self._block(snap, labelled) for snap in snapshots]
            for gone in self._blocks.keys() - {snap.target for snap in snapshots}:
                del self._blocks[gone]
            plain = _assemble(blocks).encode()
            rendered = _Rendered(tuple(map(_key, snapshots)), self._generation, plain, None, zlib.crc32(plain))
        if gzipped and rendered.deflated is None:
            rendered = dataclasses.replace(rendered, deflated=_deflated(rendered.plain))
        self._rendered = rendered
        return rendered

    def _tail_part(self) -> bytes:
        key = (self._extra_key(), self._generation)
        with self._lock:
            if key != self._tail_key:
                families = [*self._extra(), BUILD_INFO.family([((__version__,), 1)]),
                            PROFILE_INFO.family([((self._config.profile,), 1)])]
                self._tail = _render((f, ((f, ()),)) for f in families).encode()
                self._tail_key = key
            return self._tail

    def render(self, gzipped: bool = False) -> bytes:
        """The exposition text of the latest snapshots, then live process metrics."""
        snapshots = tuple(self._snapshots())
        with self._lock:
            rendered = self._update(snapshots, gzipped)
        rest = self._tail_part()
        if self._process_metrics:
            rest += generate_latest(self._live)
        if not gzipped:
            return rendered.plain + rest
        assert rendered.deflated is not None
        # The rest is deflated on its own; raw deflate streams join at a byte boundary, and
        # the gzip trailer's CRC continues over the whole text.
        deflate = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS, 1)
        return (rendered.deflated + deflate.compress(rest) + deflate.flush()
                + struct.pack("<II", zlib.crc32(rest, rendered.crc), (len(rendered.plain) + len(rest)) & 0xFFFFFFFF))
