"""The sample store: the monitoring tables in PostgreSQL and their schema (``schema``,
``migrations/``), the rows of a sample (``rows``), the writer that fills them
(``writer``, ``tables``) with an on-disk spool while the store is down (``spool``), the
hourly maintenance (``maintenance``, ``rollup``) and the sessions they all use
(``session``)."""

from __future__ import annotations

from .client import StoreClient, StoreUnavailable
from .metrics import STORE_METRICS
from .rows import BatchBuilder, QueryRow, ResourceRow, SampleBatch
from .schema import MIGRATIONS, apply_retention, ensure_partitions, list_partitions, migrate
from .session import StoreSessions
from .spool import Spool, SpoolLocked
from .writer import StoreWriter

__all__ = [
    "MIGRATIONS",
    "STORE_METRICS",
    "BatchBuilder",
    "QueryRow",
    "ResourceRow",
    "SampleBatch",
    "Spool",
    "SpoolLocked",
    "StoreClient",
    "StoreSessions",
    "StoreUnavailable",
    "StoreWriter",
    "apply_retention",
    "ensure_partitions",
    "list_partitions",
    "migrate",
]
