"""pg_database_size() (the database_size collector)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from collecting import family, run
from pgperf.collectors import BY_NAME
from pgperf.collectors.database_size import DatabaseSizes

pytestmark = pytest.mark.collectors


def test_database_size_of_selected_databases(pg_conn: psycopg.Connection[Any]) -> None:
    result, _ = run("database_size", pg_conn, databases=("postgres",))
    sizes = family(result, "pg_database_size_bytes")
    assert [labels for labels, _ in sizes.samples] == [("postgres",)]
    assert sizes.samples[0][1] > 1024 * 1024
    # The store's resource_metrics.database_size_bytes: the total over the measured databases.
    assert result.record == DatabaseSizes(total_bytes=sizes.samples[0][1], databases=1)
    assert BY_NAME["database_size"].options().interval == 300  # pg_database_size is costly: every 5 minutes by default
