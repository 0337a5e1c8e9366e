#!/bin/sh
# Creates (or migrates) Temporal's persistence and visibility databases in PostgreSQL.
# Run by the one-shot admin-tools job in docker-compose.yml; safe to run again.
set -eu
: "${POSTGRES_SEEDS:?set POSTGRES_SEEDS}" "${POSTGRES_USER:?set POSTGRES_USER}"
: "${SQL_PASSWORD:?set SQL_PASSWORD}"
SCHEMAS=/etc/temporal/schema/postgresql/v12

sql() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "${DB_PORT:-5432}" \
    -u "$POSTGRES_USER" "$@"
}

for db in temporal temporal_visibility; do
  case $db in
    temporal) versioned=$SCHEMAS/temporal/versioned ;;
    *) versioned=$SCHEMAS/visibility/versioned ;;
  esac
  # A database that exists already is fine; any other problem stops at setup-schema below.
  sql --db "$db" create || echo "database $db exists"
  sql --db "$db" setup-schema -v 0.0
  sql --db "$db" update-schema -d "$versioned"
done
echo "Temporal schemas are up to date"
