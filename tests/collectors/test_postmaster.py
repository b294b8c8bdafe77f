"""pg_postmaster_start_time() (the postmaster collector)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from collecting import family, run

pytestmark = pytest.mark.collectors


def test_postmaster_start_time(pg_conn: psycopg.Connection[Any]) -> None:
    result, _ = run("postmaster", pg_conn)
    started = family(result, "pg_postmaster_start_time_seconds").samples[0][1]
    assert time.time() - 3600 < started <= time.time()
