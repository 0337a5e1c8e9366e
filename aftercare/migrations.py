"""Versioned schema migrations for the audit database: an ordered list and a version table.

Why not alembic: the audit schema is three tables and a trigger, migrated by the service
itself when it opens the store (worker, starter and auditor CLI alike), never by an operator
running a separate tool. An ordered list of functions plus a ``schema_version`` table gives
the same guarantees (each step applied once, in order, recorded with when) without an
alembic environment, a config file and a second place the tables are described.

Rules for a new migration: append it, never edit a released one. Migration 1 builds the
tables from ``audit_schema``; once a later migration alters a table, copy that table's
version-1 shape into migration 1 first, so a fresh database still replays history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from aftercare.audit_schema import (
    APPEND_ONLY_TABLES,
    access_log,
    audit_checkpoints,
    audit_entries,
    deliveries,
    inbound_webhooks,
    metadata,
    schema_version,
    staff_notes,
    used_links,
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[sa.Connection], None]


def _create_tables(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[audit_entries, deliveries, access_log])


def _refuse_updates_and_deletes(conn: sa.Connection) -> None:
    """Append-only below the code too: the database itself refuses UPDATE and DELETE."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP; END $$"
        )
    for table in APPEND_ONLY_TABLES:
        _refuse_changes_to(conn, table)


def _refuse_changes_to(conn: sa.Connection, table: str) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_audit_change()"
        )
        conn.exec_driver_sql(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change()"
        )
    elif conn.dialect.name == "sqlite":
        for operation in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {operation} refused'); END"
            )


def _create_used_links(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[used_links])


def _create_audit_checkpoints(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[audit_checkpoints])
    _refuse_changes_to(conn, audit_checkpoints.name)


def _create_staff_notes(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[staff_notes])
    _refuse_changes_to(conn, staff_notes.name)


def _create_inbound_webhooks(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[inbound_webhooks])


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "audit entries, deliveries and access log", _create_tables),
    Migration(2, "refuse UPDATE and DELETE on append-only tables", _refuse_updates_and_deletes),
    Migration(3, "one-click links already used", _create_used_links),
    Migration(4, "Twilio webhooks kept until Temporal has them", _create_inbound_webhooks),
    Migration(5, "signed checkpoints of each chain's head, append-only",
              _create_audit_checkpoints),
    Migration(6, "staff free text, sealed, append-only", _create_staff_notes),
)


async def migrate(engine: AsyncEngine) -> int:
    """Bring the database up to the newest version; returns that version.

    Each migration and its ``schema_version`` row commit together. When two processes
    open a new database at once, the loser's transaction fails and it re-reads the version.
    """
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: metadata.create_all(sync, tables=[schema_version]))
    found = await _current_version(engine)
    if found > LATEST_VERSION:
        raise RuntimeError(
            f"the audit database is at schema version {found}, newer than this code's "
            f"{LATEST_VERSION}: upgrade aftercare before opening it"
        )
    for migration in MIGRATIONS:
        if await _current_version(engine) >= migration.version:
            continue
        try:
            async with engine.begin() as conn:
                await conn.run_sync(migration.apply)
                await conn.execute(
                    schema_version.insert().values(
                        version=migration.version,
                        description=migration.description,
                        applied_at=datetime.now(UTC),
                    )
                )
        except DBAPIError:
            if await _current_version(engine) < migration.version:
                raise
    return await _current_version(engine)


async def _current_version(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        version = await conn.scalar(sa.select(sa.func.max(schema_version.c.version)))
    return version or 0


LATEST_VERSION = MIGRATIONS[-1].version
