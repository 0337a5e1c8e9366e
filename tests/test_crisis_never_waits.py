"""A crisis text pages at once in every phase, and nothing the follow-up is sending holds a
reply back: each test drives a real follow-up to a phase boundary or into a provider
outage, sends the text, and asserts who was reached, with what, and what the trail holds.

"At once" is checked in the history: the page's send is scheduled by the very workflow task
that took the text."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

from aftercare.followups import actions
from tests.followup_harness import (
    BACKUP_EMAIL,
    CLIENT_PHONE,
    CONTACT_PHONE,
    ON_CALL_EMAIL,
    ON_CALL_PHONE,
    FollowUpHarness,
    make_event,
    steps_in_order,
)
from tests.test_followup import checked_in, reply
from worker import running_worker
from workflows.followup import DepartureFollowUp
from workflows.models import (
    Acknowledge,
    Cancel,
    ClientReply,
    DeliveryFailure,
    OutboundMessage,
    Resolve,
)
from workflows.trail import first_break

CRISIS = "I took all my pills, I want to die"
TRANSIENT = 20503  # Twilio's "service unavailable": retried, never a permanent failure

# What a workflow task's completion can put into the history right after it.
COMMAND_EVENTS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_TIMER_CANCELED, EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIME_SKIPPING_TRANSITIONED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED,
}


async def sends_of_the_task_that_took_the_last_text(
    followups: FollowUpHarness, handle: WorkflowHandle,
) -> list[OutboundMessage]:
    """The messages whose sends the workflow task that took the latest client text started."""
    events = list((await handle.fetch_history()).events)
    signaled = max(i for i, e in enumerate(events)
                   if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
                   and e.workflow_execution_signaled_event_attributes.signal_name
                   == "client_reply")
    started = next(i for i in range(signaled, len(events))
                   if events[i].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
    completed = next(i for i in range(started, len(events))
                     if events[i].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    sends = []
    for event in events[completed + 1:]:
        if event.event_type not in COMMAND_EVENTS:
            break
        scheduled = event.activity_task_scheduled_event_attributes
        if scheduled.activity_type.name.startswith("send_"):
            (message,) = await followups.client.data_converter.decode(
                scheduled.input.payloads, [OutboundMessage])
            sends.append(message)
    return sends


def keys(messages: list[OutboundMessage]) -> list[str]:
    return [m.message_key.split("-", 1)[1] for m in messages]


@asynccontextmanager
async def audit_store_locked(followups: FollowUpHarness) -> AsyncIterator[None]:
    """A backup or an auditor's long transaction holds the audit store's write lock. It is
    taken off the event loop: the worker in this process must finish a write under way."""
    holder = sqlite3.connect(make_url(followups.settings.audit_database_url).database,
                             isolation_level=None, timeout=30, check_same_thread=False)
    await asyncio.to_thread(holder.execute, "BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def send_text(handle: WorkflowHandle, text: str, channel: str = "sms") -> None:
    await handle.signal(DepartureFollowUp.client_reply, ClientReply(text=text, channel=channel))


async def still_running(handle: WorkflowHandle) -> bool:
    return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def ack_and_resolve(handle: WorkflowHandle, staff_id: str = "t-oncall") -> None:
    await handle.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id=staff_id))
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id=staff_id, outcome="reached_client"))


async def settled_to_listening(followups: FollowUpHarness, handle: WorkflowHandle) -> None:
    """Checked in, "OK", the offer declined: the protocol is done and the follow-up listens."""
    await checked_in(followups, handle)
    await reply(followups, handle, "OK")
    await followups.until_step(handle, "reschedule_offer_sent")
    await reply(followups, handle, "no")
    await followups.until_step(handle, "listening")


async def test_a_crisis_text_while_closing_with_the_audit_store_locked_reopens_and_pages(
    followups: FollowUpHarness,
):
    handle = await followups.start(make_event(), listen_after_close="PT1M")
    await settled_to_listening(followups, handle)
    async with audit_store_locked(followups):
        await followups.advance(handle, timedelta(minutes=2))
        await followups.until_step(handle, "closed")  # the close waits for the store
        await send_text(handle, CRISIS)
        status = await followups.until_step(handle, "staff_page_sent")

        assert "staff_page" in keys(await sends_of_the_task_that_took_the_last_text(
            followups, handle)), "the on-call's page left with the task that took the text"
        assert "crisis words" in followups.texts_to(ON_CALL_PHONE)[-1]
        await followups.until(handle, lambda s: any(
            "not alone" in t for t in followups.texts_to(CLIENT_PHONE)), "crisis resources")
        assert steps_in_order([e.step for e in status.trail], "closed", "reopened",
                              "reply_received", "escalation_started")
    await followups.advance(handle, timedelta(hours=2))
    assert await still_running(handle), "no completion while the crisis page is unanswered"

    await ack_and_resolve(handle)
    outcome = await followups.finish(handle)
    assert outcome.trail[-1].step == "closed"
    stored = await followups.store.entries(handle.id)
    assert first_break(stored) is None and stored[-1].step == "closed"


async def test_a_crisis_text_after_a_staff_cancel_pages_by_email_while_sms_is_down(
    followups: FollowUpHarness,
):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    async with audit_store_locked(followups):
        await handle.execute_update(DepartureFollowUp.cancel,
                                    Cancel(staff_id="t-oncall", reason="client came back"))
        followups.sms.down = True
        await send_text(handle, CRISIS, channel="api")
        await followups.advance(handle, timedelta(minutes=2))
        await followups.until(handle, lambda s: any(
            "crisis words" in m for m in followups.mails_to(ON_CALL_EMAIL)),
            "the on-call paged by email")
    followups.sms.down = False
    await followups.advance(handle, timedelta(hours=1))
    assert await still_running(handle), "the cancel does not abandon an unanswered crisis page"

    await ack_and_resolve(handle)
    outcome = await followups.finish(handle)
    assert outcome.closed_reason == "cancelled"
    steps = [e.step for e in outcome.trail]
    assert steps_in_order(steps, "cancelled", "reply_received", "escalation_started",
                          "staff_page_sent", "acknowledged", "resolved", "closed")


async def test_a_crisis_text_while_listening_pages_at_once_with_a_client_message_retrying(
    followups: FollowUpHarness,
):
    handle = await followups.start(make_event(email=None))
    await checked_in(followups, handle)
    await reply(followups, handle, "OK")
    await followups.until_step(handle, "reschedule_offer_sent")
    followups.sms.fail_number(CLIENT_PHONE, TRANSIENT, status=503)
    await reply(followups, handle, "A")  # booked; the confirmation keeps retrying
    await followups.until_step(handle, "listening")

    await send_text(handle, CRISIS)
    status = await followups.until_step(handle, "staff_page_sent")

    sent_at_once = keys(await sends_of_the_task_that_took_the_last_text(followups, handle))
    assert "staff_page" in sent_at_once
    assert "crisis words" in followups.texts_to(ON_CALL_PHONE)[-1]
    assert [e.outcome for e in status.trail if e.step == "escalation_started"] == [
        "crisis words in a reply"]
    followups.sms._failing_numbers.pop(CLIENT_PHONE)
    await ack_and_resolve(handle)
    await followups.finish(handle)


async def test_replies_are_acted_on_while_a_fallback_email_keeps_retrying(
    followups: FollowUpHarness,
):
    handle = await followups.start(make_event())
    status = await checked_in_status(followups, handle)
    checkin = next(e for e in status.trail if e.step == "checkin_sent")
    followups.mail.defer_next(1000)  # the mail relay answers 451 to every try
    await handle.signal(DepartureFollowUp.delivery_failed, DeliveryFailure(
        provider_message_id=checkin.provider_message_id, error_code="30003"))
    await followups.until_step(handle, "checkin_undelivered")

    await send_text(handle, CRISIS)
    await followups.until_step(handle, "staff_page_sent")
    assert "staff_page" in keys(await sends_of_the_task_that_took_the_last_text(
        followups, handle)), "the crisis is not queued behind the retrying fallback"
    await send_text(handle, "STOP")
    await followups.until(handle, lambda s: s.opted_out and any(
        e.step == "checkin_failed" and e.outcome == "withdrawn" for e in s.trail),
        "STOP honoured: the fallback still trying is withdrawn")
    await ack_and_resolve(handle)
    await followups.finish(handle)


async def checked_in_status(followups: FollowUpHarness, handle: WorkflowHandle):
    await followups.advance(handle, timedelta(minutes=10))
    return await followups.until_step(handle, "checkin_sent")


async def test_a_crisis_text_during_the_reschedule_offer_pages_before_any_offer(
    followups: FollowUpHarness,
):
    handle = await followups.start(make_event(email=None))
    await checked_in(followups, handle)
    followups.sms.fail_number(CLIENT_PHONE, TRANSIENT, status=503)
    await reply(followups, handle, "OK")  # "glad you're OK" keeps retrying: no offer yet

    await send_text(handle, CRISIS)
    await followups.until_step(handle, "staff_page_sent")
    assert "staff_page" in keys(await sends_of_the_task_that_took_the_last_text(
        followups, handle))
    followups.sms._failing_numbers.pop(CLIENT_PHONE)
    await followups.until(handle, lambda s: any(
        "not alone" in t for t in followups.texts_to(CLIENT_PHONE)), "crisis resources")
    await ack_and_resolve(handle)
    outcome = await followups.finish(handle)
    assert "reschedule_offer_sent" not in [e.step for e in outcome.trail]
    assert not any("book" in t.lower() for t in followups.texts_to(CLIENT_PHONE))


async def test_crisis_resources_are_sent_again_until_a_channel_takes_them(
    followups: FollowUpHarness,
):
    followups.sms.fail_number(CLIENT_PHONE, TRANSIENT, status=503)
    handle = await followups.start(make_event("imminent", email=None))
    await followups.until_step(handle, "staff_page_sent")
    await followups.advance(handle, timedelta(minutes=25))  # past a send's 10 minutes
    status = await followups.until_step(handle, "crisis_resources_failed")
    assert not any("not alone" in t for t in followups.texts_to(CLIENT_PHONE))

    followups.sms._failing_numbers.pop(CLIENT_PHONE)
    await followups.advance(handle, timedelta(minutes=5))
    status = await followups.until_step(handle, "crisis_resources_sent")
    assert sum("not alone" in t for t in followups.texts_to(CLIENT_PHONE)) == 1
    assert steps_in_order([e.step for e in status.trail], "crisis_resources_failed",
                          "crisis_resources_sent")
    await ack_and_resolve(handle)
    await followups.finish(handle)


async def test_ok_during_a_no_reply_escalation_stops_the_emergency_contact_notice(
    followups: FollowUpHarness,
):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await followups.advance(handle, timedelta(hours=1))
    await followups.until_step(handle, "staff_page_sent")
    await reply(followups, handle, "OK")
    await followups.advance(handle, timedelta(minutes=15))  # level 2: backup and contact
    status = await followups.until(handle, lambda s: followups.mails_to(BACKUP_EMAIL),
                                   "the backup paged")

    assert not followups.texts_to(CONTACT_PHONE), "no disclosure once the reason is gone"
    assert "emergency_contact_notified" not in [e.step for e in status.trail]
    await ack_and_resolve(handle, "t-backup")
    await followups.finish(handle)
    # What each mail to the backup is says so in its subject: a page needs them, the
    # all-clear does not.
    page, all_clear = [m.message["Subject"] for m in followups.mail.sent_to(BACKUP_EMAIL)]
    assert "needs attention" in page
    assert "resolved, no action needed" in all_clear and "needs attention" not in all_clear


async def test_a_check_in_accepted_late_gives_the_client_a_whole_window(
    followups: FollowUpHarness,
):
    handle = await followups.start(make_event(email=None))
    followups.sms.fail_number(CLIENT_PHONE, TRANSIENT, status=503)
    await followups.until_step(handle, "checkin_scheduled")  # its clock starts before ours
    await followups.advance(handle, timedelta(minutes=10))
    await followups.until_step(handle, "checkin_scheduled")
    await followups.advance(handle, timedelta(minutes=55))  # 5 minutes of the window left
    followups.sms._failing_numbers.pop(CLIENT_PHONE)
    status = await followups.until_step(handle, "checkin_sent")
    accepted = next(e for e in status.trail if e.step == "checkin_sent").at

    await followups.advance(handle, timedelta(minutes=50))
    status = await followups.status(handle)
    assert "no_reply" not in [e.step for e in status.trail], "the window runs from acceptance"
    assert "reminder_sent" in [e.step for e in status.trail]
    await followups.advance(handle, timedelta(minutes=15))
    status = await followups.until_step(handle, "no_reply")
    no_reply = next(e for e in status.trail if e.step == "no_reply").at
    assert no_reply - accepted >= timedelta(hours=1)
    await ack_and_resolve(handle)
    await followups.finish(handle)


async def test_a_check_in_never_accepted_pages_staff_and_sends_no_reminder(
    followups: FollowUpHarness,
):
    handle = await followups.start(make_event(email=None))
    followups.sms.fail_number(CLIENT_PHONE, TRANSIENT, status=503)
    await followups.until_step(handle, "checkin_scheduled")  # its clock starts before ours
    await followups.advance(handle, timedelta(minutes=10))
    await followups.advance(handle, timedelta(hours=1, minutes=5))
    status = await followups.until_step(handle, "escalation_started")

    assert status.escalation.reason == "client unreachable"
    assert not [e for e in status.trail if e.step.startswith("reminder")]
    assert "client unreachable" in followups.texts_to(ON_CALL_PHONE)[0]
    await ack_and_resolve(handle)
    followups.sms._failing_numbers.pop(CLIENT_PHONE)
    outcome = await followups.finish(handle)
    assert not followups.texts_to(CLIENT_PHONE), "a late check-in is withdrawn once staff close it"
    assert [e.outcome for e in outcome.trail if e.step == "checkin_failed"][-1] == "withdrawn"



async def test_ok_in_the_same_task_as_the_window_ending_is_safe(followups_without_worker):
    followups = followups_without_worker
    seconds = {"checkin_delay": {"low": "PT1S", "moderate": "PT1S", "high": "PT1S"},
               "response_window": {"low": "PT5S", "moderate": "PT5S", "high": "PT5S",
                                   "imminent": "PT5S"},
               "reminders": []}
    async with running_worker(followups.client, followups.settings):
        handle = await followups.start(make_event(), **seconds)
        await followups.until_step(handle, "checkin_sent")
    # No worker: the window ends and the "OK" arrives; the next worker gets both in one task.
    await asyncio.sleep(6)
    await send_text(handle, "OK")
    async with running_worker(followups.client, followups.settings):
        status = await followups.until_step(handle, "glad_you_are_ok_sent")
        assert "no_reply" not in [e.step for e in status.trail]
        assert status.escalation is None
        assert not followups.texts_to(ON_CALL_PHONE)
        kinds = [e.event_type for e in (await handle.fetch_history()).events]
        signaled = kinds.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
        started = kinds.index(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, signaled)
        before = max(i for i in range(signaled)
                     if kinds[i] == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
        assert EventType.EVENT_TYPE_TIMER_FIRED in kinds[before:started], (
            "the window's end and the text reached the worker in one task")
        await handle.execute_update(DepartureFollowUp.cancel,
                                    Cancel(staff_id="t-oncall", reason="test over"))
        await followups.finish(handle)


async def test_a_crisis_texts_sends_go_ahead_of_routine_sends_waiting_on_the_queue(followups):
    """A thousand check-ins falling due at once wait on the task queue; the page, the
    emergency contact's notice and the crisis resources are dispatched before them."""
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await send_text(handle, CRISIS)
    await followups.until(handle, lambda s: {"staff_page_sent", "emergency_contact_notified",
                                             "crisis_resources_sent"} <= {e.step for e in s.trail},
                          "paged, the contact told, the resources sent")
    assert "crisis words" in followups.texts_to(ON_CALL_PHONE)[-1]
    assert followups.texts_to(CONTACT_PHONE), "the emergency contact is told"

    priorities: dict[str, set[int]] = {}
    for event in (await handle.fetch_history()).events:
        scheduled = event.activity_task_scheduled_event_attributes
        if (event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and scheduled.activity_type.name.startswith("send_")):
            (message,) = await followups.client.data_converter.decode(
                scheduled.input.payloads, [OutboundMessage])
            kind = message.message_key.split("-", 1)[1]
            priorities.setdefault(kind, set()).add(scheduled.priority.priority_key)
    assert priorities == {"checkin": {0}, "staff_page": {1}, "emergency_contact_notice": {1},
                          "crisis_resources": {1}}, "0 is the queue's default, 3"
    await ack_and_resolve(handle)
    await followups.finish(handle)


