"""The audit store: every follow-up's hash-chained trail, the deliveries ledger, the
disclosures made to emergency contacts and the auditors' access log.

One code path for SQLite (the default) and PostgreSQL, over SQLAlchemy Core async. The trail,
the deliveries and the access log are only ever inserted into: there is no update or delete
of them here, and the database refuses both. (A one-click link's claim is given back when
its action failed: that table records what was done, not evidence.)

Disclosures are not a second write: each audit entry with step ``emergency_contact_notified``
*is* the disclosure, read back with ``recipient`` as to whom (a role, never a name or
number), ``detail["why"]`` as why and ``detail["basis"]`` as the legal basis. One write
path means a disclosure can never be recorded without its place in the chain, or the reverse.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from aftercare.logs import get_logger
from aftercare.trail.checkpoints import CLOSE_STEP, Checkpoint, checkpoint_signature
from aftercare.trail.migrations import migrate
from aftercare.trail.schema import (
    READS_ONLY,
    access_log,
    audit_checkpoints,
    audit_entries,
    deliveries,
    followup_views,
    staff_notes,
    used_links,
)
from workflows.models import (
    AuditEntry,
    Delivery,
    FollowUpView,
    Phase,
    StaffNote,
    followup_workflow_id,
)
from workflows.trail import entry_digest

DISCLOSURE_STEP = "emergency_contact_notified"

# How long a call waits for SQLite's write lock, or for a PostgreSQL connection, before it
# fails (and its activity retries): well inside the send activities' time budget.
DATABASE_WAIT_SECONDS = 5.0

log = get_logger("aftercare.store")


class AuditConflictError(Exception):
    """An entry or delivery differs from the one already recorded under the same key."""


class UnsignableTrailError(RuntimeError):
    """The store holds no signing key, so it cannot anchor what it would append."""


class Disclosure(BaseModel):
    workflow_id: str
    at: AwareDatetime
    to_whom: str
    why: str | None
    basis: str | None
    audit_seq: int


class SealedNote(BaseModel):
    workflow_id: str
    audit_seq: int
    kind: str
    staff_id: str
    sealed_text: bytes
    recorded_at: AwareDatetime


class StoredView(BaseModel):
    """A follow-up's view as last stored, its reply for review still sealed."""

    view: FollowUpView
    sealed_reply: bytes | None = None


class AccessRecord(BaseModel):
    actor: str
    action: str
    target: str
    at: AwareDatetime


