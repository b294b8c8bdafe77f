"""pg_settings (the settings collector)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from collecting import run
from pgperf.collectors.settings import normalise

pytestmark = pytest.mark.collectors


def test_settings_units_like_postgres_exporter(pg_conn: psycopg.Connection[Any]) -> None:
    result, _ = run("settings", pg_conn)
    by_name = {f.name: f.samples[0][1] for f in result.families}
    assert by_name["pg_settings_shared_buffers_bytes"] == 64 * 1024 * 1024  # 8kB blocks -> bytes
    assert by_name["pg_settings_max_connections"] == 100
    assert by_name["pg_settings_fsync"] == 0  # bool, off in the test cluster
    assert by_name["pg_settings_track_io_timing"] == 1
    assert by_name["pg_settings_log_min_duration_statement_seconds"] == -1  # -1 kept as is
    assert by_name["pg_settings_checkpoint_timeout_seconds"] == 300
    assert by_name["pg_settings_pg_stat_statements_max"] == 5000  # dotted names flattened
    assert all(f.type == "gauge" for f in result.families)


def test_settings_normalise() -> None:
    assert normalise("128", "8kB") == (128 * 8192, "bytes")
    assert normalise("4", "MB") == (4 * 1024 * 1024, "bytes")
    assert normalise("200", "ms") == (0.2, "seconds")
    assert normalise("1", "min") == (60, "seconds")
    assert normalise("-1", "ms") == (-1, "seconds")
    assert normalise("0.9", "") == (0.9, "")
    with pytest.raises(ValueError):
        normalise("1", "furlongs")
