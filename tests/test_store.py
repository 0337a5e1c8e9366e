import asyncio
import io
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from aftercare.temporal.codec import EncryptionCodec
from aftercare.trail.exports import write_jsonl
from aftercare.trail.inbox import CLAIM, WebhookInbox
from aftercare.trail.migrations import LATEST_VERSION
from aftercare.trail.schema import inbound_webhooks
from aftercare.trail.store import AuditConflictError, AuditStore, StoredView
from aftercare.trail.verification import first_broken_link
from tests.fixtures.databases import tamper_with
from tests.fixtures.sinks import AUDIT_SIGNING_KEYS
from tests.trails import STARTED, new_workflow_id, sealed_trail
from workflows.fields import OPAQUE_ID_MAX_LENGTH, PROVIDER_MESSAGE_ID_MAX_LENGTH
from workflows.models import (
    Cancel,
    Channel,
    Delivery,
    FollowUpView,
    Phase,
    RiskLevel,
    followup_workflow_id,
)
from workflows.trail import seal


async def test_appended_trail_reads_back_identical_and_verified(audit_store):
    workflow_id = new_workflow_id()
    trail = sealed_trail(workflow_id)

    await audit_store.append(trail[:2])
    await audit_store.append(trail[2:])

    stored = await audit_store.entries(workflow_id)
    assert stored == trail
    assert [entry.at.utcoffset() for entry in stored] == [timedelta(0)] * len(trail)
    assert stored[4].detail == {"why": "no_reply", "basis": "client consent"}
    assert first_broken_link(stored) is None


async def test_reappending_the_same_entries_changes_nothing(audit_store):
    workflow_id = new_workflow_id()
    trail = sealed_trail(workflow_id)

    await audit_store.append(trail[:3])
    await audit_store.append(trail)
    await audit_store.append(trail)

    assert await audit_store.entries(workflow_id) == trail


async def test_a_different_entry_under_an_existing_seq_is_refused(audit_store):
    workflow_id = new_workflow_id()
    trail = sealed_trail(workflow_id, length=2)
    await audit_store.append(trail)
    rival = seal(
        workflow_id=workflow_id,
        seq=2,
        at=trail[1].at,
        prev_hash=trail[0].hash,
        step="checkin_sent",
        outcome="something else",
    )

    with pytest.raises(AuditConflictError, match="already has a different entry 2"):
        await audit_store.append([rival])

    assert await audit_store.entries(workflow_id) == trail


async def test_one_batch_holding_an_entry_twice_stores_it_once_and_a_rival_nothing(audit_store):
    # A send's ride and the writer's own batch can both hand over the same entries.
    workflow_id = new_workflow_id()
    trail = sealed_trail(workflow_id, length=3)

    await audit_store.append([*trail[:2], trail[1], trail[2]])
    assert await audit_store.entries(workflow_id) == trail

    other_id = new_workflow_id()
    other = sealed_trail(other_id, length=2)
    rival = seal(workflow_id=other_id, seq=2, at=other[1].at, prev_hash=other[0].hash,
                 step="checkin_sent", outcome="something else")
    with pytest.raises(AuditConflictError, match="different entry 2"):
        await audit_store.append([*other, rival])
    assert await audit_store.entries(other_id) == []


async def test_writers_at_once_store_a_batch_once_sign_it_once_and_keep_the_newest_view(
        audit_database_url):
    # Two workers can hold the same batch (a ride that timed out and the writer's own), and
    # two sends can each carry a newer view of one follow-up, their first.
    stores = [await AuditStore.open(audit_database_url, AUDIT_SIGNING_KEYS) for _ in range(3)]
    try:
        workflow_id = new_workflow_id()
        trail = sealed_trail(workflow_id)
        views = [StoredView(view=a_view(workflow_id, revision)) for revision in (1, 3, 2)]

        await asyncio.gather(*(store.append(trail, view)
                               for store, view in zip(stores, views, strict=True)))

        assert await stores[0].entries(workflow_id) == trail
        assert [c.seq for c in await stores[0].checkpoints(workflow_id)] == [len(trail)]
        assert (await stores[0].view(workflow_id)).view.revision == 3
        await stores[1].append(trail, views[2])
        assert (await stores[0].view(workflow_id)).view.revision == 3, "an older view is ignored"
    finally:
        await asyncio.gather(*(store.close() for store in stores))