class AuditStore:
    def __init__(
        self, engine: AsyncEngine, url: str, signing_keys: Mapping[str, str] | None = None
    ) -> None:
        self._engine = engine
        self._reader = engine.execution_options(**READS_ONLY)
        self.url = url
        self._signing_keys = dict(signing_keys or {})

    @classmethod
    async def open(cls, url: str, signing_keys: Mapping[str, str] | None = None) -> AuditStore:
        """Connect to the database at ``url`` and bring its schema up to date.

        ``signing_keys`` (``AFTERCARE_AUDIT_SIGNING_KEYS``, newest first) sign the chain's
        checkpoints: only a store opened with them may append entries."""
        engine = _create_engine(url)
        try:
            await migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, url, signing_keys)

    async def close(self) -> None:
        await self._engine.dispose()

    @property
    def engine(self) -> AsyncEngine:
        """For the stores that share this database (``aftercare.trail.inbox``)."""
        return self._engine

    # --- the trail ------------------------------------------------------------------

    async def append(
        self, entries: Sequence[AuditEntry], view: StoredView | None = None
    ) -> None:
        """Record sealed entries and a signed checkpoint of each chain's new head, and the
        follow-up's view with them, in one transaction. Re-appending an identical entry is a
        no-op (a retried activity); a different entry under an existing (workflow_id, seq) is
        refused. A view older than the one stored is ignored."""
        if not self._signing_keys:
            raise UnsignableTrailError(
                "this audit store was opened without AFTERCARE_AUDIT_SIGNING_KEYS: it cannot "
                "sign the chain's checkpoints, so it may not append"
            )
        for entry in entries:
            if entry_digest(entry) != entry.hash:
                raise AuditConflictError(
                    f"{entry.workflow_id} entry {entry.seq} is not sealed: its hash does not "
                    "match its contents"
                )
        batch = _one_entry_per_seq(entries)
        # A batch is usually all new: insert it and look only at what was there already (a
        # retried activity, a ride and a batch carrying the same entries, a rival).
        async with self._engine.begin() as conn:
            if view is not None:
                await _keep_newest_view(conn, view)
            if not batch:
                return
            inserted = await conn.execute(_statements(conn).new_entries,
                                          [entry.model_dump() for entry in batch.values()])
            already = batch.keys() - {(workflow_id, seq) for workflow_id, seq in inserted}
            if already:
                stored = await _entries_at(conn, already)
                for key in sorted(already):
                    if stored.get(key) != batch[key]:
                        raise _overwrite_refused(batch[key])
            heads = {entry.workflow_id: entry for entry in sorted(entries, key=attrgetter("seq"))}
            for head in heads.values():
                await self._sign_head(conn, head)

    async def _sign_head(self, conn: AsyncConnection, head: AuditEntry) -> None:
        key_id, secret = next(iter(self._signing_keys.items()))
        closed = head.step == CLOSE_STEP
        signature = checkpoint_signature(secret, head.workflow_id, head.seq, head.hash, closed)
        signed = await conn.execute(_statements(conn).new_checkpoint, {
            "workflow_id": head.workflow_id, "seq": head.seq, "hash": head.hash,
            "closed": closed, "signed_at": datetime.now(UTC), "key_id": key_id,
            "signature": signature})
        if not signed.rowcount:
            return  # signed by the batch that stored this head first
        # The same checkpoint in the log: a copy outside the database to compare against.
        log.info("audit checkpoint", workflow_id=head.workflow_id, seq=head.seq,
                 hash=head.hash, closed=closed, key_id=key_id, signature=signature)

    async def checkpoints(self, workflow_id: str) -> list[Checkpoint]:
        """One follow-up's signed checkpoints, oldest first: the last is the chain's head."""
        query = (sa.select(audit_checkpoints)
                 .where(audit_checkpoints.c.workflow_id == workflow_id)
                 .order_by(audit_checkpoints.c.seq))
        async with self._reader.connect() as conn:
            return [Checkpoint.model_validate(row._asdict()) for row in await conn.execute(query)]

    # --- what people read ------------------------------------------------------------

    async def view(self, workflow_id: str) -> StoredView | None:
        query = sa.select(followup_views).where(followup_views.c.workflow_id == workflow_id)
        async with self._engine.execution_options(**READS_ONLY).connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _row_view(row)

    async def open_views(
        self, clinic_id: str, *, limit: int | None = None, offset: int = 0
    ) -> list[StoredView]:
        """The clinic's follow-ups not yet closed, oldest change first."""
        query = (sa.select(followup_views)
                 .where(followup_views.c.clinic_id == clinic_id, followup_views.c.is_open)
                 .order_by(followup_views.c.updated_at, followup_views.c.workflow_id)
                 .offset(offset).limit(limit))
        async with self._engine.execution_options(**READS_ONLY).connect() as conn:
            return [_row_view(row) for row in await conn.execute(query)]

    async def open_phase_counts(self) -> dict[str, int]:
        """How many follow-ups not yet closed stand in each phase, across every clinic."""
        query = (sa.select(followup_views.c.phase, sa.func.count())
                 .where(followup_views.c.is_open).group_by(followup_views.c.phase))
        async with self._engine.execution_options(**READS_ONLY).connect() as conn:
            return {phase: count for phase, count in await conn.execute(query)}

    async def closed_views(self, clinic_id: str, since: datetime) -> list[StoredView]:
        """The clinic's follow-ups closed since ``since``, newest first."""
        query = (sa.select(followup_views)
                 .where(followup_views.c.clinic_id == clinic_id, ~followup_views.c.is_open,
                        followup_views.c.updated_at >= since)
                 .order_by(followup_views.c.updated_at.desc()))
        async with self._engine.execution_options(**READS_ONLY).connect() as conn:
            return [_row_view(row) for row in await conn.execute(query)]

    async def escalations_started(self, workflow_ids: Sequence[str]) -> dict[str, datetime]:
        """When each of these follow-ups' newest escalation started (its trail's newest
        ``escalation_started``), for those that have one stored: one query for a board page."""
        query = (sa.select(audit_entries.c.workflow_id, sa.func.max(audit_entries.c.at))
                 .where(audit_entries.c.workflow_id.in_(workflow_ids),
                        audit_entries.c.step == "escalation_started")
                 .group_by(audit_entries.c.workflow_id))
        async with self._reader.connect() as conn:
            return {workflow_id: at for workflow_id, at in await conn.execute(query)}

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
        """Every follow-up that has a trail, or a checkpoint (its entries may be gone)."""
        query = sa.union(sa.select(audit_entries.c.workflow_id),
                         sa.select(audit_checkpoints.c.workflow_id)).order_by("workflow_id")
        async with self._reader.connect() as conn:
            return list(await conn.scalars(query))

    async def _select_entries(self, query: sa.Select) -> list[AuditEntry]:
        async with self._reader.connect() as conn:
            rows = await conn.execute(query)
            return [_row_entry(row) for row in rows]

    # --- disclosures ------------------------------------------------------------------

    async def disclosures(
        self,
        workflow_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        clinic_id: str | None = None,
    ) -> list[Disclosure]:
        """Notices given to emergency contacts, read from the trail (see module docstring)."""
        query = sa.select(audit_entries).where(audit_entries.c.step == DISCLOSURE_STEP)
        if clinic_id is not None:
            query = query.where(_of_clinic(clinic_id))
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
        async with self._reader.connect() as conn:
            return await _delivery_of(conn, workflow_id, message_key)

    async def record_delivery(self, workflow_id: str, message_key: str, delivery: Delivery) -> None:
        """Remember what the provider accepted. Recording the same delivery again is a no-op;
        a different provider message id for the same key is refused (it was sent twice)."""
        async with self._engine.begin() as conn:
            recorded = await conn.execute(_statements(conn).new_delivery, {
                "workflow_id": workflow_id, "message_key": message_key,
                "channel": delivery.channel.value,
                "provider_message_id": delivery.provider_message_id,
                "recorded_at": datetime.now(UTC)})
            if recorded.rowcount:
                return
            existing = await _delivery_of(conn, workflow_id, message_key)
            assert existing is not None, "a conflicting row is never deleted"
            if (existing.channel, existing.provider_message_id) != (
                delivery.channel, delivery.provider_message_id,
            ):
                raise AuditConflictError(
                    f"{workflow_id} message {message_key!r} was already delivered as "
                    f"{existing.provider_message_id}, now reported as "
                    f"{delivery.provider_message_id}"
                )

    async def provider_message_ids(self, workflow_id: str) -> set[str]:
        """Every provider message id recorded for the follow-up, under any message key."""
        query = sa.select(deliveries.c.provider_message_id).where(
            deliveries.c.workflow_id == workflow_id
        )
        async with self._reader.connect() as conn:
            return set(await conn.scalars(query))

    # --- staff free text, sealed ---------------------------------------------------------

    async def record_note(
        self, workflow_id: str, note: StaffNote, sealed_text: bytes, at: datetime
    ) -> None:
        """Keep a sealed staff note; a retried write of the same note is a no-op."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(staff_notes.insert().values(
                    workflow_id=workflow_id, audit_seq=note.audit_seq, kind=note.kind,
                    staff_id=note.staff_id, sealed_text=sealed_text, recorded_at=at))
        except IntegrityError:
            return

    async def notes(self, workflow_id: str) -> list[SealedNote]:
        query = (sa.select(staff_notes).where(staff_notes.c.workflow_id == workflow_id)
                 .order_by(staff_notes.c.audit_seq, staff_notes.c.kind))
        async with self._reader.connect() as conn:
            return [SealedNote.model_validate(row._asdict()) for row in await conn.execute(query)]

    # --- the auditors' access log -------------------------------------------------------

    async def connected_identity(self) -> str:
        """Who this connection is, as the database knows it: the PostgreSQL role it logged in
        as, or for a SQLite file the operating-system account running this process (not
        ``$USER``, which anyone can set). The access log records this, not a name the
        caller offers."""
        if self._engine.dialect.name == "postgresql":
            async with self._reader.connect() as conn:
                return f"postgresql:{await conn.scalar(sa.text('SELECT current_user'))}"
        return f"os:{pwd.getpwuid(os.getuid()).pw_name}"

    async def record_access(self, actor: str, action: str, target: str, at: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                access_log.insert().values(actor=actor, action=action, target=target, at=at)
            )

    async def access_records(self) -> list[AccessRecord]:
        query = sa.select(access_log).order_by(access_log.c.id)
        async with self._reader.connect() as conn:
            rows = await conn.execute(query)
            return [
                AccessRecord(actor=row.actor, action=row.action, target=row.target, at=row.at)
                for row in rows
            ]

    # --- one-click email links -----------------------------------------------------------

    async def link_used(self, jti: str) -> bool:
        async with self._reader.connect() as conn:
            found = await conn.scalar(sa.select(used_links.c.jti).where(used_links.c.jti == jti))
        return found is not None

    async def use_link(self, jti: str, workflow_id: str, action: str, at: datetime) -> bool:
        """Claim a link before acting on it, so two clicks cannot both act; False when it
        was used (or is being used) already. ``release_link`` gives it back when the
        action failed."""
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

    async def release_link(self, jti: str) -> None:
        """The claimed link's action did not happen: the link works again."""
        async with self._engine.begin() as conn:
            await conn.execute(used_links.delete().where(used_links.c.jti == jti))


