"""pg_stat_checkpointer and the checkpoint columns of pg_stat_bgwriter (the checkpointer collector)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from collecting import family, run

pytestmark = pytest.mark.collectors


def test_checkpoint_families_on_every_version(pg_conn: psycopg.Connection[Any]) -> None:
    before, _ = run("checkpointer", pg_conn)
    pg_conn.execute("CHECKPOINT")
    deadline = time.monotonic() + 5
    while True:  # up to 14 the statistics collector gets the counts asynchronously
        after, _ = run("checkpointer", pg_conn)
        grown = (family(after, "pg_stat_bgwriter_checkpoints_req_total").samples[0][1]
                 > family(before, "pg_stat_bgwriter_checkpoints_req_total").samples[0][1])
        if grown or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert grown
    names = {f.name for f in after.families}
    assert {"pg_stat_bgwriter_checkpoint_write_time_total", "pg_stat_bgwriter_checkpoint_sync_time_total",
            "pg_stat_bgwriter_buffers_checkpoint_total", "pg_stat_bgwriter_checkpoints_timed_total"} <= names
    if pg_conn.info.server_version >= 170000:
        assert family(after, "pg_stat_checkpointer_num_requested_total").samples[0][1] >= 1
        assert "pg_stat_checkpointer_restartpoints_done_total" in names
    else:
        assert not any(n.startswith("pg_stat_checkpointer_") for n in names)
