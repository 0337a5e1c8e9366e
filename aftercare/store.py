"""The audit store: every follow-up's hash-chained trail, the deliveries ledger, the
disclosures made to emergency contacts and the auditors' access log.

One code path for SQLite (the default) and PostgreSQL, over SQLAlchemy Core async. The store
only ever inserts: there is no update or delete here, and the database refuses both.

Disclosures are not a second write: each audit entry with step ``emergency_contact_notified``
*is* the disclosure, read back with ``recipient`` as to whom (a role, never a name or
number), ``detail["why"]`` as why and ``detail["basis"]`` as the legal basis. One write
path means a disclosure can never be recorded without its place in the chain, or the reverse.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from aftercare.audit_schema import access_log, audit_entries, deliveries, used_links
from aftercare.migrations import migrate
from workflows.models import AuditEntry, Delivery
from workflows.trail import entry_digest

DISCLOSURE_STEP = "emergency_contact_notified"


class AuditConflictError(Exception):
    """An entry or delivery differs from the one already recorded under the same key."""


class Disclosure(BaseModel):
    workflow_id: str
    at: AwareDatetime
    to_whom: str
    why: str | None
    basis: str | None
    audit_seq: int


class AccessRecord(BaseModel):
    actor: str
    action: str
    target: str
    at: AwareDatetime


class AuditStore:
    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self._engine = engine
        self.url = url

    @classmethod
    async def open(cls, url: str) -> AuditStore:
        """Connect to the database at ``url`` and bring its schema up to date."""
        engine = _create_engine(url)
        try:
            await migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, url)

    async def close(self) -> None:
        await self._engine.dispose()

    # --- the trail ------------------------------------------------------------------

    async def append(self, entries: Sequence[AuditEntry]) -> None:
        """Record sealed entries. Re-appending an identical entry is a no-op (a retried
        activity); a different entry under an existing (workflow_id, seq) is refused."""
        for entry in entries:
            if entry_digest(entry) != entry.hash:
                raise AuditConflictError(
                    f"{entry.workflow_id} entry {entry.seq} is not sealed: its hash does not "
                    "match its contents"
                )
        try:
            await self._append_missing(entries)
        except IntegrityError:
            # Another writer inserted some of these between our read and our insert.
            await self._append_missing(entries)

    async def _append_missing(self, entries: Sequence[AuditEntry]) -> None:
        async with self._engine.begin() as conn:
            for entry in entries:
                existing = await _entry_at(conn, entry.workflow_id, entry.seq)
                if existing is None:
                    await conn.execute(audit_entries.insert().values(entry.model_dump()))
                elif existing != entry:
                    raise AuditConflictError(
                        f"{entry.workflow_id} already has a different entry {entry.seq}: "
                        "the trail is append-only, it is never overwritten"
                    )

    async def entries(self, workflow_id: str) -> list[AuditEntry]:
        """One follow-up's trail, in chain order."""
        query = (
            sa.select(audit_entries)
            .where(audit_entries.c.workflow_id == workflow_id)
            .order_by(audit_entries.c.seq)
        )
        return await self._select_entries(query)

    async def entries_between(
        self, start: datetime, end: datetime, clinic_id: str | None = None
    ) -> list[AuditEntry]:
        """Every entry recorded in [start, end), optionally for one clinic's follow-ups."""
        query = sa.select(audit_entries).where(
            audit_entries.c.at >= start, audit_entries.c.at < end
        )
        if clinic_id is not None:
            query = query.where(_of_clinic(clinic_id))
        query = query.order_by(audit_entries.c.at, audit_entries.c.workflow_id, audit_entries.c.seq)
        return await self._select_entries(query)

    async def workflow_ids(self) -> list[str]:
        """Every follow-up that has a trail."""
        query = sa.select(audit_entries.c.workflow_id).distinct().order_by("workflow_id")
        async with self._engine.connect() as conn:
            return list(await conn.scalars(query))

    async def _select_entries(self, query: sa.Select) -> list[AuditEntry]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(query)
            return [_row_entry(row) for row in rows]

    # --- disclosures ------------------------------------------------------------------

    async def disclosures(
        self,
        workflow_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Disclosure]:
        """Notices given to emergency contacts, read from the trail (see module docstring)."""
        query = sa.select(audit_entries).where(audit_entries.c.step == DISCLOSURE_STEP)
        if workflow_id is not None:
            query = query.where(audit_entries.c.workflow_id == workflow_id)
        if start is not None:
            query = query.where(audit_entries.c.at >= start)
        if end is not None:
            query = query.where(audit_entries.c.at < end)
        query = query.order_by(audit_entries.c.at, audit_entries.c.workflow_id)
        return [
            Disclosure(
                workflow_id=entry.workflow_id,
                at=entry.at,
                to_whom=entry.recipient or "emergency_contact",
                why=entry.detail.get("why"),
                basis=entry.detail.get("basis"),
                audit_seq=entry.seq,
            )
            for entry in await self._select_entries(query)
        ]

    # --- the delivery ledger (activities.delivery_ledger.DeliveryLedger) --------------

    async def find_delivery(self, workflow_id: str, message_key: str) -> Delivery | None:
        async with self._engine.connect() as conn:
            return await _delivery_of(conn, workflow_id, message_key)

    async def record_delivery(self, workflow_id: str, message_key: str, delivery: Delivery) -> None:
        """Remember what the provider accepted. Recording the same delivery again is a no-op;
        a different provider message id for the same key is refused (it was sent twice)."""
        try:
            await self._record_delivery_once(workflow_id, message_key, delivery)
        except IntegrityError:
            await self._record_delivery_once(workflow_id, message_key, delivery)

    async def _record_delivery_once(
        self, workflow_id: str, message_key: str, delivery: Delivery
    ) -> None:
        async with self._engine.begin() as conn:
            existing = await _delivery_of(conn, workflow_id, message_key)
            if existing is None:
                await conn.execute(
                    deliveries.insert().values(
                        workflow_id=workflow_id,
                        message_key=message_key,
                        channel=delivery.channel.value,
                        provider_message_id=delivery.provider_message_id,
                        recorded_at=datetime.now(UTC),
                    )
                )
            elif (existing.channel, existing.provider_message_id) != (
                delivery.channel,
                delivery.provider_message_id,
            ):
                raise AuditConflictError(
                    f"{workflow_id} message {message_key!r} was already delivered as "
                    f"{existing.provider_message_id}, now reported as "
                    f"{delivery.provider_message_id}"
                )

    # --- the auditors' access log -------------------------------------------------------

    async def record_access(self, actor: str, action: str, target: str, at: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                access_log.insert().values(actor=actor, action=action, target=target, at=at)
            )

    async def access_records(self) -> list[AccessRecord]:
        query = sa.select(access_log).order_by(access_log.c.id)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query)
            return [
                AccessRecord(actor=row.actor, action=row.action, target=row.target, at=row.at)
                for row in rows
            ]

    async def access_count(self, actor: str, action: str, since: datetime) -> int:
        """How often ``actor`` did ``action`` from ``since`` on: the staff console's sign-in
        limits count here, so they hold across every API process."""
        query = sa.select(sa.func.count()).select_from(access_log).where(
            access_log.c.actor == actor, access_log.c.action == action, access_log.c.at >= since)
        async with self._engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

    # --- one-click email links -----------------------------------------------------------

    async def link_used(self, jti: str) -> bool:
        async with self._engine.connect() as conn:
            found = await conn.scalar(sa.select(used_links.c.jti).where(used_links.c.jti == jti))
        return found is not None

    async def use_link(self, jti: str, workflow_id: str, action: str, at: datetime) -> bool:
        """Mark a link used before acting on it; False when it was used already."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    used_links.insert().values(
                        jti=jti, workflow_id=workflow_id, action=action, used_at=at
                    )
                )
        except IntegrityError:
            return False
        return True


def _create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _make_sqlite_transactional(engine)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


def _make_sqlite_transactional(engine: AsyncEngine) -> None:
    """Python's sqlite3 only opens a transaction before DML, so a migration's DDL would
    commit on its own; take over BEGIN so each transaction covers all its statements."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets the auditor read while a worker writes.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _of_clinic(clinic_id: str) -> sa.ColumnElement[bool]:
    # Workflow ids are followup-{clinic_id}-{session_id}; escape LIKE's wildcards in the id.
    escaped = clinic_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return audit_entries.c.workflow_id.like(f"followup-{escaped}-%", escape="\\")


async def _entry_at(conn: AsyncConnection, workflow_id: str, seq: int) -> AuditEntry | None:
    query = sa.select(audit_entries).where(
        audit_entries.c.workflow_id == workflow_id, audit_entries.c.seq == seq
    )
    row = (await conn.execute(query)).first()
    return None if row is None else _row_entry(row)


async def _delivery_of(
    conn: AsyncConnection, workflow_id: str, message_key: str
) -> Delivery | None:
    query = sa.select(deliveries.c.channel, deliveries.c.provider_message_id).where(
        deliveries.c.workflow_id == workflow_id, deliveries.c.message_key == message_key
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return Delivery(
        channel=row.channel, provider_message_id=row.provider_message_id, already_sent=True
    )


def _row_entry(row: sa.Row) -> AuditEntry:
    return AuditEntry.model_validate(row._asdict())
