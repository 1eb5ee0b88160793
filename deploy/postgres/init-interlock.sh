#!/bin/sh
# First start of the PostgreSQL container only (docker-entrypoint-initdb.d): the roles and the
# database. Passwords arrive as environment variables from .env and are quoted by PostgreSQL.
#   temporal       owns the temporal and temporal_visibility databases (auto-setup creates them)
#   interlock_app  the workers' and API's role; its rights come from interlock/audit/roles.sql
#                  and deploy/postgres/grants.sql once the tables exist
#   interlock_anchor  owns interlock_anchor, where workers write the audit trail's signed
#                  checkpoints; interlock_app cannot reach it. (Here one superuser could still
#                  reach both: in production put the anchor on another server, see README.)
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set=temporal_password="$TEMPORAL_DB_PASSWORD" \
    --set=app_password="$INTERLOCK_APP_DB_PASSWORD" \
    --set=anchor_password="$INTERLOCK_ANCHOR_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE temporal LOGIN CREATEDB PASSWORD %L', :'temporal_password') \gexec
SELECT format('CREATE ROLE interlock_app LOGIN PASSWORD %L', :'app_password') \gexec
SELECT format('CREATE ROLE interlock_anchor LOGIN PASSWORD %L', :'anchor_password') \gexec
CREATE DATABASE interlock OWNER postgres;
REVOKE ALL ON DATABASE interlock FROM PUBLIC;
GRANT CONNECT ON DATABASE interlock TO interlock_app;
CREATE DATABASE interlock_anchor OWNER interlock_anchor;
REVOKE ALL ON DATABASE interlock_anchor FROM PUBLIC;
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname interlock <<'SQL'
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
