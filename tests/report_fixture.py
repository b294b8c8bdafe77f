"""A deterministic store for report tests: two days of five-minute samples of a poker
application (the requirement's example domain), inserted with fixed values in SQL.

The report window is 2024-01-01 (UTC); 2023-12-31 is the anomaly baseline before it.
Inside the window: a pg_stat_statements reset at 09:00, a server restart at 18:00, two
samples with PostgreSQL down, a query spike at 14:05 (2,150 ms for a statement that
usually takes about 45 ms: the requirement's "47.5x average"), a connection burst at
20:00, temporary files, and twelve short-lived CPU alerts (alert fatigue). The catalog
facts the index and vacuum rules need are given by ``CATALOG``, not read from a server.
Query insight's part: wait samples of statement 1001 (3 on CPU, 1 reading data files per
sample) and its index advice on ``game_hands (created_at)``, verified with HypoPG.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import psycopg

from pgperf.reports.catalog import CatalogFacts, DuplicateIndex, IndexFact, TableFact
from pgperf.store import ensure_partitions, migrate
from pgperf.store.rollup import roll_up

TARGET = "poker-db"
WINDOW_START = datetime(2024, 1, 1, tzinfo=UTC)
WINDOW_END = datetime(2024, 1, 2, tzinfo=UTC)
NOW = datetime(2024, 1, 2, 0, 5, tzinfo=UTC)
REPORT_ID = "perf-report-1704153600000"

# query_id, text, base mean (ms), calls per interval, temp blocks per interval, hits per call, misses per call
STATEMENTS = [
    ("1001", "SELECT * FROM game_hands WHERE created_at BETWEEN $1 AND $2", 45.0, 10, 0, 40, 3),
    ("1002", "SELECT COUNT(*) FROM player_statistics WHERE hands_played > $1 GROUP BY table_id", 2400.0, 1, 0, 900, 100),
    ("1003", "UPDATE players SET chips = chips + $1 WHERE id = $2", 0.8, 120, 0, 4, 0),
    ("1004", "INSERT INTO game_hands (table_id, pot, created_at) VALUES ($1, $2, $3)", 0.3, 200, 0, 3, 0),
    ("1005", "SELECT p.id, p.name FROM players p JOIN poker_tables t ON t.id = p.table_id ORDER BY p.name", 12.0, 30,
     64, 50, 2),
    ("1006", "DELETE FROM sessions WHERE expires_at < $1", 5.0, 2, 0, 10, 1),
    ("1007", "BEGIN", 0.002, 300, 0, 0, 0),
    ("1008", "WITH recent AS (SELECT id FROM game_hands ORDER BY created_at DESC LIMIT $1) "
             "DELETE FROM hand_actions WHERE hand_id IN (SELECT id FROM recent)", 3.0, 1, 0, 20, 1),
]

_RESOURCES = """
INSERT INTO {s}.resource_metrics (target, "timestamp", interval_seconds, pg_up, cpu_usage_percent,
    memory_usage_bytes, memory_usage_percent, disk_usage_bytes, disk_usage_percent, disk_total_bytes,
    network_bytes_sent, network_bytes_received, connection_count, connection_utilization, max_connections,
    database_size_bytes, xact_commit, xact_rollback, deadlocks, blks_hit, blks_read, temp_bytes,
    statements_reset, server_start_time)
SELECT %(target)s, t, 300, NOT down,
       85 + 5 * (i %% 2), 16 * 1024^3 * 0.6, 60.00,
       90 * 1024^3 + i::bigint * (1024^3 / 288)::bigint, round((90 + i / 288.0) * 100 / 110, 2), 110 * 1024^3,
       1000000, 2000000,
       CASE WHEN t = '2024-01-01T20:00Z' THEN 85 ELSE 20 + i %% 3 END,
       CASE WHEN t = '2024-01-01T20:00Z' THEN 85 ELSE 20 + i %% 3 END,
       100, NULL,
       CASE WHEN down THEN NULL ELSE 1000 END, CASE WHEN down THEN NULL ELSE 2 END,
       CASE WHEN t = '2024-01-01T14:05Z' THEN 1 WHEN down THEN NULL ELSE 0 END,
       CASE WHEN down THEN NULL ELSE 9450 END, CASE WHEN down THEN NULL ELSE 550 END,
       CASE WHEN down THEN NULL WHEN i %% 12 = 0 THEN 8 * 1024 * 1024 ELSE 0 END,
       t = '2024-01-01T09:00Z',
       CASE WHEN t >= '2024-01-01T18:00Z' THEN timestamptz '2024-01-01T17:58:00Z' ELSE timestamptz '2023-12-01T00:00Z' END