def a_view(workflow_id: str, revision: int) -> FollowUpView:
    now = datetime.now(UTC)
    return FollowUpView(workflow_id=workflow_id, clinic_id="demo", risk_level=RiskLevel.MODERATE,
                        departed_at=now, phase=Phase.AWAITING_REPLY, channel=Channel.SMS,
                        revision=revision, updated_at=now)


async def test_the_longest_values_the_models_allow_are_stored_whole(audit_store):
    longest_id = "x" * (OPAQUE_ID_MAX_LENGTH - 10) + new_workflow_id()[-10:]
    cancel = Cancel(staff_id="s" * OPAQUE_ID_MAX_LENGTH,
                    reason="r" * Cancel.model_fields["reason"].metadata[-1].max_length)
    workflow_id = followup_workflow_id(longest_id, longest_id)
    entries = []
    for seq, (step, fields) in enumerate([
        ("cancelled", {"recipient": f"staff:{cancel.staff_id}", "outcome": cancel.reason}),
        ("closed", {"outcome": f"cancelled: {cancel.reason}"}),
        ("booking_confirmed", {"outcome": "a clinic's booking id " + "b" * 2000}),
        ("reply_received", {"provider_message_id": "M" * PROVIDER_MESSAGE_ID_MAX_LENGTH}),
    ], start=1):
        entries.append(seal(workflow_id=workflow_id, seq=seq, at=STARTED,
                            prev_hash=entries[-1].hash if entries else "0" * 64, step=step,
                            **fields))

    await audit_store.append(entries)

    assert await audit_store.entries(workflow_id) == entries
    assert len(entries[0].recipient) == 86 and len(entries[1].outcome) == 211


async def test_an_unsealed_entry_is_refused(audit_store):
    entry = sealed_trail(new_workflow_id(), length=1)[0]
    entry.outcome = "changed after sealing"

    with pytest.raises(AuditConflictError, match="not sealed"):
        await audit_store.append([entry])


def _where(seq: int) -> str:
    return f"WHERE workflow_id = :w AND seq = {seq}"


@pytest.mark.parametrize(
    ("statements", "first_break"),
    [
        pytest.param(
            [f"UPDATE audit_entries SET outcome = 'declined' {_where(2)}"],
            (2, "entry 2 was edited: its hash no longer matches"),
            id="edited",
        ),
        pytest.param(
            [f"DELETE FROM audit_entries {_where(3)}"],
            (3, "entry 3 is missing (found seq 4)"),
            id="deleted",
        ),
        pytest.param(
            [
                f"UPDATE audit_entries SET seq = 99 {_where(2)}",
                f"UPDATE audit_entries SET seq = 2 {_where(3)}",
                f"UPDATE audit_entries SET seq = 3 {_where(99)}",
            ],
            (2, "entry 2 was reordered: the entry that follows entry 1 is stored as entry 3"),
            id="reordered",
        ),
    ],
)
async def test_tampered_rows_are_reported_at_the_first_broken_link(
    audit_store, statements, first_break
):
    workflow_id = new_workflow_id()
    await audit_store.append(sealed_trail(workflow_id))

    await tamper_with(audit_store.url, workflow_id, *statements)

    assert first_broken_link(await audit_store.entries(workflow_id)) == first_break


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET outcome = 'declined' WHERE workflow_id = :w",
        "DELETE FROM audit_entries WHERE workflow_id = :w",
    ],
)
async def test_the_database_refuses_updates_and_deletes(audit_store, statement):
    workflow_id = new_workflow_id()
    trail = sealed_trail(workflow_id, length=2)
    await audit_store.append(trail)
    engine = create_async_engine(audit_store.url)
    try:
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(sa.text(statement), {"w": workflow_id})
    finally:
        await engine.dispose()

    assert await audit_store.entries(workflow_id) == trail


