-- Grafana's read-only role for the monitoring tables (placeholder until the Grafana work
-- lands; see grafana/provisioning).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgperf_reader') THEN
        CREATE ROLE pgperf_reader LOGIN;
    END IF;
END
$$;
CREATE SCHEMA IF NOT EXISTS pgperf AUTHORIZATION pgperf;
GRANT USAGE ON SCHEMA pgperf TO pgperf_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA pgperf TO pgperf_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE pgperf IN SCHEMA pgperf GRANT SELECT ON TABLES TO pgperf_reader;
