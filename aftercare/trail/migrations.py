"""Versioned schema migrations for the audit database: an ordered list and a version table.

Why not alembic: the audit schema is three tables and a trigger, migrated by the service
itself when it opens the store (worker, starter and auditor CLI alike), never by an operator
running a separate tool. An ordered list of functions plus a ``schema_version`` table gives
the same guarantees (each step applied once, in order, recorded with when) without an
alembic environment, a config file and a second place the tables are described.

Rules for a new migration: append it, never edit a released one. Migration 1 builds the
tables from ``schema``; once a later migration alters a table, copy that table's
version-1 shape into migration 1 first, so a fresh database still replays history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from aftercare.trail.schema import (
    APPEND_ONLY_TABLES,
    READS_ONLY,
    RECIPIENT_MAX_LENGTH,
    UtcDateTime,
    access_log,
    audit_checkpoints,
    console_sessions,
    contact_views,
    deliveries,
    followup_views,
    inbound_webhooks,
    metadata,
    schema_version,
    send_attempts,
    sign_in_challenges,
    staff_notes,
    used_links,
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[sa.Connection], None]


def _audit_entries_version_1() -> sa.Table:
    """audit_entries as migration 1 created it; migration 4 widened two columns."""
    return sa.Table(
        "audit_entries",
        sa.MetaData(),
        sa.Column("workflow_id", sa.String(200), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("step", sa.String(80), nullable=False),
        sa.Column("channel", sa.String(40)),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("recipient", sa.String(80)),
        sa.Column("provider_message_id", sa.String(200)),
        sa.Column("outcome", sa.String(200)),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Index("audit_entries_by_time", "at"),
        sa.Index("audit_entries_by_step", "step"),
    )


def _create_tables(conn: sa.Connection) -> None:
    _audit_entries_version_1().create(conn)
    metadata.create_all(conn, tables=[deliveries, access_log])


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


def _widen_recipient_and_outcome(conn: sa.Connection) -> None:
    """A staff recipient is staff:{id} (86 characters at most) and an outcome free text (a
    cancellation quotes the staff member's reason): on PostgreSQL both overflowed, and the
    write that closes a follow-up failed on every retry. SQLite does not enforce lengths."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "ALTER TABLE audit_entries "
            f"ALTER COLUMN recipient TYPE varchar({RECIPIENT_MAX_LENGTH}), "
            "ALTER COLUMN outcome TYPE text"
        )


def _create_send_attempts(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[send_attempts])


def _create_audit_checkpoints(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[audit_checkpoints])
    _refuse_changes_to(conn, audit_checkpoints.name)


def _create_staff_notes(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[staff_notes])
    _refuse_changes_to(conn, staff_notes.name)


def _create_inbound_webhooks(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[inbound_webhooks])


def _create_followup_views(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[followup_views])


def _create_console_sign_in(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[sign_in_challenges, console_sessions, contact_views])


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "audit entries, deliveries and access log", _create_tables),
    Migration(2, "refuse UPDATE and DELETE on append-only tables", _refuse_updates_and_deletes),
    Migration(3, "one-click links already used", _create_used_links),
    Migration(4, "audit entries hold the longest recipient and outcome the models allow",
              _widen_recipient_and_outcome),
    Migration(5, "send attempts whose outcome a retry must ask the provider about",
              _create_send_attempts),
    Migration(6, "Twilio webhooks kept until Temporal has them", _create_inbound_webhooks),
    Migration(7, "signed checkpoints of each chain's head, append-only",
              _create_audit_checkpoints),
    Migration(8, "staff free text, sealed, append-only", _create_staff_notes),
    Migration(9, "what people read about each follow-up, kept with its trail",
              _create_followup_views),
    Migration(10, "console sign-in challenges, sessions and contact views",
              _create_console_sign_in),
)


async def migrate(engine: AsyncEngine) -> int:
    """Bring the database up to the newest version; returns that version.

    A database already up to date is only read: a worker starting while another process
    holds the write lock (a backup, a burst of writes) does not wait for it. Each migration
    and its ``schema_version`` row commit together. When two processes open a new database
    at once, the loser's transaction fails and it re-reads the version.
    """
    found = await _current_version(engine)
    if found > LATEST_VERSION:
        raise RuntimeError(
            f"the audit database is at schema version {found}, newer than this code's "
            f"{LATEST_VERSION}: upgrade aftercare before opening it"
        )
    if found == LATEST_VERSION:
        return found
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: metadata.create_all(sync, tables=[schema_version]))
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
    async with engine.execution_options(**READS_ONLY).connect() as conn:
        if not await conn.run_sync(lambda sync: sa.inspect(sync).has_table("schema_version")):
            return 0
        version = await conn.scalar(sa.select(sa.func.max(schema_version.c.version)))
    return version or 0


LATEST_VERSION = MIGRATIONS[-1].version