async def test_entries_between_selects_a_period_and_a_clinic(audit_store):
    ours, theirs = new_workflow_id("clinic-7"), new_workflow_id("clinic-77")
    await audit_store.append(sealed_trail(ours))
    await audit_store.append(sealed_trail(theirs))

    window = await audit_store.entries_between(
        STARTED + timedelta(minutes=1), STARTED + timedelta(minutes=3), clinic_id="clinic-7"
    )

    assert [(entry.workflow_id, entry.seq) for entry in window] == [(ours, 2), (ours, 3)]


async def test_notice_to_emergency_contact_is_listed_as_a_disclosure(audit_store):
    workflow_id = new_workflow_id()
    await audit_store.append(sealed_trail(workflow_id))

    [disclosure] = await audit_store.disclosures(workflow_id=workflow_id)

    assert disclosure.model_dump() == {
        "workflow_id": workflow_id,
        "at": STARTED + timedelta(minutes=4),
        "to_whom": "emergency_contact",
        "why": "no_reply",
        "basis": "client consent",
        "audit_seq": 5,
    }


async def test_delivery_is_found_once_recorded_and_recorded_once(audit_store):
    workflow_id = new_workflow_id()
    sent = Delivery(channel=Channel.SMS, provider_message_id="SM0001")
    assert await audit_store.find_delivery(workflow_id, "checkin") is None

    await audit_store.record_delivery(workflow_id, "checkin", sent)
    await audit_store.record_delivery(workflow_id, "checkin", sent)

    assert await audit_store.find_delivery(workflow_id, "checkin") == Delivery(
        channel=Channel.SMS, provider_message_id="SM0001", already_sent=True
    )
    with pytest.raises(AuditConflictError, match="already delivered as SM0001"):
        await audit_store.record_delivery(
            workflow_id, "checkin", Delivery(channel=Channel.SMS, provider_message_id="SM0002")
        )


async def test_access_is_logged_in_order(audit_store):
    before = await audit_store.access_records()

    await audit_store.record_access("auditor-1", "export", "workflow x", STARTED)
    await audit_store.record_access("auditor-2", "verify", "all", STARTED)

    after = await audit_store.access_records()
    assert [(r.actor, r.action, r.target, r.at) for r in after[len(before) :]] == [
        ("auditor-1", "export", "workflow x", STARTED),
        ("auditor-2", "verify", "all", STARTED),
    ]


async def test_reopening_a_database_keeps_its_trail_and_schema_version(audit_database_url):
    workflow_id = new_workflow_id()
    first = await AuditStore.open(audit_database_url, AUDIT_SIGNING_KEYS)
    await first.append(sealed_trail(workflow_id))
    await first.close()

    second = await AuditStore.open(audit_database_url)
    try:
        assert await second.entries(workflow_id) == sealed_trail(workflow_id)
    finally:
        await second.close()
    engine = create_async_engine(audit_database_url)
    try:
        async with engine.connect() as conn:
            versions = list(await conn.scalars(sa.text("SELECT version FROM schema_version")))
    finally:
        await engine.dispose()
    assert sorted(versions) == list(range(1, LATEST_VERSION + 1))


async def test_a_database_from_newer_code_is_not_opened(sqlite_url):
    store = await AuditStore.open(sqlite_url)
    await store.close()
    engine = create_async_engine(sqlite_url)
    async with engine.begin() as conn:
        await conn.execute(
            sa.text("INSERT INTO schema_version VALUES (:v, 'from the future', :at)"),
            {"v": LATEST_VERSION + 1, "at": STARTED},
        )
    await engine.dispose()

    with pytest.raises(RuntimeError, match=f"schema version {LATEST_VERSION + 1}, newer"):
        await AuditStore.open(sqlite_url)


