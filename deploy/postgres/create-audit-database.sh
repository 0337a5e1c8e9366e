#!/bin/sh
# Runs once, when PostgreSQL initialises an empty data volume: Aftercare's audit trail gets
# a database and a role of its own, apart from Temporal's.
set -eu
: "${AUDIT_DB_PASSWORD:?set AUDIT_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v password="$AUDIT_DB_PASSWORD" <<'SQL'
CREATE ROLE aftercare LOGIN PASSWORD :'password';
CREATE DATABASE aftercare_audit OWNER aftercare;
SQL
