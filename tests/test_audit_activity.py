import dataclasses
import io
import json

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import auditor
from activities.audit import AUDIT_CONFLICT, AuditActivities, TrailBatches
from aftercare.settings import Settings
from aftercare.temporal.codec import EncryptionCodec
from tests.trails import new_workflow_id, sealed_trail
from workflows.models import AuditBatch, StaffNote
from workflows.trail import seal


async def test_each_batch_lands_in_the_store_once(sqlite_store, encryption_keys):
    activities = AuditActivities(TrailBatches(sqlite_store, EncryptionCodec(encryption_keys)))
    workflow_id = new_workflow_id()
    trail = sealed_trail(workflow_id)
    env = ActivityEnvironment()

    await env.run(activities.append_audit_entries, AuditBatch(entries=trail[:2]))
    await env.run(activities.append_audit_entries, AuditBatch(entries=trail[:2]))
    await env.run(activities.append_audit_entries, AuditBatch(entries=trail[2:]))

    assert await sqlite_store.entries(workflow_id) == trail


async def test_a_conflicting_entry_fails_without_retrying(sqlite_store, encryption_keys):
    activities = AuditActivities(TrailBatches(sqlite_store, EncryptionCodec(encryption_keys)))
    workflow_id = new_workflow_id()
    [first] = sealed_trail(workflow_id, length=1)
    await sqlite_store.append([first])
    rival = seal(
        workflow_id=workflow_id, seq=1, at=first.at, prev_hash=first.prev_hash, step="other"
    )

    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(
            activities.append_audit_entries, AuditBatch(entries=[rival])
        )

    assert refused.value.type == AUDIT_CONFLICT
    assert refused.value.non_retryable


async def test_a_staff_note_is_kept_sealed_out_of_the_trail_and_readable_by_an_auditor(
    sqlite_store, encryption_keys
):
    activities = AuditActivities(TrailBatches(sqlite_store, EncryptionCodec(encryption_keys)))
    workflow_id = new_workflow_id()
    trail = sealed_trail(workflow_id, length=2)
    cancelled = seal(workflow_id=workflow_id, seq=3, at=trail[-1].at, prev_hash=trail[-1].hash,
                     step="cancelled", actor="staff", recipient="staff:t-12",
                     detail={"reason": "recorded"})
    note = StaffNote(audit_seq=3, kind="cancel_reason", staff_id="t-12",
                     text="Dana called from her sister's, 555-0123")
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=workflow_id)

    await env.run(activities.append_audit_entries, AuditBatch(entries=[*trail, cancelled],
                                                              notes=[note]))
    await env.run(activities.append_audit_entries, AuditBatch(entries=[cancelled], notes=[note]))
    out = io.StringIO()
    code = await auditor.run(["--database-url", sqlite_store.url, "notes", "--workflow",
                              workflow_id], out=out,
                             settings=Settings(encryption_keys=encryption_keys))

    [stored] = await sqlite_store.notes(workflow_id)
    assert b"Dana" not in stored.sealed_text and b"555" not in stored.sealed_text
    assert "Dana" not in str(await sqlite_store.entries(workflow_id))
    assert code == 0
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [{
        "workflow_id": workflow_id, "audit_seq": 3, "kind": "cancel_reason", "staff_id": "t-12",
        "text": "Dana called from her sister's, 555-0123",
        "recorded_at": stored.recorded_at.isoformat()}]
    [*_, record] = await sqlite_store.access_records()
    assert (record.action, record.target) == ("notes", f"staff notes of workflow {workflow_id}")
