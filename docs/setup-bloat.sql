-- pgperf: bloat estimates for the least-privilege monitoring role.
--
-- pgperf estimates table and index bloat from the planner statistics (collectors.bloat):
-- the average width and the share of NULLs of every column. pg_stats shows a role only
-- the columns it may SELECT, and the role of docs/setup-role.sql (pg_monitor) may read no
-- table, so it sees no statistics and pgperf estimates nothing
-- (pgperf_bloat_unestimated counts the tables and indexes left out).
--
-- This script gives the role those figures without any access to the data: a function
-- that returns, for every column's statistics, its width, NULL fraction and number of
-- distinct values — sizes and counts, no values (no most common values, no histogram
-- bounds). It runs as the superuser who creates it (SECURITY DEFINER, with a fixed
-- search_path), and only pgperf may execute it.
--
-- Run it after docs/setup-role.sql, as a superuser, in every database whose bloat pgperf
-- should estimate (statistics are per database):
--
--     psql -d DBNAME -v ON_ERROR_STOP=1 -f docs/setup-bloat.sql
--
-- It can be run again at any time. Without it, a superuser role, or SELECT on the tables,
-- gives the estimates too.

CREATE SCHEMA IF NOT EXISTS pgperf AUTHORIZATION pgperf;

-- Dropped and created rather than replaced: a function of that name created by anyone
-- else keeps its owner through CREATE OR REPLACE, and would not run as the superuser.
DROP FUNCTION IF EXISTS pgperf.column_stats();
CREATE FUNCTION pgperf.column_stats()
RETURNS TABLE (schemaname name, tablename name, attname name, inherited boolean,
               null_frac real, avg_width integer, n_distinct real)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT schemaname, tablename, attname, inherited, null_frac, avg_width, n_distinct
    FROM pg_catalog.pg_stats
$$;

REVOKE ALL ON FUNCTION pgperf.column_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgperf.column_stats() TO pgperf;
