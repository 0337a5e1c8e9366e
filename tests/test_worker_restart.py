"""A worker process killed mid-wait loses nothing: a new one finishes the follow-up and
no message goes out twice. Real processes, so a fresh interpreter also proves the
workflow loads in a clean sandbox."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType, TaskQueueKind
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle

from activities.delivery_ledger import CRASH_EXIT_CODE
from aftercare.followups import actions
from aftercare.temporal.codec import data_converter
from aftercare.trail.replay import replay_and_compare
from api.sms_webhooks import pass_on_delivery_status
from tests.fixtures.followups import worker_environment
from tests.followup_harness import (
    CLIENT_EMAIL,
    CLIENT_PHONE,
    ON_CALL_PHONE,
    FollowUpHarness,
    make_event,
)
from workflows.followup import DepartureFollowUp
from workflows.models import Acknowledge, Cancel, ClientReply, FollowUpStatus, Resolve

CRISIS = "I took all my pills, I want to die"
WORKFLOW_TASK_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
}


def start_worker(environment: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "worker.py"], env=environment)


@contextmanager
def two_workers(followups: FollowUpHarness) -> Iterator[list[subprocess.Popen]]:
    """Two worker processes on the harness's task queue, stopped (if alive) at the end."""
    address = followups.client.service_client.config.target_host
    environment = worker_environment(followups.settings, address)
    workers = [start_worker(environment), start_worker(environment)]
    try:
        yield workers
    finally:
        for process in workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=40)


async def test_killed_worker_is_replaced_and_no_message_goes_out_twice(followups_without_worker):
    followups = followups_without_worker
    address = followups.client.service_client.config.target_host
    environment = worker_environment(followups.settings, address)
    first = start_worker(environment)
    second = None
    try:
        handle = await followups.start(make_event())
        await followups.advance(handle, timedelta(minutes=10))
        await followups.until_step(handle, "checkin_sent")

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        # The server skips time only while no task is outstanding: the dead worker's audit
        # batch waits for a worker, as it would in production, so the successor starts first.
        second = start_worker(environment)
        await followups.advance(handle, timedelta(minutes=30))  # the reminder falls due
        await followups.until_step(handle, "reminder_sent")
        await handle.signal(DepartureFollowUp.client_reply, ClientReply(text="ok"))
        outcome = await followups.finish(handle)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=40)

    assert outcome.client_safe
    texts = followups.texts_to(CLIENT_PHONE)
    assert len(texts) == 4, "check-in, reminder, thanks, reschedule offer"
    assert not [body for body, n in Counter(texts).items() if n > 1], "nothing sent twice"
    sent_steps = [e.step for e in outcome.trail if e.step.endswith("_sent")]
    assert len(sent_steps) == len(set(sent_steps)) == 4
    stored = await followups.store.entries(handle.id)
    assert [e.hash for e in stored] == [e.hash for e in outcome.trail]


async def test_a_worker_killed_after_twilio_accepted_a_text_never_sends_it_twice(
    followups_without_worker,
):
    followups = followups_without_worker
    address = followups.client.service_client.config.target_host
    environment = worker_environment(followups.settings, address)
    crashing = start_worker(
        {**environment, "AFTERCARE_TEST_CRASH_AFTER": "provider_accepts"})
    replacement = None
    try:
        handle = await followups.start(make_event())
        await followups.advance(handle, timedelta(minutes=10))
        # The check-in reached Twilio; the worker died before the ledger heard of it.
        assert await asyncio.to_thread(crashing.wait, 60) == CRASH_EXIT_CODE
        assert len(followups.texts_to(CLIENT_PHONE)) == 1
        replacement = start_worker(environment)
        # The attempt times out; its retry asks Twilio's Messages list before sending.
        await followups.advance(handle, timedelta(minutes=1))
        await followups.until_step(handle, "checkin_sent")
        await handle.signal(DepartureFollowUp.client_reply, ClientReply(text="ok"))
        outcome = await followups.finish(handle)
    finally:
        for process in (crashing, replacement):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=40)

    [checkin] = [e for e in outcome.trail if e.step == "checkin_sent"]
    [accepted] = followups.sms.messages[:1]
    assert checkin.provider_message_id == accepted.sid, "the text Twilio accepted first"
    texts = followups.texts_to(CLIENT_PHONE)
    assert len(texts) == 3, "check-in, thanks, reschedule offer"
    assert not [body for body, n in Counter(texts).items() if n > 1], "nothing sent twice"


async def at_rest(handle: WorkflowHandle) -> list[HistoryEvent]:
    """The follow-up's history once nothing is in flight: no send, no task waiting."""
    while True:
        described = await handle.describe()
        events = list((await handle.fetch_history()).events)
        tasks = [e.event_type for e in events if e.event_type in WORKFLOW_TASK_EVENTS]
        if (not described.raw_description.pending_activities
                and tasks[-1] == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED):
            return events
        await asyncio.sleep(0.2)


