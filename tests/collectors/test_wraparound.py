"""Transaction ID wraparound (the wraparound collector)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from collecting import family, run
from pgperf.collectors.wraparound import WraparoundAges

pytestmark = pytest.mark.collectors


def test_wraparound(pg_conn: psycopg.Connection[Any]) -> None:
    result, _ = run("wraparound", pg_conn)
    age = family(result, "pg_database_xid_age").value(datname="postgres")
    assert age is not None and age > 0
    assert family(result, "pg_database_xid_wraparound_ratio").value(datname="postgres") == age / 2**31
    assert family(result, "pg_database_xid_age").value(datname="template0") is not None  # no connections, still ages
    assert family(result, "pg_database_mxid_age").value(datname="postgres") is not None
    assert family(result, "pg_database_wraparound_age_datfrozenxid_seconds").value(datname="postgres") == age
    # The store's resource_metrics.xid_age: the oldest database's age.
    ages = family(result, "pg_database_xid_age")
    mxids = family(result, "pg_database_mxid_age")
    assert result.record == WraparoundAges(int(max(v for _, v in ages.samples)),
                                           int(max(v for _, v in mxids.samples)))
