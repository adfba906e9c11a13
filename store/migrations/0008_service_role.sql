-- The service's own database role, least privilege: it reads and writes the product's tables, inserts
-- into audit_log but can never change or delete an audit row, and cannot touch the schema, the road
-- network, the official ceilings or the API keys' definitions. Migrations and the ingest CLI run as the
-- database owner; the API connects as fuel_app (config: FUEL_SERVICE_DB_ROLE / FUEL_SERVICE_DATABASE_URL).
-- Roles are cluster-wide, so several databases (tests) may race to create it: the race is harmless.
DO $$
BEGIN
    CREATE ROLE fuel_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO fuel_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO fuel_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO fuel_app;
-- tables created by later migrations (run by the same owner) get the same rights
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO fuel_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO fuel_app;

-- read-only for the service
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations, price_ceilings, road_edges, regions_loaded,
    spatial_ref_sys FROM fuel_app;
REVOKE INSERT, DELETE, TRUNCATE ON api_keys FROM fuel_app;
REVOKE UPDATE ON api_keys FROM fuel_app;
GRANT UPDATE (last_used_at) ON api_keys TO fuel_app;
-- the audit log is append-only for the service
REVOKE SELECT, UPDATE, DELETE, TRUNCATE ON audit_log FROM fuel_app;
GRANT INSERT ON audit_log TO fuel_app;
