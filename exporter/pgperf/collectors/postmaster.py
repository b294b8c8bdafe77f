"""The postmaster: when the server started and last loaded its configuration.

A server restart shows as a jump of ``pg_postmaster_start_time_seconds``
(postgres_exporter's name); ``pg_postmaster_config_load_time_seconds`` moves on every
reload (``pg_reload_conf()``, SIGHUP), which helps to correlate a change in behaviour
with a configuration change.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from ._base import CollectContext, CollectorResult, CollectorSpec, MetricDef

SQL = """
SELECT extract(epoch FROM pg_postmaster_start_time())::float8 AS start_time,
       extract(epoch FROM pg_conf_load_time())::float8 AS conf_load_time
"""

START = MetricDef("pg_postmaster_start_time_seconds", "gauge",
                  "Time at which the postmaster started, in seconds since the epoch.",
                  source="pg_postmaster_start_time()", compat=True)
CONF_LOAD = MetricDef("pg_postmaster_config_load_time_seconds", "gauge",
                      "Time at which the server last loaded its configuration files, in seconds since the epoch.",
                      source="pg_conf_load_time()")


def collect(ctx: CollectContext) -> CollectorResult:
    assert ctx.conn is not None
    with ctx.conn.cursor(row_factory=dict_row) as cur:
        row: Any = cur.execute(SQL).fetchone()
    assert row is not None
    return CollectorResult((START.single(row["start_time"]), CONF_LOAD.single(row["conf_load_time"])))


SPEC = CollectorSpec(
    name="postmaster",
    description="Server start time and last configuration load time.",
    collect=collect,
    metrics=(START, CONF_LOAD),
)
