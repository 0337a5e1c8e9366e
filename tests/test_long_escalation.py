"""An escalation nobody acknowledges pages on, round after round, for as long as it takes.
Its history must not grow past what Temporal keeps: when Temporal suggests it, the
follow-up hands on to a new run of itself (same workflow id), and nothing is lost on the
way: the pages go on, the page's code still finds it, the trail is whole and replays.

A dev server of its own suggests continue-as-new after 150 events (Temporal's default is
4,096), and the escalation runs at seconds timings in real time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from aftercare.temporal.codec import data_converter
from aftercare.trail.replay import replay_and_compare
from aftercare.trail.verification import first_broken_link
from tests.fixtures.temporal import SUGGEST_CONTINUE_AS_NEW_AFTER, early_hand_on_server
from tests.followup_harness import (
    ON_CALL_PHONE,
    SECONDS_ESCALATION,
    FollowUpHarness,
    harness,
    make_event,
)
from workflows.followup import DepartureFollowUp
from workflows.models import Acknowledge, ClientReply, Resolve


@pytest.fixture
async def short_histories(
    worker_settings, sms_outbox, mailbox, booking_sink,
) -> AsyncIterator[FollowUpHarness]:
    async with (early_hand_on_server(worker_settings) as env,
                harness(env, worker_settings, sms_outbox, mailbox, booking_sink) as followups):
        yield followups


async def test_an_unacknowledged_escalation_hands_on_to_a_new_run_and_keeps_paging(
    short_histories: FollowUpHarness,
):
    followups = short_histories
    client = followups.client
    handle = await followups.start(
        make_event("imminent"), escalation=SECONDS_ESCALATION, listen_after_close="PT1S",
        reschedule={"slots": [{"after": "P1D", "at": "10:00"}], "offer_window": "PT1S"})
    first_run = (await handle.describe()).run_id

    status = await followups.until(handle, lambda s: "continued" in [e.step for e in s.trail],
                                   "the follow-up handed on to a new run", timeout=120)
    latest = client.get_workflow_handle_for(DepartureFollowUp.run, handle.id)
    assert (await latest.describe()).run_id != first_run
    code = status.escalation.code
    pages_before = len(followups.texts_to(ON_CALL_PHONE))

    # The new run pages on, with the same code, and the code still finds the follow-up.
    await followups.until(latest, lambda s: len(followups.texts_to(ON_CALL_PHONE)) > pages_before,
                          "the on-call paged again by the new run", timeout=30)
    assert all(code in text for text in followups.texts_to(ON_CALL_PHONE))
    found = await client.count_workflows(
        f'AftercareAckCode = "{code}" AND ExecutionStatus = "Running"')
    assert found.count == 1

    await latest.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id="t-oncall"))
    await latest.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    outcome = await asyncio.wait_for(latest.result(), 60)
    assert outcome.escalation.acknowledged_by == "t-oncall"
    assert outcome.escalation.code == code

    steps = [entry.step for entry in outcome.trail]
    assert steps[0] == "received" and steps.count("escalation_started") == 1
    assert "continued" in steps and steps[-1] == "closed"
    assert [entry.seq for entry in outcome.trail] == list(range(1, len(outcome.trail) + 1))
    stored = await followups.store.entries(handle.id)
    assert first_broken_link(stored) is None
    assert [e.hash for e in stored] == [e.hash for e in outcome.trail], "one chain, whole"

    converter = data_converter(followups.settings)
    for run_id in (first_run, None):
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        assert len(history.events) < 4 * SUGGEST_CONTINUE_AS_NEW_AFTER
        report = await replay_and_compare(history, stored, converter, [DepartureFollowUp])
        assert report.discrepancies == [], run_id


async def test_a_crisis_text_as_the_escalation_hands_on_pages_at_once_and_waits_for_an_ack(
    short_histories: FollowUpHarness,
):
    """The text lands when Temporal has suggested a new run and the follow-up waits for a
    quiet moment to hand on: it is acted on in the task it arrives in, in whichever run
    holds it then, and nothing completes until staff have answered the page."""
    followups = short_histories
    client = followups.client
    handle = await followups.start(
        make_event("imminent"), escalation=SECONDS_ESCALATION, listen_after_close="PT1S",
        reschedule={"slots": [{"after": "P1D", "at": "10:00"}], "offer_window": "PT1S"})
    first_run = client.get_workflow_handle(handle.id, run_id=(await handle.describe()).run_id)
    while len((await first_run.fetch_history()).events) < SUGGEST_CONTINUE_AS_NEW_AFTER:
        await asyncio.sleep(0.1)
    pages_before = len(followups.texts_to(ON_CALL_PHONE))

    await handle.signal(DepartureFollowUp.client_reply,
                        ClientReply(text="i took all my pills", channel="sms"))

    status = await followups.until(
        handle, lambda s: "escalation_raised" in [e.step for e in s.trail],
        "the crisis raised the escalation", timeout=30)
    assert status.escalation.acknowledged_by is None
    await followups.until(handle, lambda s: len(followups.texts_to(ON_CALL_PHONE)) > pages_before,
                          "the on-call paged about the crisis", timeout=30)
    # Acted on in the task the text arrived in: that task already started a send.
    history = await client.get_workflow_handle(handle.id).fetch_history()
    if not _signal_in(history):
        history = await first_run.fetch_history()
    assert _first_task_after_signal_sends(history), "the page waited for a later task"

    await asyncio.sleep(3)  # pages repeat every 2 s; nothing closes without staff
    assert (await client.get_workflow_handle(handle.id).describe()).status.name == "RUNNING"
    latest = client.get_workflow_handle_for(DepartureFollowUp.run, handle.id)
    await latest.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id="t-oncall"))
    await latest.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    outcome = await asyncio.wait_for(latest.result(), 60)

    raised = [e for e in outcome.trail if e.step == "escalation_raised"]
    assert [e.outcome for e in raised] == ["crisis words in a reply"]
    assert outcome.trail[-1].step == "closed"
    stored = await followups.store.entries(handle.id)
    assert [e.hash for e in stored] == [e.hash for e in outcome.trail]
    converter = data_converter(followups.settings)
    for run_id in (first_run.run_id, None):
        run = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        report = await replay_and_compare(run, stored, converter, [DepartureFollowUp])
        assert report.discrepancies == [], run_id


def _signal_in(history) -> bool:  # noqa: ANN001
    return any(e.HasField("workflow_execution_signaled_event_attributes") for e in history.events)


def _first_task_after_signal_sends(history) -> bool:  # noqa: ANN001
    """The commands of the first workflow task completed after the text include a send."""
    events = list(history.events)
    signalled = next(i for i, e in enumerate(events)
                     if e.HasField("workflow_execution_signaled_event_attributes"))
    completed = next(i for i in range(signalled, len(events))
                     if events[i].HasField("workflow_task_completed_event_attributes"))
    sends = {"send_sms", "send_email"}
    for event in events[completed + 1:]:
        if event.HasField("workflow_task_scheduled_event_attributes"):
            break
        if (event.HasField("activity_task_scheduled_event_attributes")
                and event.activity_task_scheduled_event_attributes.activity_type.name in sends):
            return True
    return False
