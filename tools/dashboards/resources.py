"""The Resources dashboard (resources.json): the database host, database sizes, connections,
locks, checkpoints and WAL, vacuum and dead tuples."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as model

from ._panels import BY, DB, GREEN, PROFILE, RED, SEL, WHO, Board, above, bars, legend, limit, live, prom, series, single

__all__ = ["dashboard"]


def dashboard() -> model.Dashboard:
    board = Board("pgperf-resources", "pgperf / Resources",
                  "The database host (CPU, memory, disk, network), database sizes, connections, locks, "
                  "checkpoints and WAL, vacuum and dead tuples.")
    board.row(
        "Host",
        series("CPU usage", "Share of all CPUs busy during each sampling interval. Dashed: each instance's maximum "
               "(pgperf_threshold_cpu_usage_max_ratio).", "percentunit",
               [prom(f"pgperf_host_cpu_usage_ratio{{{SEL}}}", WHO)],
               lines=[prom(live("cpu_usage_max_percent"), "{{instance}} maximum")],
               steps=above("cpu_usage_max_percent"), min_val=0, max_val=1, w=8),
        series("CPU time by mode", "CPU seconds per second of the host by mode (user, system, iowait ...), summed "
               "over all CPUs.", "s",
               [prom(f"sum by ({BY}, mode) (rate(pgperf_host_cpu_seconds_total{{{SEL}, mode!=\"idle\"}}[$__rate_interval]))",
                     f"{WHO} {{{{mode}}}}")], stack=True, min_val=0, w=8),
        series("Memory usage", "Memory in use on the host (total minus available). Dashed: the maximum "
               "(pgperf_threshold_memory_usage_max_ratio).", "percentunit",
               [prom(f"pgperf_host_memory_usage_ratio{{{SEL}}}", WHO)],
               lines=[prom(live("memory_usage_max_percent"), "{{instance}} maximum")],
               steps=above("memory_usage_max_percent"), min_val=0, max_val=1, w=8),
        series("Disk usage", "Used share of the filesystem holding the data directory. Dashed: the maximum "
               "(pgperf_threshold_disk_usage_max_ratio).", "percentunit",
               [prom(f"pgperf_host_disk_usage_ratio{{{SEL}}}", f"{WHO} {{{{path}}}}")],
               lines=[prom(live("disk_usage_max_percent"), "{{instance}} maximum")],
               steps=above("disk_usage_max_percent"), min_val=0, max_val=1, w=8),
        series("Disk space", "Space used and size of the filesystem holding the data directory.", "bytes", [
            prom(f"pgperf_host_disk_used_bytes{{{SEL}}}", f"{WHO} used"),
        ], lines=[prom(f"pgperf_host_disk_total_bytes{{{SEL}}}", f"{WHO} size")], min_val=0, w=8),
        series("Disk growth", "Growth of the used space, bytes per second (slope over the last hour); negative when "
               "space is freed.", "Bps", [prom(f"deriv(pgperf_host_disk_used_bytes{{{SEL}}}[1h])", f"{WHO} {{{{path}}}}")],
               w=8),
        single("Time until disk full", "At the growth rate of the last 6 hours (the rule PgperfDiskFillingUp's), "
               "when the filesystem is full. Red within the horizon of the "
               f"{PROFILE} profile; 'not filling' when the disk does not grow.", "s",
               [prom(f"(pgperf_host_disk_total_bytes{{{SEL}}} - pgperf_host_disk_used_bytes{{{SEL}}}) / "
                     f"(deriv(pgperf_host_disk_used_bytes{{{SEL}}}[6h]) > 0)", f"{WHO} {{{{path}}}}", instant=True)],
               steps=[(None, RED), (limit("disk_full_within_hours"), GREEN)], no_value="not filling", w=8, h=8),
        series("Network", "Bytes per second sent (negative) and received on all interfaces of the host.", "Bps", [
            prom(f"-rate(pgperf_host_network_sent_bytes_total{{{SEL}}}[$__rate_interval])", f"{WHO} sent"),
            prom(f"rate(pgperf_host_network_received_bytes_total{{{SEL}}}[$__rate_interval])", f"{WHO} received"),
        ], w=8),
        series("Database size", "Size of each selected database (pg_database_size, every "
               "collectors.database_size.interval).", "bytes",
               [prom(f"pg_database_size_bytes{{{DB}}}", legend("datname"))], min_val=0, w=8),
        series("Database growth", "Growth of each database, bytes per second (slope over the last hour).", "Bps",
               [prom(f"deriv(pg_database_size_bytes{{{DB}}}[1h])", legend("datname"))], w=8),
    )
    board.row(
        "Connections",
        series("Connection utilization", "Client backends against max_connections. Dashed: the warning and critical "
               "utilizations of each instance (pgperf_threshold_connection_utilization_*).", "percentunit",
               [prom(f"pg_stat_activity_connection_utilization_ratio{{{SEL}}}", WHO)],
               lines=[prom(live("connection_utilization_warning_percent"), "{{instance}} warning"),
                      prom(live("connection_utilization_critical_percent"), "{{instance}} critical")],
               steps=above("connection_utilization_critical_percent", "connection_utilization_warning_percent"),
               min_val=0, max_val=1, w=8),
        series("Connections by database and state", "Sessions per database and state.", "short",
               [prom(f"sum by ({BY}, datname, state) (pg_stat_activity_count{{{DB}}})", "{{datname}} {{state}} (" + WHO + ")")],
               stack=True, min_val=0, w=8),
        series("Connections per role", "Client connections open by each role that can log in, and connections still "
               "available to non-superusers.", "short", [
                   prom(f"pg_roles_connections{{{SEL}}}", legend("rolname")),
                   prom(f"pg_stat_activity_connections_available{{{SEL}}}", f"available ({WHO})"),
               ], min_val=0, w=8),
        series("Idle in transaction", "How long the oldest session idle inside a transaction has been idle, per "
               "database: it holds locks and stops VACUUM. Dashed: the threshold "
               "(pgperf_threshold_idle_in_transaction_seconds).", "s",
               [prom(f"pg_stat_activity_oldest_idle_in_transaction_age_seconds{{{DB}}}", legend("datname"))],
               lines=[prom(live("idle_in_transaction_seconds"), "{{instance}} threshold")], min_val=0, w=8),
        series("Oldest transaction", "Age of the oldest open transaction per database and state.", "s",
               [prom(f"max by ({BY}, datname) (pg_stat_activity_max_tx_duration{{{DB}}})", legend("datname"))],
               min_val=0, w=8),
        series("Backends by type", "Server processes by backend type (client backends, autovacuum workers, "
               "walsenders ...).", "short",
               [prom(f"pg_stat_activity_backends{{{SEL}}}", legend("backend_type"))], stack=True, min_val=0, w=8),
    )
    board.row(
        "Locks and blocking",
        series("Locks by mode", "Locks held or awaited, by mode, in the selected databases.", "short",
               [prom(f"sum by ({BY}, mode) (pg_locks_count{{{DB}}})", legend("mode"))], stack=True, min_val=0, w=8),
        series("Blocked sessions", "Sessions waiting for a lock held by another session (pg_blocking_pids), and "
               "sessions waiting for any heavyweight lock.", "short", [
                   prom(f"pg_locks_blocked_sessions{{{DB}}}", f"blocked {{{{datname}}}} ({WHO})"),
                   prom(f"pg_stat_activity_waiting_on_lock{{{DB}}}", f"waiting {{{{datname}}}} ({WHO})"),
               ], min_val=0, w=8),
        series("Longest lock wait", "How long the session blocked the longest has been waiting, per database.", "s",
               [prom(f"pg_locks_longest_wait_seconds{{{DB}}}", legend("datname"))], min_val=0, w=8),
        series("Deadlocks", "Deadlocks detected per rate interval; PostgreSQL cancels a transaction to break each "
               "(PgperfDeadlocks).", "short",
               [prom(f"sum by ({BY}, datname) (increase(pg_stat_database_deadlocks{{{DB}}}[$__rate_interval]))",
                     legend("datname"))], bars=True, min_val=0, w=12),
        series("Temporary files", "Bytes written to temporary files per second (sorts and hashes over work_mem).",
               "Bps", [prom(f"sum by ({BY}, datname) (rate(pg_stat_database_temp_bytes{{{DB}}}[$__rate_interval]))",
                            legend("datname"))], min_val=0, w=12),
    )
    board.row(
        "Checkpoints and WAL",
        series("Checkpoints", "Timed checkpoints (checkpoint_timeout) and requested ones (max_wal_size reached, "
               "CHECKPOINT), per minute.", "opm", [
                   prom(f"rate(pg_stat_bgwriter_checkpoints_timed_total{{{SEL}}}[$__rate_interval]) * 60", f"{WHO} timed"),
                   prom(f"rate(pg_stat_bgwriter_checkpoints_req_total{{{SEL}}}[$__rate_interval]) * 60", f"{WHO} requested"),
               ], bars=True, min_val=0, w=8),
        series("Requested checkpoints share", "Share of the last hour's checkpoints that were requested rather than "
               "timed. Dashed: the maximum (pgperf_threshold_checkpoints_requested_max_ratio).", "percentunit",
               [prom(f"increase(pg_stat_bgwriter_checkpoints_req_total{{{SEL}}}[1h]) / "
                     f"(increase(pg_stat_bgwriter_checkpoints_req_total{{{SEL}}}[1h]) + "
                     f"increase(pg_stat_bgwriter_checkpoints_timed_total{{{SEL}}}[1h]) > 0)", WHO)],
               lines=[prom(live("checkpoints_requested_max_percent"), "{{instance}} maximum")],
               steps=above("checkpoints_requested_max_percent"), min_val=0, max_val=1, w=8),
        series("Checkpoint write and sync time", "Time the checkpointer spent writing and syncing files, seconds per "
               "second.", "s", [
                   prom(f"rate(pg_stat_bgwriter_checkpoint_write_time_total{{{SEL}}}[$__rate_interval]) / 1000", f"{WHO} write"),
                   prom(f"rate(pg_stat_bgwriter_checkpoint_sync_time_total{{{SEL}}}[$__rate_interval]) / 1000", f"{WHO} sync"),
               ], min_val=0, w=8),
        series("Buffers written", "Shared buffers written per second by checkpoints and by the background writer, "
               "and buffers allocated.", "ops", [
                   prom(f"rate(pg_stat_bgwriter_buffers_checkpoint_total{{{SEL}}}[$__rate_interval])", f"{WHO} checkpoints"),
                   prom(f"rate(pg_stat_bgwriter_buffers_clean_total{{{SEL}}}[$__rate_interval])", f"{WHO} background writer"),
                   prom(f"rate(pg_stat_bgwriter_buffers_alloc_total{{{SEL}}}[$__rate_interval])", f"{WHO} allocated"),
               ], min_val=0, w=8),
        series("WAL generated", "Bytes of WAL written per second (pg_stat_wal, PostgreSQL 14+).", "Bps",
               [prom(f"rate(pg_stat_wal_bytes_total{{{SEL}}}[$__rate_interval])", WHO)], min_val=0, w=8),
        series("WAL on disk", "Size of pg_wal, and WAL retained by each replication slot.", "bytes", [
            prom(f"pg_wal_size_bytes{{{SEL}}}", f"{WHO} pg_wal"),
            prom(f"pg_replication_slot_retained_bytes{{{SEL}}}", f"{WHO} slot {{{{slot_name}}}}"),
        ], min_val=0, w=8),
    )
    board.row(
        "Vacuum and dead tuples",
        bars("Most dead tuples", "Tables with the most dead tuples (estimated, pg_stat_user_tables).", "short",
             [prom(f"topk(10, pg_stat_user_tables_n_dead_tup{{{DB}}})", "{{datname}}.{{schemaname}}.{{relname}}",
                   instant=True)]),
        bars("Highest dead tuple ratio", "Tables with the highest share of dead tuples. Red over the maximum of the "
             f"{PROFILE} profile (PgperfDeadTuplesHigh also needs 1000 dead tuples).", "percentunit",
             [prom(f"topk(10, pg_stat_user_tables_n_dead_tup{{{DB}}} / "
                   f"(pg_stat_user_tables_n_live_tup{{{DB}}} + pg_stat_user_tables_n_dead_tup{{{DB}}} > 0))",
                   "{{datname}}.{{schemaname}}.{{relname}}", instant=True)],
             steps=above("dead_tuple_max_percent"), max_val=1),
        bars("Longest without vacuum", "Tables whose last vacuum, manual or automatic, is the oldest (tables never "
             "vacuumed are not listed).", "s",
             [prom(f'topk(10, time() - max by ({BY}, datname, schemaname, relname) '
                   f'({{__name__=~"pg_stat_user_tables_last_(auto)?vacuum", {DB}}} > 0))',
                   "{{datname}}.{{schemaname}}.{{relname}}", instant=True)]),
        series("Vacuums and analyzes", "Manual and automatic vacuums and analyzes per hour, all tables of each "
               "database.", "short", [
                   prom(f"sum by ({BY}, datname) (rate(pg_stat_user_tables_autovacuum_count{{{DB}}}[$__rate_interval]) "
                        f"+ rate(pg_stat_user_tables_vacuum_count{{{DB}}}[$__rate_interval])) * 3600",
                        f"vacuums {{{{datname}}}} ({WHO})"),
                   prom(f"sum by ({BY}, datname) (rate(pg_stat_user_tables_autoanalyze_count{{{DB}}}[$__rate_interval]) "
                        f"+ rate(pg_stat_user_tables_analyze_count{{{DB}}}[$__rate_interval])) * 3600",
                        f"analyzes {{{{datname}}}} ({WHO})"),
               ], bars=True, min_val=0, w=12),
        series("Transaction ID age", "Share of the 2^31 transaction IDs before wraparound used by each database's "
               "oldest unfrozen row. Dashed: the maximum (pgperf_threshold_xid_age_max_ratio).", "percentunit",
               [prom(f"pg_database_xid_wraparound_ratio{{{DB}}}", legend("datname"))],
               lines=[prom(live("xid_age_max_percent"), "{{instance}} maximum")],
               steps=above("xid_age_max_percent"), min_val=0, w=12),
    )
    return board.build()