FROM generate_series(1, 576) AS i,
     LATERAL (SELECT timestamptz '2023-12-31T00:00Z' + i * interval '5 minutes' AS t) ts,
     LATERAL (SELECT t IN ('2024-01-01T17:55Z', '2024-01-01T18:00Z') AS down) d
"""

_QUERIES = """
INSERT INTO {s}.query_performance_metrics (target, recorded_at, interval_seconds, query_id, datname, username,
    query_text, calls, total_time, mean_time, min_time, max_time, stddev_time, rows_affected, cache_hits,
    cache_misses, temp_blocks_written, plan_time, spans_reset, is_remainder)
SELECT %(target)s, t, 300, q.id, 'poker', 'app', q.text, q.calls, round(q.calls * m.mean, 3), round(m.mean, 3),
       round(q.base::numeric * 0.5, 3), round(greatest(m.mean, q.base::numeric) * 3, 3), round(q.base::numeric * 0.2, 3),
       q.calls, q.calls * q.hits, q.calls * q.misses, q.temp, 0, t = '2024-01-01T09:00Z', false
FROM generate_series(1, 576) AS i,
     LATERAL (SELECT timestamptz '2023-12-31T00:00Z' + i * interval '5 minutes' AS t) ts,
     unnest(%(ids)s::text[], %(texts)s::text[], %(bases)s::float8[], %(calls)s::int[], %(temps)s::int[],
            %(hits)s::int[], %(misses)s::int[]) AS q(id, text, base, calls, temp, hits, misses),
     LATERAL (SELECT CASE WHEN q.id = '1001' AND t = '2024-01-01T14:05Z' THEN 2150.0
                          ELSE q.base::numeric * (1 + (i %% 3) * 0.005) END AS mean) m
WHERE t NOT IN ('2024-01-01T17:55Z', '2024-01-01T18:00Z')
UNION ALL
SELECT %(target)s, t, 300, 'other', NULL, NULL, '(12 other statements)', 50, 5.0, 0.1, 0.01, 2.0, 0.05, 50, 500, 5,
       0, 0, t = '2024-01-01T09:00Z', true
FROM generate_series(1, 576) AS i,
     LATERAL (SELECT timestamptz '2023-12-31T00:00Z' + i * interval '5 minutes' AS t) ts
WHERE t NOT IN ('2024-01-01T17:55Z', '2024-01-01T18:00Z')
"""

_ALERTS = """
INSERT INTO {s}.performance_alerts (alert_id, target, severity, metric, message, threshold_value, current_value,
    "timestamp", resolved_at, resolved_by, status, labels)
SELECT 'cpu-' || i, %(target)s, 'error', 'cpu_usage_percent', 'High CPU usage', 80, 88 + i %% 3,
       timestamptz '2024-01-01T01:00Z' + i * interval '90 minutes',
       timestamptz '2024-01-01T01:03Z' + i * interval '90 minutes', 'alertmanager', 'resolved',
       '{{"alertname": "PgperfHighCpuUsage"}}'::jsonb
FROM generate_series(0, 11) AS i
UNION ALL
SELECT 'slow-1', %(target)s, 'warning', 'slow_queries', 'Slow queries', 5, 7, timestamptz '2024-01-01T14:06Z',
       NULL, NULL, 'firing', '{{"alertname": "PgperfSlowQueries"}}'::jsonb
"""

_INSIGHT = """
INSERT INTO {s}.statement_wait_profiles (target, recorded_at, interval_seconds, source, query_id, wait_event_type,
    wait_event, samples, seconds)
SELECT %(target)s, t, 300, 'pg_stat_activity', '1001', w.type, w.event, w.samples, w.samples
FROM generate_series(1, 576) AS i,
     LATERAL (SELECT timestamptz '2023-12-31T00:00Z' + i * interval '5 minutes' AS t) ts,
     (VALUES ('CPU', 'CPU', 3), ('IO', 'DataFileRead', 1)) AS w(type, event, samples)
