"""The Overview dashboard (overview.json): health of every instance at a glance, trends of
load, connections, cache, replication and sessions, the alerts firing now."""

from __future__ import annotations

from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from ._panels import (
    BLUE,
    BY,
    DB,
    FIRING,
    GREEN,
    ORANGE,
    PROFILE,
    RED,
    SEL,
    WHO,
    Board,
    above,
    bars,
    below,
    grid,
    limit,
    link,
    live,
    prom,
    series,
    single,
    to_dashboard,
)

__all__ = ["dashboard"]

CACHE_HIT = f"""
    sum by ({BY}) (rate(pg_stat_database_blks_hit{{{SEL}}}[$__rate_interval]))
      /
    (sum by ({BY}) (rate(pg_stat_database_blks_hit{{{SEL}}}[$__rate_interval]) + rate(pg_stat_database_blks_read{{{SEL}}}[$__rate_interval])) > 0)
"""
TPS = f"""
    sum by ({BY}) (rate(pg_stat_database_xact_commit{{{SEL}}}[$__rate_interval]) + rate(pg_stat_database_xact_rollback{{{SEL}}}[$__rate_interval]))
"""
ROLLBACK_RATIO = f"""
    sum by ({BY}) (rate(pg_stat_database_xact_rollback{{{SEL}}}[$__rate_interval]))
      /
    ({TPS} > 0)
"""