def _create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": DATABASE_WAIT_SECONDS})
        _make_sqlite_transactional(engine)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_timeout=DATABASE_WAIT_SECONDS,
                               connect_args={"timeout": DATABASE_WAIT_SECONDS})


def _make_sqlite_transactional(engine: AsyncEngine) -> None:
    """Python's sqlite3 only opens a transaction before DML, so a migration's DDL would
    commit on its own; take over BEGIN so each transaction covers all its statements.
    Writes begin IMMEDIATE (a read-then-write transaction cannot deadlock on upgrading its
    lock); reads begin deferred and never wait for, or hold up, a writer."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets the auditor read while a worker writes.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        reads_only = READS_ONLY.items() <= conn.get_execution_options().items()
        conn.exec_driver_sql("BEGIN" if reads_only else "BEGIN IMMEDIATE")


def _of_clinic(clinic_id: str) -> sa.ColumnElement[bool]:
    """Exactly this clinic's follow-ups: ``followup_workflow_id`` doubles the clinic id's
    dashes, so its part ends at the first single ``-``. ``followup-riverside-`` also begins
    ``followup-riverside--east-…`` (clinic ``riverside-east``), which the second test
    excludes: a session id never starts with ``-``."""
    prefix = followup_workflow_id(clinic_id, "")
    # Escape LIKE's wildcards in the id.
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    column = audit_entries.c.workflow_id
    return column.like(f"{escaped}%", escape="\\") & ~column.like(f"{escaped}-%", escape="\\")


EntryKey = tuple[str, int]


def _one_entry_per_seq(entries: Sequence[AuditEntry]) -> dict[EntryKey, AuditEntry]:
    batch: dict[EntryKey, AuditEntry] = {}
    for entry in entries:
        earlier = batch.setdefault((entry.workflow_id, entry.seq), entry)
        if earlier != entry:
            raise _overwrite_refused(entry)
    return batch


def _overwrite_refused(entry: AuditEntry) -> AuditConflictError:
    return AuditConflictError(
        f"{entry.workflow_id} already has a different entry {entry.seq}: "
        "the trail is append-only, it is never overwritten"
    )


async def _entries_at(
    conn: AsyncConnection, keys: Iterable[EntryKey]
) -> dict[EntryKey, AuditEntry]:
    """The stored entries among ``keys``: one query per follow-up (a batch has one)."""
    seqs_of: dict[str, list[int]] = {}
    for workflow_id, seq in keys:
        seqs_of.setdefault(workflow_id, []).append(seq)
    found: dict[EntryKey, AuditEntry] = {}
    for workflow_id, seqs in seqs_of.items():
        query = sa.select(audit_entries).where(
            audit_entries.c.workflow_id == workflow_id, audit_entries.c.seq.in_(seqs))
        for row in await conn.execute(query):
            entry = _row_entry(row)
            found[entry.workflow_id, entry.seq] = entry
    return found


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


async def _keep_newest_view(conn: AsyncConnection, stored: StoredView) -> None:
    """Store the view unless the store has a newer one (a retried or overtaken batch): one
    statement, so two writers at once cannot both find no row and one lose its view."""
    view = stored.view
    assert view.updated_at is not None
    values = {
        "workflow_id": view.workflow_id, "clinic_id": view.clinic_id,
        "phase": view.phase.value,
        "is_open": view.phase is not Phase.CLOSED, "revision": view.revision,
        "updated_at": view.updated_at, "sealed_reply": stored.sealed_reply,
        # The client's own words stay sealed: the readable view never holds them.
        "view": view.model_dump(mode="json", exclude={"reply_for_review"}),
    }
    await conn.execute(_statements(conn).newest_view, values)


@dataclass(frozen=True)
class _Inserts:
    """Inserts that skip a row already there (``ON CONFLICT DO NOTHING``, in each dialect's
    own words): a concurrent writer's row is then read and compared, never an error. The
    view is the one row replaced, and only by a newer revision."""

    new_entries: sa.Insert
    new_checkpoint: sa.Insert
    new_delivery: sa.Insert
    newest_view: sa.Insert

    @classmethod
    def of(cls, insert: Callable[[sa.Table], Any]) -> _Inserts:
        views = insert(followup_views)
        return cls(
            new_entries=insert(audit_entries).on_conflict_do_nothing().returning(
                audit_entries.c.workflow_id, audit_entries.c.seq),
            new_checkpoint=insert(audit_checkpoints).on_conflict_do_nothing(),
            new_delivery=insert(deliveries).on_conflict_do_nothing(),
            newest_view=views.on_conflict_do_update(
                index_elements=[followup_views.c.workflow_id],
                set_={column.name: views.excluded[column.name]
                      for column in followup_views.columns if not column.primary_key},
                where=followup_views.c.revision < views.excluded.revision),
        )


_INSERTS = {"sqlite": _Inserts.of(sqlite.insert), "postgresql": _Inserts.of(postgresql.insert)}


def _statements(conn: AsyncConnection) -> _Inserts:
    return _INSERTS[conn.dialect.name]


def _row_view(row: sa.Row) -> StoredView:
    return StoredView(view=FollowUpView.model_validate(row.view), sealed_reply=row.sealed_reply)


def _row_entry(row: sa.Row) -> AuditEntry:
    return AuditEntry.model_validate(row._asdict())