async def test_reads_exports_and_a_starting_worker_never_wait_for_a_writer(sqlite_url, tmp_path):
    store = await AuditStore.open(sqlite_url, AUDIT_SIGNING_KEYS)
    workflow_id = new_workflow_id()
    await store.append(sealed_trail(workflow_id))
    sent = Delivery(channel=Channel.SMS, provider_message_id="SM" + "1" * 32)
    await store.record_delivery(workflow_id, "checkin-1", sent)
    # A backup or an auditor's long transaction holds the write lock from another process.
    holder = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO access_log (actor, action, target, at) "
                   "VALUES ('backup', 'copy', 'all', '2026-11-22 00:00:00')")
    try:
        found = await store.find_delivery(workflow_id, "checkin-1")
        exported = io.StringIO()
        write_jsonl(await store.entries_between(STARTED, STARTED + timedelta(days=1)), exported)
        second_worker = await AuditStore.open(sqlite_url)
        await second_worker.close()
        with pytest.raises(DBAPIError, match="locked"):
            await store.record_delivery(workflow_id, "reminder-1", sent)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await store.close()

    assert found == sent.model_copy(update={"already_sent": True})
    assert len(exported.getvalue().splitlines()) == len(sealed_trail(workflow_id))


async def test_the_webhook_inbox_keeps_once_hands_out_once_and_forgets_the_text(
    audit_store, encryption_keys
):
    inbox = WebhookInbox(audit_store, EncryptionCodec(encryption_keys))
    key = f"inbound:SM{uuid.uuid4().hex}"
    request = {"kind": "inbound", "fields": {"From": "+15555550123", "Body": "CALL"}}

    assert await inbox.keep(key, request, STARTED)
    assert not await inbox.keep(key, request, STARTED), "the same MessageSid is a replay"
    assert key not in [kept.message_key for kept in await inbox.claim_waiting(STARTED)], (
        "claimed by the request that kept it")
    await inbox.release(key)
    handed_out = [kept for kept in await inbox.claim_waiting(STARTED) if kept.message_key == key]
    again = [kept for kept in await inbox.claim_waiting(STARTED) if kept.message_key == key]
    later = STARTED + CLAIM + timedelta(seconds=1)
    after_claim_ran_out = [k for k in await inbox.claim_waiting(later) if k.message_key == key]
    await inbox.delivered(key, later)

    assert [kept.request for kept in handed_out] == [request]
    assert again == [], "one handler at a time"
    assert [kept.request for kept in after_claim_ran_out] == [request]
    assert [k for k in await inbox.claim_waiting(later) if k.message_key == key] == []
    async with audit_store.engine.connect() as conn:
        row = (await conn.execute(sa.select(inbound_webhooks).where(
            inbound_webhooks.c.message_key == key))).one()
    assert row.sealed_request is None and row.delivered_at == later


async def test_escalations_started_gives_each_followups_newest_escalation(audit_store):
    twice, never = new_workflow_id(), new_workflow_id()
    entries, prev_hash = [], sealed_trail(twice, length=1)[0].hash
    for seq, minutes in [(2, 5), (3, 9), (4, 30)]:
        step = "escalation_started" if seq != 3 else "acknowledged"
        entry = seal(workflow_id=twice, seq=seq, at=STARTED + timedelta(minutes=minutes),
                     prev_hash=prev_hash, step=step)
        entries.append(entry)
        prev_hash = entry.hash
    await audit_store.append([*sealed_trail(twice, length=1), *entries])
    await audit_store.append(sealed_trail(never))

    started = await audit_store.escalations_started([twice, never, new_workflow_id()])

    assert started == {twice: STARTED + timedelta(minutes=30)}
