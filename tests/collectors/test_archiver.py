"""pg_stat_archiver (the archiver collector)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from collecting import family, run

pytestmark = pytest.mark.collectors


def test_archiver_without_archiving(pg_conn: psycopg.Connection[Any]) -> None:
    result, _ = run("archiver", pg_conn)
    assert family(result, "pg_stat_archiver_archived_count").samples == (((), 0.0),)
    assert family(result, "pg_stat_archiver_failed_count").samples[0][1] == 0
    assert family(result, "pg_stat_archiver_last_archive_age").samples == ()  # never archived: no sample
    assert family(result, "pg_stat_archiver_archiving").samples[0][1] == 0
