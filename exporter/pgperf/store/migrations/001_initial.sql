-- pgperf store, version 1: the four monitoring tables of the US-015 requirement.
--
-- Runs with search_path set to the store schema, inside one transaction.
-- Differences from the requirement's DDL, and why:
--  * every table carries `target`, the monitored server a row describes;
--  * gen_random_uuid() (core since PostgreSQL 13) instead of uuid-ossp;
--  * counters are BIGINT: an interval can exceed 2^31 rows or buffer hits;
--  * the two sample tables are range-partitioned by day, so retention drops whole
--    partitions instead of deleting rows; their primary key therefore includes the time;
--  * resource columns that need host access (CPU, memory, disk, network) are NULL when
--    pgperf does not run on the database's host, rather than a made-up 0.

CREATE TABLE query_performance_metrics (
    id                uuid NOT NULL DEFAULT gen_random_uuid(),
    target            text NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    interval_seconds  double precision NOT NULL,
    query_id          varchar(64) NOT NULL,
    datname           text,
    username          text,
    query_text        text NOT NULL,
    calls             bigint NOT NULL CHECK (calls >= 0),
    total_time        numeric(15,3) NOT NULL CHECK (total_time >= 0),
    mean_time         numeric(15,3) NOT NULL,
    min_time          numeric(15,3) NOT NULL,
    max_time          numeric(15,3) NOT NULL,
    stddev_time       numeric(15,3) NOT NULL,
    rows_affected     bigint NOT NULL CHECK (rows_affected >= 0),
    cache_hits        bigint NOT NULL CHECK (cache_hits >= 0),
    cache_misses      bigint NOT NULL CHECK (cache_misses >= 0),
    temp_blocks_written bigint NOT NULL DEFAULT 0,
    plan_time         numeric(15,3) NOT NULL DEFAULT 0,
    spans_reset       boolean NOT NULL DEFAULT false,
    is_remainder      boolean NOT NULL DEFAULT false,
    PRIMARY KEY (id, recorded_at)
) PARTITION BY RANGE (recorded_at);

COMMENT ON TABLE query_performance_metrics IS
  'One row per statement that ran during a sampling interval. calls, total_time, rows_affected, '
  'cache_hits, cache_misses are that interval''s change (never negative); mean_time = total_time / calls '
  'and stddev_time are the interval''s; min_time and max_time are pg_stat_statements'' extremes since the '
  'entry''s min/max were last reset. Times in milliseconds. spans_reset: the statistics were reset during '
  'the interval. is_remainder: the sum of the statements beyond store.max_query_rows (query_id ''other'').';

CREATE INDEX query_performance_metrics_target_time ON query_performance_metrics (target, recorded_at);
CREATE INDEX query_performance_metrics_query_time ON query_performance_metrics (query_id, recorded_at);

CREATE TABLE resource_metrics (
    id                      uuid NOT NULL DEFAULT gen_random_uuid(),
    target                  text NOT NULL,
    "timestamp"             timestamptz NOT NULL DEFAULT now(),
    interval_seconds        double precision,
    pg_up                   boolean NOT NULL,
    cpu_usage_percent       numeric(5,2),
    memory_usage_bytes      bigint,
    memory_usage_percent    numeric(5,2),
    disk_usage_bytes        bigint,
    disk_usage_percent      numeric(5,2),
    disk_total_bytes        bigint,
    network_bytes_sent      bigint,
    network_bytes_received  bigint,
    connection_count        integer,
    connection_utilization  numeric(5,2),
    max_connections         integer,
    database_size_bytes     bigint,
    xact_commit             bigint,
    xact_rollback           bigint,
    deadlocks               bigint,
    blks_hit                bigint,
    blks_read               bigint,
    temp_bytes              bigint,
    statements_reset        boolean NOT NULL DEFAULT false,
    server_start_time       timestamptz,
    PRIMARY KEY (id, "timestamp")
) PARTITION BY RANGE ("timestamp");

COMMENT ON TABLE resource_metrics IS
  'One row per sample and target. network_*, xact_*, deadlocks, blks_*, temp_bytes are the change over the '
  'interval; the rest are values at sample time. pg_up false: the database was unreachable (host columns may '
  'still be set). Host columns are NULL when pgperf does not run on the database host.';

CREATE INDEX resource_metrics_target_time ON resource_metrics (target, "timestamp");

CREATE TABLE performance_alerts (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    alert_id          varchar(64) UNIQUE NOT NULL,
    target            text,
    severity          varchar(20) NOT NULL,
    metric            varchar(100) NOT NULL,
    message           text NOT NULL,
    threshold_value   numeric(15,3),
    current_value     numeric(15,3),
    "timestamp"       timestamptz NOT NULL DEFAULT now(),
    acknowledged      boolean NOT NULL DEFAULT false,
    acknowledged_by   varchar(100),
    acknowledged_at   timestamptz,
    resolved_at       timestamptz,
    resolved_by       varchar(100),
    fingerprint       varchar(64),
    source            varchar(20) NOT NULL DEFAULT 'alertmanager',
    status            varchar(20) NOT NULL DEFAULT 'firing'
                        CHECK (status IN ('firing', 'acknowledged', 'resolved')),
    labels            jsonb NOT NULL DEFAULT '{}',
    annotations       jsonb NOT NULL DEFAULT '{}',
    starts_at         timestamptz,
    ends_at           timestamptz,
    silence_id        varchar(64),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX performance_alerts_time ON performance_alerts ("timestamp");
CREATE INDEX performance_alerts_open ON performance_alerts (status) WHERE status <> 'resolved';
CREATE INDEX performance_alerts_fingerprint ON performance_alerts (fingerprint, starts_at);

CREATE TABLE performance_reports (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    report_id     varchar(64) UNIQUE NOT NULL,
    target        text,
    kind          varchar(20) NOT NULL DEFAULT 'on_demand',
    generated_at  timestamptz NOT NULL DEFAULT now(),
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    report_data   jsonb NOT NULL
);

CREATE INDEX performance_reports_time ON performance_reports (generated_at);
