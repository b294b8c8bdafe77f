-- pgperf: a least-privilege monitoring role.
--
-- Run as a superuser, connected to the database pgperf will connect to (its
-- pg_stat_statements and its sample store live there):
--
--     psql -d postgres -v ON_ERROR_STOP=1 -f docs/setup-role.sql
--
-- then give the role a password (psql asks for it and sends it hashed):
--
--     \password pgperf
--
-- and point pgperf at it: --dsn postgresql://pgperf@HOST/postgres (password in ~/.pgpass,
-- PGPASSWORD or the DSN). The script can be run again at any time: it changes nothing
-- that is already in place, and grants CONNECT on databases created since.
--
-- What each collector needs, and why pg_monitor covers it, is in docs/metrics.md
-- ("Why a collector is disabled").

-- The role: it can log in, nothing more. A connection limit is a safety net: with the
-- defaults and one target a pgperf process opens at most 8 connections (2 for sampling,
-- 2 more for visiting other databases, 1 store writer, 2 for the API and reports, 1 while
-- a report reads catalog facts); 10 leaves room for a restart overlapping the old process.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgperf') THEN
        CREATE ROLE pgperf LOGIN;
    END IF;
END
$$;
ALTER ROLE pgperf WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 10;

-- pg_monitor = pg_read_all_settings + pg_read_all_stats + pg_stat_scan_tables, and EXECUTE
-- on pg_ls_waldir() and friends: every session's activity and query text, every
-- statement's statistics, every setting (data_directory for the host collector), database
-- sizes, the WAL directory. It grants no access to table data.
GRANT pg_monitor TO pgperf;

-- CONNECT on every database, for the database-scoped collectors (tables): PUBLIC has it by
-- default, but a database where it was revoked would otherwise be skipped
-- (pgperf_database_visit_success 0).
DO $$
DECLARE
    db text;
BEGIN
    FOR db IN SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate LOOP
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO pgperf', db);
    END LOOP;
END
$$;

-- pg_catalog first: no function or operator in a schema other roles can write to can
-- shadow a built-in one in pgperf's sessions (see CVE-2018-1058). pgperf qualifies
-- everything else it reads.
ALTER ROLE pgperf SET search_path = pg_catalog, pgperf, public;

-- pg_stat_statements must also be in shared_preload_libraries (postgresql.conf, restart).
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

-- The sample store (store.schema, default pgperf) in this database, owned by the role.
CREATE SCHEMA IF NOT EXISTS pgperf AUTHORIZATION pgperf;
