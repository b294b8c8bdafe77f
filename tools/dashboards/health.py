"""The Health dashboard (health.json): what DBAs otherwise write custom queries for — wait
events and blocking chains, VACUUM progress and transaction ID consumption, bloat,
invalid, unused and redundant indexes, I/O by backend type and connection encryption.
The alerts of prometheus/rules/health.yml link here."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as model

from ._panels import (
    BY,
    DB,
    GREEN,
    ORANGE,
    PROFILE,
    RED,
    SEL,
    WHO,
    Board,
    above,
    bars,
    grid,
    legend,
    limit,
    live,
    prom,
    series,
    single,
)

__all__ = ["dashboard"]

_OBJECT = "{{datname}}.{{schemaname}}.{{relname}}"
_INDEX = "{{datname}}.{{schemaname}}.{{indexrelname}}"


def _xid_time_left() -> str:
    """Seconds until the oldest database reaches the transaction ID age maximum at the last
    hour's consumption rate: PgperfTransactionIdConsumptionHigh's expression."""
    return f"""
        (
          {live("xid_age_max_percent")} * 2147483648
            - on (job, instance) group_right
          max by ({BY}) (pg_database_xid_age{{{SEL}}})
        )
        / (rate(pg_transaction_ids_assigned_total{{{SEL}}}[1h]) > 0)
    """


def dashboard() -> model.Dashboard:
    board = Board("pgperf-health", "pgperf / Health",
                  "Wait events and blocking chains, VACUUM progress and transaction ID consumption, table and "
                  "index bloat, invalid, unused and redundant indexes, I/O by backend type and connection "
                  "encryption.")
    board.row(
        "Waits and blocking",
        series("Busy sessions by wait event type", "Active client sessions and working background processes, by "
               "what they wait for (wait_events collector); 'CPU' waits for nothing.", "short", [
                   prom(f"sum by ({BY}, wait_event_type) (pg_wait_event_sessions{{{DB}}})", legend("wait_event_type")),
                   prom(f"sum by ({BY}) (pg_wait_event_cpu_sessions{{{DB}}})", f"CPU ({WHO})"),
               ], stack=True, min_val=0, w=8),
        bars("Top wait events", "The wait events most busy sessions wait for now.", "short",
             [prom(f"topk(10, sum by ({BY}, wait_event_type, wait_event) (pg_wait_event_sessions{{{DB}}}))",
                   "{{wait_event_type}}: {{wait_event}} ({{instance}} {{target}})", instant=True)]),
        series("Root blocker age", "Age of the transaction of the oldest session blocking others while waiting for "
               "no lock itself, per database (0 when nobody is blocked). Dashed: the maximum "
               "(pgperf_threshold_blocking_max_seconds) of PgperfBlockingChain.", "s",
               [prom(f"pg_blocking_root_blocker_age_seconds{{{DB}}}", legend("datname"))],
               lines=[prom(live("blocking_max_seconds"), "{{instance}} maximum")],
               steps=above("blocking_max_seconds"), min_val=0, w=8),
        series("Blocking chains", "Sessions blocked by another (pg_blocking_pids), the most behind one root blocker "
               "and the longest chain, per database.", "short", [
                   prom(f"pg_blocking_blocked_sessions{{{DB}}}", f"blocked {{{{datname}}}} ({WHO})"),
                   prom(f"pg_blocking_max_tree_sessions{{{DB}}}", f"behind one root {{{{datname}}}} ({WHO})"),
                   prom(f"pg_blocking_chain_depth{{{DB}}}", f"chain depth {{{{datname}}}} ({WHO})"),
               ], min_val=0, w=12),
        single("Idle root blockers", "Root blockers running nothing: idle in a transaction, or a prepared "
               "transaction (the application forgot to commit).", "short",
               [prom(f"sum by ({BY}) (pg_blocking_idle_root_blockers{{{SEL}}})", WHO, instant=True)],
               steps=[(None, GREEN), (1, RED)], w=12, h=8),
    )
    board.row(
        "Vacuum and transaction IDs",
        series("VACUUM run time", "How long each VACUUM in progress has worked on its table, by kind (manual, "
               "autovacuum, wraparound). Dashed: the maximum (pgperf_threshold_vacuum_max_seconds) of "
               "PgperfVacuumStuck.", "s",
               [prom(f"pg_stat_progress_vacuum_elapsed_seconds{{{DB}}}", "{{relname}} {{kind}} ({{instance}} {{target}})")],
               lines=[prom(live("vacuum_max_hours"), "{{instance}} maximum")], min_val=0, w=8),
        series("VACUUM heap scanned", "Share of the table's heap each VACUUM in progress has scanned.", "percentunit",
               [prom(f"pg_stat_progress_vacuum_heap_blks_scanned{{{DB}}} / (pg_stat_progress_vacuum_heap_blks{{{DB}}} > 0)",
                     "{{relname}} ({{instance}} {{target}})")], min_val=0, max_val=1, w=8),
        series("Maintenance in progress", "VACUUM, ANALYZE, CREATE INDEX and base backups running now "
               "(progress collector).", "short",
               [prom(f"pgperf_progress_operations{{{SEL}}}", legend("command"))], min_val=0, w=8),
        series("Transaction IDs consumed", "Transaction IDs assigned per second (pg_transaction_ids_assigned_total): "
               "each write transaction takes one.", "ops",
               [prom(f"rate(pg_transaction_ids_assigned_total{{{SEL}}}[$__rate_interval])", WHO)], min_val=0, w=12),
        single("Time to the transaction ID maximum", "At the last hour's consumption rate, when the oldest database's "
               "transaction ID age reaches the wraparound maximum (PgperfTransactionIdConsumptionHigh). Red within "
               f"the horizon of the {PROFILE} profile.", "s", [prom(_xid_time_left(), WHO, instant=True)],
               steps=[(None, RED), (limit("xid_exhaustion_within_hours"), GREEN)], w=12, h=8),
    )
    board.row(
        "Bloat",
        bars("Table bloat", "Estimated share of each table that its live rows do not need (bloat collector, from "
             f"the statistics of the last ANALYZE). Red over the maximum of the {PROFILE} profile; "
             "PgperfTableBloat also needs the minimum size.", "percentunit",
             [prom(f"topk(10, pg_table_bloat_ratio{{{DB}}})", _OBJECT, instant=True)],
             steps=above("table_bloat_max_percent"), max_val=1),
        bars("Index bloat", "Estimated share of each b-tree index that its entries do not need. Red over the "
             f"maximum of the {PROFILE} profile.", "percentunit",
             [prom(f"topk(10, pg_index_bloat_ratio{{{DB}}})", _INDEX, instant=True)],
             steps=above("index_bloat_max_percent"), max_val=1),
        bars("Most bloat", "Estimated bytes of bloat of the most bloated tables and indexes. Orange from the minimum "
             f"size the bloat alerts need ({PROFILE} profile); measure with pgperf bloat --exact.", "bytes", [
                 prom(f"topk(10, pg_table_bloat_bytes{{{DB}}})", _OBJECT, instant=True),
                 prom(f"topk(10, pg_index_bloat_bytes{{{DB}}})", _INDEX, instant=True),
             ], steps=[(None, GREEN), (limit("bloat_min_size_mb"), ORANGE)]),
    )
    board.row(
        "Indexes",
        single("Invalid indexes", "Indexes left invalid by a failed concurrent build (PgperfInvalidIndex).",
               "short", [prom(f"sum by ({BY}) (pg_indexes_invalid{{{SEL}}})", WHO, instant=True)],
               steps=[(None, GREEN), (1, RED)]),
        single("Unused indexes", "Indexes never scanned since the statistics were reset that enforce no "
               "constraint.", "short", [prom(f"sum by ({BY}) (pg_indexes_unused{{{SEL}}})", WHO, instant=True)]),
        single("Duplicate indexes", "Indexes identical to another index of the same table.", "short",
               [prom(f"sum by ({BY}) (pg_indexes_duplicate{{{SEL}}})", WHO, instant=True)],
               steps=[(None, GREEN), (1, ORANGE)]),
        single("Overlapping indexes", "B-tree indexes whose key columns lead a longer index of the same table.",
               "short", [prom(f"sum by ({BY}) (pg_indexes_overlapping{{{SEL}}})", WHO, instant=True)],
               steps=[(None, GREEN), (1, ORANGE)]),
        single("Scans counted for", "How long index scans have been counted in each database (since the "
               "statistics were reset, or the server started). Orange until the observation window of the "
               f"{PROFILE} profile has passed: before, 'unused' means little.", "s",
               [prom(f"min by ({BY}) (pg_index_stats_age_seconds{{{SEL}}})", WHO, instant=True)],
               steps=[(None, ORANGE), (limit("unused_index_min_days"), GREEN)], w=8),
        bars("Largest unused indexes", "Indexes never scanned since the statistics were reset, by size. Red from the "
             f"size PgperfUnusedIndex reports ({PROFILE} profile).", "bytes",
             [prom(f"topk(10, pg_index_unused_bytes{{{DB}}})", _INDEX, instant=True)],
             steps=[(None, ORANGE), (limit("unused_index_min_size_mb"), RED)], w=12),
        grid("Redundant and invalid indexes", "Duplicate indexes (duplicate_of), b-tree indexes led by a longer one "
             "(covered_by) and invalid indexes, with their sizes.", "bytes", [
                 prom(f"pg_index_duplicate_bytes{{{DB}}}", instant=True, table_format=True),
                 prom(f"pg_index_overlapping_bytes{{{DB}}}", instant=True, table_format=True),
                 prom(f"pg_index_invalid_bytes{{{DB}}}", instant=True, table_format=True),
             ], hide=["Time", "__name__", "job"], rename={"Value": "size"}, merge=True, w=12),
    )
    board.row(
        "I/O and encryption",
        series("I/O by backend type", "Bytes read and written per second by each kind of process (pg_stat_io, "
               "PostgreSQL 16+).", "Bps", [
                   prom(f"sum by ({BY}, backend_type) (rate(pg_stat_io_read_bytes_total{{{SEL}}}[$__rate_interval]))",
                        f"read {{{{backend_type}}}} ({WHO})"),
                   prom(f"sum by ({BY}, backend_type) (rate(pg_stat_io_write_bytes_total{{{SEL}}}[$__rate_interval]))",
                        f"written {{{{backend_type}}}} ({WHO})"),
               ], min_val=0, w=12),
        series("Buffer hits and evictions", "Shared buffer hits and evictions per second by backend type "
               "(pg_stat_io, PostgreSQL 16+).", "ops", [
                   prom(f"sum by ({BY}, backend_type) (rate(pg_stat_io_hits_total{{{SEL}}}[$__rate_interval]))",
                        f"hits {{{{backend_type}}}} ({WHO})"),
                   prom(f"sum by ({BY}, backend_type) (rate(pg_stat_io_evictions_total{{{SEL}}}[$__rate_interval]))",
                        f"evictions {{{{backend_type}}}} ({WHO})"),
               ], min_val=0, w=12),
        series("Connections by TLS use", "Client connections (and WAL senders) by transport and TLS use (ssl "
               "collector); TCP without TLS sends passwords hashed but data in clear.", "short",
               [prom(f"sum by ({BY}, transport, ssl) (pg_stat_ssl_connections{{{SEL}}})",
                     f"{{{{transport}}}} TLS {{{{ssl}}}} ({WHO})")], stack=True, min_val=0, w=12),
        series("Connections by GSSAPI use", "Client connections by GSSAPI authentication and encryption (gssapi "
               "collector).", "short",
               [prom(f"sum by ({BY}, authenticated, encrypted) (pg_stat_gssapi_connections{{{SEL}}})",
                     f"authenticated {{{{authenticated}}}} encrypted {{{{encrypted}}}} ({WHO})")],
               stack=True, min_val=0, w=12),
    )
    return board.build()