async def crisis_text(followups: FollowUpHarness, handle: WorkflowHandle,
                      status: FollowUpStatus) -> None:
    await actions.send_reply(followups.client, handle.id, ClientReply(text=CRISIS))
    await followups.until_step(handle, "staff_page_sent")
    assert "crisis words" in followups.texts_to(ON_CALL_PHONE)[-1]


async def check_in_undelivered(followups: FollowUpHarness, handle: WorkflowHandle,
                               status: FollowUpStatus) -> None:
    """Twilio's word that the check-in never reached the phone: it goes by email."""
    [checkin] = [e for e in status.trail if e.step == "checkin_sent"]
    await pass_on_delivery_status(followups.client, {
        "MessageSid": checkin.provider_message_id, "MessageStatus": "undelivered",
        "ErrorCode": "30003"}, handle.id)
    await followups.until(handle, lambda s: followups.mails_to(CLIENT_EMAIL),
                          "the check-in by email")


@pytest.mark.parametrize("arrives", [crisis_text, check_in_undelivered])
async def test_what_arrives_just_after_a_follow_ups_worker_dies_goes_to_a_live_worker(
    followups_without_worker, arrives,
):
    """The follow-up's tasks go to the worker that ran its last one, on a queue of that
    worker's own; had it just died, the next task would wait out the sticky-queue timeout
    there before a live worker could take it. The intake frees the follow-up from that queue
    as it passes on a text that may page, or a message's failed delivery: the task goes to
    the shared queue at once."""
    followups = followups_without_worker
    with two_workers(followups) as workers:
        handle = await followups.start(make_event())
        await followups.advance(handle, timedelta(minutes=10))
        status = await followups.until_step(handle, "checkin_sent")
        events = await at_rest(handle)
        last_task_by = [e.workflow_task_started_event_attributes.identity.partition("@")[0]
                        for e in events if e.HasField("workflow_task_started_event_attributes")][-1]
        holder = next(w for w in workers if str(w.pid) == last_task_by)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)

        await arrives(followups, handle, status)
        after = list((await handle.fetch_history()).events)[len(events):]
        [task_queue] = [e.workflow_task_scheduled_event_attributes.task_queue for e in after
                        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED][:1]
        assert task_queue.kind == TaskQueueKind.TASK_QUEUE_KIND_NORMAL, (
            "the task went to the shared queue, not the dead worker's")
        assert EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT not in [
            e.event_type for e in after], "no task waited on the dead worker's queue"
        await actions.cancel(followups.client, handle.id,
                             Cancel(staff_id="t-oncall", reason="test over"))
        await followups.finish(handle)


async def test_follow_ups_freed_again_and_again_between_two_live_workers_stay_whole(
    followups_without_worker,
):
    """Each text that may page and each staff action frees the follow-up from its worker's
    queue, so its tasks move between live workers, and one may come back to a worker whose
    copy of the follow-up is behind the history. Three escalations through two workers:
    every page goes out once, and the history replays to the stored trail."""
    followups = followups_without_worker
    with two_workers(followups):
        handle = await followups.start(make_event())
        await followups.advance(handle, timedelta(minutes=10))
        await followups.until_step(handle, "checkin_sent")
        for number, (text, phase_step) in enumerate([
                ("can someone call me", None),
                ("i feel awful again", "reschedule_offer_sent"),
                ("i cant stop crying", "listening")], start=1):
            if phase_step:
                await followups.until_step(handle, phase_step)
            await actions.send_reply(followups.client, handle.id, ClientReply(text=text))
            await followups.until(handle, lambda s, n=number: [
                e.step for e in s.trail].count("staff_page_sent") == n, f"page {number}")
            await actions.acknowledge(followups.client, handle.id,
                                      Acknowledge(staff_id="t-oncall"))
            await actions.resolve(followups.client, handle.id,
                                  Resolve(staff_id="t-oncall", outcome="reached_client"))
        outcome = await followups.finish(handle)
        history = await handle.fetch_history()

    def sent_to(recipient: str) -> int:
        return sum(1 for e in outcome.trail
                   if e.step.endswith("_sent") and e.recipient == recipient)

    assert [e.step for e in outcome.trail].count("staff_page_sent") == 3
    assert len(followups.texts_to(ON_CALL_PHONE)) == sent_to("staff:t-oncall") == 6, (
        "three pages and three all-clears, each once")
    assert len(followups.texts_to(CLIENT_PHONE)) == sent_to("client"), "each message once"
    stored = await followups.store.entries(handle.id)
    assert [e.hash for e in stored] == [e.hash for e in outcome.trail]
    report = await replay_and_compare(history, stored, data_converter(followups.settings),
                                      [DepartureFollowUp])
    assert report.discrepancies == []
    assert not {EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
                EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT} & {
        e.event_type for e in history.events}, "no worker's stale copy failed a task"
