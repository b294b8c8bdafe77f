"""The collector registry: the one list of collectors.

Configuration keys (``collectors.<name>``), environment variables
(``PGPERF_COLLECTORS_<NAME>_ENABLED``), command-line flags (``--[no-]collector.<name>``),
the ``collector`` label of ``pg_scrape_collector_*`` and ``docs/metrics.md`` all come from
this table. Adding a collector touches its module, its test and one line here.
"""

from __future__ import annotations

from . import (
    activity,
    archiver,
    bgwriter,
    bloat,
    blocking,
    checkpointer,
    database,
    database_size,
    gssapi,
    host,
    indexes,
    io,
    locks,
    log_errors,
    postmaster,
    progress,
    replication,
    roles,
    settings,
    ssl,
    statements,
    tables,
    wait_events,
    wal,
    wraparound,
    xid,
)
from ._base import (
    CollectContext,
    CollectorDisabled,
    CollectorOptions,
    CollectorResult,
    CollectorSpec,
    CollectorThresholds,
    Family,
    MetricDef,
    Record,
    Records,
    TextCache,
    merge_families,
)

REGISTRY: tuple[CollectorSpec, ...] = (
    statements.SPEC,
    database.SPEC,
    activity.SPEC,
    settings.SPEC,
    locks.SPEC,
    blocking.SPEC,
    wait_events.SPEC,
    ssl.SPEC,
    gssapi.SPEC,
    progress.SPEC,
    io.SPEC,
    bgwriter.SPEC,
    checkpointer.SPEC,
    wal.SPEC,
    replication.SPEC,
    archiver.SPEC,
    wraparound.SPEC,
    roles.SPEC,
    postmaster.SPEC,
    database_size.SPEC,
    tables.SPEC,
    indexes.SPEC,
    bloat.SPEC,
    xid.SPEC,
    log_errors.SPEC,
    host.SPEC,
)

BY_NAME: dict[str, CollectorSpec] = {spec.name: spec for spec in REGISTRY}

#: Families that are legacy aliases (``MetricDef.alias_of``): left out of ``/metrics``
#: when ``compat.legacy_aliases`` is off.
LEGACY_ALIASES: frozenset[str] = frozenset(m.name for spec in REGISTRY for m in spec.metrics if m.alias_of)

__all__ = [
    "BY_NAME",
    "LEGACY_ALIASES",
    "REGISTRY",
    "CollectContext",
    "CollectorDisabled",
    "CollectorOptions",
    "CollectorResult",
    "CollectorSpec",
    "CollectorThresholds",
    "Family",
    "MetricDef",
    "Record",
    "Records",
    "TextCache",
    "merge_families",
]