WHERE t NOT IN ('2024-01-01T17:55Z', '2024-01-01T18:00Z')
"""
_ADVICE = """
INSERT INTO {s}.index_advice (target, datname, schema_name, table_name, columns, sql, query_ids, cost_before,
    cost_after, verified, status, writes_per_second, note, first_seen, last_seen, saving_per_second,
    maintenance_per_second, write_verdict)
VALUES (%(target)s, 'poker', 'public', 'game_hands', '{{created_at}}',
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS game_hands_created_at_idx ON public.game_hands (created_at)',
        '{{1001,1008}}', 152000, 21.4, 'hypopg', 'open', 0.35, '', '2024-01-01T08:00Z', '2024-01-02T00:00Z',
        5065.95, 1.405, 'pays')
"""

CATALOG = CatalogFacts(
    database="poker",
    read_at=NOW,
    stats_reset=datetime(2023, 12, 1, tzinfo=UTC),
    settings={
        "shared_buffers": {"setting": "16384", "unit": "8kB", "bytes": 128 * 1024 * 1024},
        "effective_cache_size": {"setting": "524288", "unit": "8kB", "bytes": 4 * 1024**3},
        "work_mem": {"setting": "4096", "unit": "kB", "bytes": 4 * 1024 * 1024},
        "max_connections": {"setting": "100", "unit": None, "bytes": None},
        "autovacuum": {"setting": "on", "unit": None, "bytes": None},
        "autovacuum_vacuum_threshold": {"setting": "50", "unit": None, "bytes": None},
        "autovacuum_vacuum_scale_factor": {"setting": "0.2", "unit": None, "bytes": None},
    },
    tables=(
        TableFact("public", "game_hands", 2_500_000, 40_000, 340, 340 * 2_400_000, 12, 900 * 1024 * 1024,
                  datetime(2024, 1, 1, 6, tzinfo=UTC), None, 31,
                  columns=("id", "table_id", "winner_id", "pot", "created_at"), indexed_columns=("id", "pot")),
        TableFact("public", "players", 52_000, 28_000, 3, 150_000, 90_000, 24 * 1024 * 1024,
                  datetime(2023, 12, 29, 4, tzinfo=UTC), None, 7),
        TableFact("public", "sessions", 900, 40, 800, 720_000, 0, 256 * 1024, None, None, 0),
    ),
    unused_indexes=(
        IndexFact("public", "game_hands", "game_hands_pot_idx", 0, 48 * 1024 * 1024,
                  "CREATE INDEX game_hands_pot_idx ON public.game_hands USING btree (pot)"),
        IndexFact("public", "sessions", "sessions_token_idx", 0, 16 * 1024,
                  "CREATE INDEX sessions_token_idx ON public.sessions USING btree (token)"),
    ),
    duplicate_indexes=(DuplicateIndex("public", "players", ("players_pkey", "players_id_idx"), 2 * 1024 * 1024),),
)


def load(conn: psycopg.Connection[Any], schema: str, *, rollup: bool = True) -> None:
    """Create *schema* afresh and fill it with the fixture; roll up its complete hours."""
    from psycopg import sql

    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    migrate(conn, schema)
    ensure_partitions(conn, schema, [date(2023, 12, 31), date(2024, 1, 1), date(2024, 1, 2)])
    s = sql.Identifier(schema)
    conn.execute(sql.SQL(_RESOURCES).format(s=s), {"target": TARGET})
    cols = list(zip(*STATEMENTS, strict=True))
    conn.execute(sql.SQL(_QUERIES).format(s=s), {
        "target": TARGET, "ids": list(cols[0]), "texts": list(cols[1]), "bases": list(cols[2]),
        "calls": list(cols[3]), "temps": list(cols[4]), "hits": list(cols[5]), "misses": list(cols[6])})
    conn.execute(sql.SQL(_ALERTS).format(s=s), {"target": TARGET})
    conn.execute(sql.SQL(_INSIGHT).format(s=s), {"target": TARGET})
    conn.execute(sql.SQL(_ADVICE).format(s=s), {"target": TARGET})
    if rollup:
        roll_up(conn, schema, now=NOW, targets=(TARGET,))
