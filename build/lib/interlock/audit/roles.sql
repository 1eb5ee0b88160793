-- Interlock's application role for PostgreSQL: it may read and append audit events, never
-- change or remove them, so a compromised worker cannot rewrite history.
--
-- Run as a superuser (or the owner of audit_events) with search_path set to the schema that
-- holds the table, after the migrations ran (`interlock` migrates on first use):
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -f interlock/audit/roles.sql
-- then give the role a password (ALTER ROLE interlock_app PASSWORD ...) and point
-- INTERLOCK_DATABASE_URL at it.
--
-- There is no sequence to grant: each row's seq is the previous seq + 1, assigned under the
-- append lock (pg_advisory_xact_lock, which every role may take), so that a gap in seq can
-- only mean a deleted row.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'interlock_app') THEN
        CREATE ROLE interlock_app LOGIN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO interlock_app', current_schema());
END
$$;

REVOKE ALL ON audit_events FROM interlock_app;
GRANT SELECT, INSERT ON audit_events TO interlock_app;
-- The store's copies of the signed checkpoints: appended with the rows they vouch for.
REVOKE ALL ON audit_checkpoints FROM interlock_app;
GRANT SELECT, INSERT ON audit_checkpoints TO interlock_app;
-- Opening the store checks the schema version; it is already at head, so nothing is created.
REVOKE ALL ON alembic_version FROM interlock_app;
GRANT SELECT ON alembic_version TO interlock_app;
-- The baseline (interlock baseline import) is added to, never changed.
REVOKE ALL ON baseline_incidents FROM interlock_app;
GRANT SELECT, INSERT ON baseline_incidents TO interlock_app;
