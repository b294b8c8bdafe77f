"""pg_stat_wal and the WAL directory (the wal collector)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from collecting import family, run

pytestmark = pytest.mark.collectors


def test_wal(pg_conn: psycopg.Connection[Any]) -> None:
    result, _ = run("wal", pg_conn)
    assert family(result, "pg_wal_segments").samples[0][1] >= 1
    assert family(result, "pg_wal_size_bytes").samples[0][1] >= 16 * 1024 * 1024 * family(result, "pg_wal_segments").samples[0][1] / 2
    assert family(result, "pg_wal_lsn_location_bytes").samples[0][1] > 0
    names = {f.name for f in result.families}
    version = pg_conn.info.server_version
    if version >= 140000:
        assert family(result, "pg_stat_wal_records_total").samples[0][1] > 0
        assert family(result, "pg_stat_wal_bytes_total").samples[0][1] > 0
        assert {"pg_stat_wal_fpi_total", "pg_stat_wal_buffers_full_total"} <= names
        assert ("pg_stat_wal_write_total" in names) == (version < 180000)
    else:
        assert not any(n.startswith("pg_stat_wal_") for n in names)
