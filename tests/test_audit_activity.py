import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.audit import AUDIT_CONFLICT, AuditActivities
from tests.trails import new_workflow_id, sealed_trail
from workflows.models import AuditBatch
from workflows.trail import seal


async def test_each_batch_lands_in_the_store_once(sqlite_store):
    activities = AuditActivities(sqlite_store)
    workflow_id = new_workflow_id()
    trail = sealed_trail(workflow_id)
    env = ActivityEnvironment()

    await env.run(activities.append_audit_entries, AuditBatch(entries=trail[:2]))
    await env.run(activities.append_audit_entries, AuditBatch(entries=trail[:2]))
    await env.run(activities.append_audit_entries, AuditBatch(entries=trail[2:]))

    assert await sqlite_store.entries(workflow_id) == trail


async def test_a_conflicting_entry_fails_without_retrying(sqlite_store):
    activities = AuditActivities(sqlite_store)
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