def dashboard() -> model.Dashboard:
    board = Board("pgperf-overview", "pgperf / Overview",
                  "Health of every monitored PostgreSQL instance: availability, load, connections, cache, "
                  "host resources, replication and the alerts firing now.")
    board.annotation("PostgreSQL restarts", f"changes(pg_postmaster_start_time_seconds{{{SEL}}}[$__interval]) > 0", ORANGE)
    board.row(
        "Instances",
        single("PostgreSQL up", "Whether pgperf's last sample could connect to PostgreSQL (pg_up), per instance.",
               "none", [prom(f"pg_up{{{SEL}}}", WHO, instant=True)],
               mappings={"0": ("down", RED), "1": ("up", GREEN)}, steps=[(None, RED), (1, GREEN)]),
        single("Version", "PostgreSQL version of each instance (pg_static).", "none",
               [prom(f"pg_static{{{SEL}}}", "{{short_version}} ({{instance}} {{target}})", instant=True)],
               text_mode=common.BigValueTextMode.NAME),
        single("Uptime", "Time since the postmaster started. Red for ten minutes after a restart, like the "
               "PgperfServerRestarted notification.", "s",
               [prom(f"time() - pg_postmaster_start_time_seconds{{{SEL}}}", WHO, instant=True)],
               steps=[(None, RED), (600, GREEN)]),
        single("Transactions/s", "Commits and rollbacks per second, all databases.", "ops",
               [prom(TPS, WHO, instant=True)]),
        single("Connections used", "Client backends against max_connections. Orange from the warning, red from the "
               f"critical utilization of the {PROFILE} profile.", "percentunit",
               [prom(f"pg_stat_activity_connection_utilization_ratio{{{SEL}}}", WHO, instant=True)],
               steps=above("connection_utilization_critical_percent", "connection_utilization_warning_percent")),
        single("Cache hit ratio", "Share of blocks found in shared buffers over the last rate interval. Red under the "
               f"minimum of the {PROFILE} profile.", "percentunit", [prom(CACHE_HIT, WHO, instant=True)],
               steps=below("cache_hit_ratio_min"), decimals=2),
        single("CPU", "CPU usage of the database host over the last sampling interval (host collector).",
               "percentunit", [prom(f"pgperf_host_cpu_usage_ratio{{{SEL}}}", WHO, instant=True)],
               steps=above("cpu_usage_max_percent")),
        single("Memory", "Memory in use on the database host.", "percentunit",
               [prom(f"pgperf_host_memory_usage_ratio{{{SEL}}}", WHO, instant=True)],
               steps=above("memory_usage_max_percent")),
        single("Disk", "Usage of the filesystem holding the data directory.", "percentunit",
               [prom(f"max by ({BY}) (pgperf_host_disk_usage_ratio{{{SEL}}})", WHO, instant=True)],
               steps=above("disk_usage_max_percent")),
        single("Replication lag", "How far replay on a standby is behind its primary (0 on a primary).", "s",
               [prom(f"pg_replication_lag_seconds{{{SEL}}}", WHO, instant=True)],
               steps=above("replication_lag_max_seconds")),
        single("Slow statements", "Statements whose mean time in the last sampling interval exceeded the slow-query "
               "threshold.", "short",
               [prom(f"sum by ({BY}) (pg_stat_statements_slow_statements{{{SEL}}})", WHO, instant=True)],
               steps=[(None, GREEN), (1, ORANGE), (limit("slow_queries_error_count"), RED)],
               links=[link("Query performance", to_dashboard("pgperf-queries"))]),
        single("Firing alerts", "pgperf alerts firing now in Prometheus (ALERTS), all severities. Click for the "
               "alerts dashboard.", "short", [prom(f"count({FIRING}) or vector(0)", "firing", instant=True)],
               steps=[(None, GREEN), (1, ORANGE)],
               links=[link("Alerts and reports", to_dashboard("pgperf-alerts"))]),
    )
    board.row(
        "Trends",
        series("Transactions per second", "Commits and rollbacks per second, all databases.", "ops", [
            prom(f"sum by ({BY}) (rate(pg_stat_database_xact_commit{{{SEL}}}[$__rate_interval]))", f"{WHO} commits"),
            prom(f"sum by ({BY}) (rate(pg_stat_database_xact_rollback{{{SEL}}}[$__rate_interval]))", f"{WHO} rollbacks"),
        ]),
        series("Connections against max_connections", "Client backends (what max_connections limits) and the "
               "max_connections setting, dashed.", "short",
               [prom(f"pg_stat_activity_client_connections{{{SEL}}}", f"{WHO} connections")],
               lines=[prom(f"pg_settings_max_connections{{{SEL}}}", f"{WHO} max_connections")], min_val=0),
        series("Cache hit ratio", "Blocks found in shared buffers over blocks needed. Dashed: each instance's minimum "
               "(pgperf_threshold_cache_hit_ratio_min), below which PgperfCacheHitRatioLow fires after 10 minutes.",
               "percentunit", [prom(CACHE_HIT, WHO)],
               lines=[prom(live("cache_hit_ratio_min"), "{{instance}} minimum")], steps=below("cache_hit_ratio_min")),
        series("Rollback ratio", "Share of transactions rolled back (the error rate). Dashed: each instance's maximum "
               "(pgperf_threshold_error_rate_max_ratio).", "percentunit", [prom(ROLLBACK_RATIO, WHO)],
               lines=[prom(live("error_rate_max"), "{{instance}} maximum")], steps=above("error_rate_max"), min_val=0),
        series("Replication lag", "Replay delay of a standby (pg_replication_lag_seconds) and, on a primary, the replay "
               "lag of each connected standby (pg_stat_replication). Dashed: the maximum "
               "(pgperf_threshold_replication_lag_max_seconds).", "s", [
                   prom(f"pg_replication_lag_seconds{{{SEL}}}", f"{WHO} replay delay"),
                   prom(f"max by ({BY}, application_name) (pg_stat_replication_replay_lag_seconds{{{SEL}}})",
                        f"{WHO} standby {{{{application_name}}}}"),
               ], lines=[prom(live("replication_lag_max_seconds"), "{{instance}} maximum")], min_val=0),
        series("Sessions by state", "Sessions per state (active, idle, idle in transaction ...) in the selected "
               "databases.", "short",
               [prom(f"sum by ({BY}, state) (pg_stat_activity_count{{{DB}}})", f"{WHO} {{{{state}}}}")],
               stack=True, min_val=0),
        grid("Alerts firing now", "pgperf alerts firing now in Prometheus. History, acknowledgements and resolutions are "
             "on the Alerts and reports dashboard.", "none",
             [prom(FIRING, instant=True, table_format=True)],
             hide=["Time", "Value", "__name__", "alertstate", "job"], h=6, w=16,
             columns={"severity": {"mappings": {"critical": RED, "error": RED, "warning": ORANGE, "info": BLUE},
                                   "color": True}}),
        bars("Database size", "Size of each selected database (pg_database_size).", "bytes",
             [prom(f"pg_database_size_bytes{{{DB}}}", "{{datname}} ({{instance}} {{target}})", instant=True)], h=6),
    )
    return board.build()
