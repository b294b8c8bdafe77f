"""pg_stat_bgwriter's background-writer columns (the bgwriter collector)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from collecting import run

pytestmark = pytest.mark.collectors


def test_bgwriter_families_on_every_version(pg_conn: psycopg.Connection[Any]) -> None:
    bgwriter, _ = run("bgwriter", pg_conn)
    bg_names = {f.name for f in bgwriter.families}
    assert {"pg_stat_bgwriter_buffers_clean_total", "pg_stat_bgwriter_buffers_alloc_total",
            "pg_stat_bgwriter_stats_reset_total"} <= bg_names
    assert ("pg_stat_bgwriter_buffers_backend_total" in bg_names) == (pg_conn.info.server_version < 170000)
    checkpointer, _ = run("checkpointer", pg_conn)
    assert not bg_names & {f.name for f in checkpointer.families}  # each family from one collector only
