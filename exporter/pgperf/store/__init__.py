"""The sample store: the four monitoring tables in PostgreSQL, their schema, the writer
that fills them (with an on-disk spool while the store is down) and retention."""

from __future__ import annotations

from .client import StoreClient, StoreUnavailable
from .rows import BatchBuilder, SampleBatch
from .schema import MIGRATIONS, apply_retention, ensure_partitions, list_partitions, migrate
from .spool import Spool, SpoolLocked
from .writer import STORE_METRICS, StoreWriter

__all__ = [
    "MIGRATIONS",
    "STORE_METRICS",
    "BatchBuilder",
    "SampleBatch",
    "Spool",
    "SpoolLocked",
    "StoreClient",
    "StoreUnavailable",
    "StoreWriter",
    "apply_retention",
    "ensure_partitions",
    "list_partitions",
    "migrate",
]
