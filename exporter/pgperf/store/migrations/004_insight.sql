-- pgperf store, version 4: query insight — wait profiles, plans and index advice.
--
-- Runs with search_path set to the store schema, inside one transaction.
-- statement_wait_profiles is partitioned by day like the sample tables (the writer makes
-- its partitions and retention drops them with query_performance_metrics'); plans and
-- advice are small, one row per distinct plan or advice, and expire by last_seen.
-- Query ids are pg_stat_statements' queryid as text, as in query_performance_metrics.

CREATE TABLE statement_wait_profiles (
    target            text NOT NULL,
    recorded_at       timestamptz NOT NULL,
    interval_seconds  double precision NOT NULL CHECK (interval_seconds >= 0),
    source            text NOT NULL CHECK (source IN ('pg_stat_activity', 'pg_wait_sampling')),
    query_id          varchar(64),
    wait_event_type   text NOT NULL,
    wait_event        text NOT NULL,
    samples           bigint NOT NULL CHECK (samples >= 0),
    seconds           double precision NOT NULL CHECK (seconds >= 0)
) PARTITION BY RANGE (recorded_at);

COMMENT ON TABLE statement_wait_profiles IS
  'Active session history per interval: the samples in which a statement (query_id; NULL when the source '
  'could not tell, PostgreSQL 13 without pg_wait_sampling or work outside statements) was seen in a wait '
  'event; wait_event_type and wait_event CPU: running, waiting on nothing. seconds = samples times the '
  'sampling period (an estimate of session time). recorded_at is the end of the interval.';

CREATE INDEX statement_wait_profiles_target_time ON statement_wait_profiles (target, recorded_at);
CREATE INDEX statement_wait_profiles_query_time ON statement_wait_profiles (query_id, recorded_at);

CREATE TABLE statement_plans (
    target       text NOT NULL,
    datname      text NOT NULL DEFAULT '',
    query_id     varchar(64) NOT NULL,
    plan_hash    varchar(16) NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    total_cost   double precision NOT NULL,
    method       text NOT NULL CHECK (method IN ('generic_plan', 'prepared_generic')),
    plan         jsonb NOT NULL,
    PRIMARY KEY (target, datname, query_id, plan_hash)
);

COMMENT ON TABLE statement_plans IS
  'Generic plans of statements (EXPLAIN (FORMAT JSON, VERBOSE), never ANALYZE), one row per distinct plan '
  'shape (plan_hash: node types, join order, relations, indexes; not estimates). first_seen and last_seen '
  'bound the refreshes that found it; a statement whose newest plan has another hash changed plan.';

CREATE INDEX statement_plans_query_seen ON statement_plans (query_id, last_seen);

CREATE TABLE index_advice (
    target                   text NOT NULL,
    datname                  text NOT NULL DEFAULT '',
    schema_name              text NOT NULL,
    table_name               text NOT NULL,
    columns                  text[] NOT NULL,
    sql                      text NOT NULL,
    query_ids                text[] NOT NULL,
    cost_before              double precision NOT NULL,
    cost_after               double precision,
    verified                 text NOT NULL CHECK (verified IN ('hypopg', 'heuristic')),
    status                   text NOT NULL CHECK (status IN ('open', 'applied')),
    writes_per_second        double precision,
    note                     text NOT NULL DEFAULT '',
    first_seen               timestamptz NOT NULL,
    last_seen                timestamptz NOT NULL,
    applied_at               timestamptz,
    observed_mean_ms_before  numeric(15,3),
    observed_mean_ms_after   numeric(15,3),
    PRIMARY KEY (target, datname, schema_name, table_name, columns)
);

COMMENT ON TABLE index_advice IS
  'Index advice taken from the plans: cost_before and cost_after are the summed planner costs of the '
  'statements (query_ids) without and with the index (with a hypothetical index when verified = hypopg; '
  'cost_after NULL when heuristic). status applied: a valid index starting with these columns exists '
  '(since applied_at); observed_mean_ms_* are the statements'' mean times before and after it.';