async def dispatch_priority(handle: WorkflowHandle) -> int:
    """The follow-up's task priority: 0 is the queue's default (3), 1 goes first."""
    return (await handle.describe()).raw_description.workflow_execution_info.priority.priority_key


async def test_a_text_that_may_page_puts_its_follow_up_ahead_of_routine_work(followups):
    """The intake puts a follow-up first before passing on a text that may page someone,
    so the task that takes it is not queued behind a storm of check-ins; a plain answer
    leaves it where it was. An imminent follow-up starts first, and a staff action puts its
    follow-up first."""
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await actions.send_reply(followups.client, handle.id, ClientReply(text="OK"))
    await followups.until_step(handle, "reschedule_offer_sent")
    assert await dispatch_priority(handle) == 0, "a plain answer changes nothing"

    await actions.send_reply(followups.client, handle.id, ClientReply(text=CRISIS))
    assert await dispatch_priority(handle) == 1
    await followups.until(handle, lambda s: "staff_page_sent" in {e.step for e in s.trail},
                          "paged")
    assert "crisis words" in followups.texts_to(ON_CALL_PHONE)[-1]

    imminent = await followups.start(make_event("imminent"))
    assert await dispatch_priority(imminent) == 1
    unanswered = await followups.start(make_event())
    await checked_in(followups, unanswered)
    await followups.advance(unanswered, timedelta(hours=1))
    await followups.until_step(unanswered, "staff_page_sent")
    assert await dispatch_priority(unanswered) == 0, "paged by its clock, no text"
    await actions.acknowledge(followups.client, unanswered.id, Acknowledge(staff_id="t-oncall"))
    assert await dispatch_priority(unanswered) == 1, "staff waiting for an answer go first"
    await followups.until(imminent, lambda s: s.escalation is not None and s.escalation.paged,
                          "the imminent follow-up paged")
    for escalated in (handle, imminent, unanswered):
        if escalated is not unanswered:
            await actions.acknowledge(followups.client, escalated.id,
                                      Acknowledge(staff_id="t-oncall"))
        await actions.resolve(followups.client, escalated.id,
                              Resolve(staff_id="t-oncall", outcome="reached_client"))
        await followups.finish(escalated)
