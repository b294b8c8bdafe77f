-- pgperf store, version 2: hourly rollups of query_performance_metrics for reports.
--
-- A month of one-minute samples with 1,000 active statements is 43 million rows; a report
-- over it cannot read them all in seconds. The store writer's hourly maintenance sums each
-- complete hour into one row per statement here (in bulk, never per sample), and reports read
-- these rows for complete hours and the raw rows for the rest of their window.
--
-- An hour H holds the samples with H <= recorded_at < H + 1 hour, as date_trunc('hour') puts them.

CREATE TABLE query_metrics_hourly (
    target              text NOT NULL,
    hour                timestamptz NOT NULL,
    query_id            varchar(64) NOT NULL,
    datname             text,
    username            text,
    query_text          text NOT NULL,
    samples             integer NOT NULL,          -- sampling intervals in which the statement ran
    calls               bigint NOT NULL,
    total_time          numeric(18,3) NOT NULL,
    rows_affected       bigint NOT NULL,
    cache_hits          bigint NOT NULL,
    cache_misses        bigint NOT NULL,
    temp_blocks_written bigint NOT NULL,
    plan_time           numeric(18,3) NOT NULL,
    peak_mean_time      numeric(15,3) NOT NULL,    -- the highest interval mean_time of the hour
    min_time            numeric(15,3) NOT NULL,
    max_time            numeric(15,3) NOT NULL,
    spans_reset         boolean NOT NULL,
    is_remainder        boolean NOT NULL
);

COMMENT ON TABLE query_metrics_hourly IS
  'query_performance_metrics summed per statement (query_id, datname, username) and UTC hour by the store '
  'writer''s hourly maintenance. peak_mean_time is the highest per-interval mean of the hour; min_time and '
  'max_time the extremes of the hour''s rows. Hours before query_rollup_state.rolled_until are complete.';

CREATE INDEX query_metrics_hourly_target_hour ON query_metrics_hourly (target, hour);

-- Per target: every hour before rolled_until has been summed into query_metrics_hourly.
CREATE TABLE query_rollup_state (
    target        text PRIMARY KEY,
    rolled_until  timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX performance_reports_target_time ON performance_reports (target, generated_at);
