-- pgperf: a read-only role for Grafana's PostgreSQL datasource (the SQL panels of the
-- dashboards: query texts, alert history, reports).
--
-- Run as a superuser, connected to the database that holds pgperf's sample store (by
-- default the monitored database, schema pgperf), after docs/setup-role.sql when pgperf
-- runs as the role that script creates (so that the store's schema is that role's):
--
--     psql -d postgres -v ON_ERROR_STOP=1 -f docs/setup-role.sql
--     psql -d postgres -v ON_ERROR_STOP=1 -f docs/setup-reader.sql
--
-- then give the role a password (psql asks for it and sends it hashed):
--
--     \password pgperf_reader
--
-- and use it in Grafana (grafana/provisioning/datasources/pgperf.yml reads it from
-- PGPERF_READER_PASSWORD). The script can be run again at any time: it changes nothing that
-- is already in place, and grants SELECT on tables created since.
--
-- Another store schema (store.schema)? Replace every "pgperf" below that names the schema,
-- in the GRANTs, the search_path and the two DO blocks.

-- The role: it can log in and read, nothing more; a few connections are plenty for
-- Grafana (the datasource keeps a small pool).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgperf_reader') THEN
        CREATE ROLE pgperf_reader LOGIN;
    END IF;
END
$$;
ALTER ROLE pgperf_reader WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 10;

-- Every transaction of the role is read-only, whatever the client asks: Grafana's
-- PostgreSQL datasource runs whatever SQL a dashboard editor types. The privileges below
-- are the real barrier; this one also stops functions with side effects.
ALTER ROLE pgperf_reader SET default_transaction_read_only = on;
ALTER ROLE pgperf_reader SET statement_timeout = '30s';

-- The dashboards name the store's tables without a schema: the schema comes from the
-- role's search_path, so a store in another schema needs only this line changed.
-- pg_catalog first, as for pgperf's own role (CVE-2018-1058).
ALTER ROLE pgperf_reader SET search_path = pg_catalog, pgperf;

-- The store's schema, created here if neither setup-role.sql nor pgperf did yet: owned by
-- the pgperf role when it exists (as setup-role.sql would create it), else by the role
-- running this script (pgperf running as that superuser).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'pgperf') THEN
        IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgperf') THEN
            CREATE SCHEMA pgperf AUTHORIZATION pgperf;
        ELSE
            CREATE SCHEMA pgperf;
        END IF;
    END IF;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO pgperf_reader', current_database());
END
$$;
GRANT USAGE ON SCHEMA pgperf TO pgperf_reader;

-- The tables that exist now (the four monitoring tables, schema_migrations, and whatever
-- later migrations added) ...
GRANT SELECT ON ALL TABLES IN SCHEMA pgperf TO pgperf_reader;

-- ... and those created later: new migrations and the daily partitions the writer adds
-- (reading through a partitioned table needs the privilege on it only, but a partition
-- read directly needs its own). Default privileges apply to objects created by the role
-- named in FOR ROLE: the schema's owner, the pgperf role, and the role running this
-- script (pgperf run as that superuser, as in a quick docker-compose set-up).
DO $$
DECLARE
    creator text;
BEGIN
    FOR creator IN
        SELECT DISTINCT r.rolname
          FROM pg_catalog.pg_roles r
         WHERE r.rolname IN ('pgperf', current_user)
            OR r.oid = (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = 'pgperf')
    LOOP
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA pgperf GRANT SELECT ON TABLES TO pgperf_reader',
                       creator);
    END LOOP;
END
$$;
