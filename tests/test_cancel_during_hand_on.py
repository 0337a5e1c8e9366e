"""A staff cancel that lands around a hand-on to a new run (continue-as-new) is applied once,
never dropped: while a page in flight holds the hand-on back, in the very workflow task in
which Temporal first suggests the hand-on, and in the new run after one.

Each test runs an escalation on a dev server of its own that suggests continue-as-new after
150 events (as tests/test_long_escalation.py does), cancels it, and asserts who was told
what and when: the cancel once in the trail, every staff member whose page was accepted told
"closed by staff" exactly once and after their last page, no page after the cancel, the
follow-up closed as cancelled, every run's history replaying to the stored chain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from aftercare.temporal.codec import data_converter
from aftercare.trail.replay import replay_and_compare
from aftercare.trail.store import AuditStore
from aftercare.trail.verification import first_broken_link
from tests.fixtures.temporal import SUGGEST_CONTINUE_AS_NEW_AFTER, early_hand_on_server
from tests.followup_harness import (
    CLIENT_PHONE,
    CONTACT_PHONE,
    LEAD_EMAIL,
    ON_CALL_EMAIL,
    ON_CALL_PHONE,
    SECONDS_ESCALATION,
    FollowUpHarness,
    make_event,
    steps_in_order,
)
from worker import running_worker
from workflows.followup import DepartureFollowUp
from workflows.models import Cancel, DeliveryFailure, FollowUpOutcome

# One page and a long wait: nothing happens unless the test makes it happen.
QUIET_ESCALATION = {**SECONDS_ESCALATION, "ack_timeout": "PT1H", "repage_every": "PT1H"}
SHORT_PROTOCOL = {
    "listen_after_close": "PT1S",
    "reschedule": {"slots": [{"after": "P1D", "at": "10:00"}], "offer_window": "PT1S"},
}
PAGE = "needs you"
CANCELLED = "was closed by staff"


@pytest.fixture
async def short_histories(
    worker_settings, sms_outbox, mailbox, booking_sink,
) -> AsyncIterator[FollowUpHarness]:
    """A dev server of its own that suggests continue-as-new early; no worker: each test runs
    its own, so it can also stop it."""
    async with early_hand_on_server(worker_settings) as env:
        store = await AuditStore.open(worker_settings.audit_database_url)
        try:
            yield FollowUpHarness(env, worker_settings, sms_outbox, mailbox, booking_sink, store)
        finally:
            await store.close()


def latest(followups: FollowUpHarness, handle: WorkflowHandle) -> WorkflowHandle:
    return followups.client.get_workflow_handle_for(DepartureFollowUp.run, handle.id)


async def hand_on_suggested(handle: WorkflowHandle) -> bool:
    """Whether Temporal has told this run, in a workflow task, that it may hand on."""
    history = await handle.fetch_history()
    return any(e.workflow_task_started_event_attributes.suggest_continue_as_new
               for e in history.events
               if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)


async def cancel(handle: WorkflowHandle) -> datetime:
    """Cancel as staff do; the moment it was sent, by the sinks' clock."""
    at = datetime.now(UTC)
    await handle.execute_update(DepartureFollowUp.cancel,
                                Cancel(staff_id="t-oncall", reason="client came back"))
    return at


def texts(followups: FollowUpHarness, number: str, words: str) -> list[datetime]:
    return [m.date_created for m in followups.sms.sent_to(number) if words in m.body]


def mails(followups: FollowUpHarness, address: str, words: str) -> list[datetime]:
    return [m.received_at for m in followups.mail.sent_to(address) if words in m.text]


async def assert_cancelled_once_and_replays(
    followups: FollowUpHarness, handle: WorkflowHandle, outcome: FollowUpOutcome,
    run_ids: list[str | None],
) -> None:
    assert outcome.closed_reason == "cancelled"
    assert outcome.escalation is not None and outcome.escalation.resolved_by == "t-oncall"
    steps = [e.step for e in outcome.trail]
    assert steps.count("cancelled") == 1, steps
    assert steps_in_order(steps, "escalation_started", "cancelled", "closed")
    after_cancel = steps[steps.index("cancelled"):]
    assert "staff_page_sent" not in after_cancel, "no page after the cancel"
    assert steps[-1] == "closed"
    assert [e.seq for e in outcome.trail] == list(range(1, len(outcome.trail) + 1))

    stored = await followups.store.entries(handle.id)
    assert first_broken_link(stored) is None
    assert [e.hash for e in stored] == [e.hash for e in outcome.trail], "one chain, whole"
    converter = data_converter(followups.settings)
    for run_id in run_ids:
        history = await followups.client.get_workflow_handle(
            handle.id, run_id=run_id).fetch_history()
        report = await replay_and_compare(history, stored, converter, [DepartureFollowUp])
        assert report.discrepancies == [], run_id


async def test_a_cancel_while_a_page_in_flight_holds_the_hand_on_back_is_applied(
    short_histories: FollowUpHarness,
):
    """The clinic lead's page by email is refused 451 again and again, so a page is always in
    flight and the hand-on waits (``may_hand_on`` is false) while the history grows past
    Temporal's suggestion. A cancel then closes the escalation in this run."""
    followups = short_histories
    followups.mail.defer_next(100_000)
    async with running_worker(followups.client, followups.settings):
        handle = await followups.start(make_event("imminent"), escalation=SECONDS_ESCALATION,
                                       **SHORT_PROTOCOL)
        first_run = (await handle.describe()).run_id
        deadline = asyncio.get_running_loop().time() + 120
        while not await hand_on_suggested(handle):
            assert asyncio.get_running_loop().time() < deadline, "history never grew long"
            await asyncio.sleep(1)
        # A page round later, still this run: the lead's page keeps the hand-on waiting.
        pages = len(texts(followups, ON_CALL_PHONE, PAGE))
        status = await followups.until(
            handle, lambda s: len(texts(followups, ON_CALL_PHONE, PAGE)) > pages
            and s.trail[-1].step == "staff_page_sent" and s.trail[-1].recipient
            == "staff:t-oncall", "the on-call paged again", timeout=30)
        assert (await latest(followups, handle).describe()).run_id == first_run
        assert "continued" not in [e.step for e in status.trail]
        assert not followups.mail.sent_to(LEAD_EMAIL), "the lead's page is still in flight"

        cancelled_at = await cancel(handle)
        outcome = await asyncio.wait_for(handle.result(), 60)
        followups.mail._transient_refusals = 0  # the mail server recovers: nothing is owed
        await asyncio.sleep(3)

    assert (await latest(followups, handle).describe()).run_id == first_run
    on_call_pages = texts(followups, ON_CALL_PHONE, PAGE)
    assert len(on_call_pages) >= 2 and max(on_call_pages) < cancelled_at
    told = texts(followups, ON_CALL_PHONE, CANCELLED)
    assert len(told) == 1 and told[0] > cancelled_at, "the on-call is told once, after the cancel"
    assert not mails(followups, ON_CALL_EMAIL, CANCELLED), "and only once, on one channel"
    assert not followups.mail.sent_to(LEAD_EMAIL), (
        "the lead's page was withdrawn: no page, and no all-clear for a page never received")
    assert len(followups.texts_to(CONTACT_PHONE)) == 1
    failed = [e for e in outcome.trail if e.step == "staff_page_failed"]
    assert failed and {e.recipient for e in failed} == {"staff:t-lead"}
    assert {e.outcome for e in failed} == {"withdrawn"}
    await assert_cancelled_once_and_replays(followups, handle, outcome, [None])


async def test_a_cancel_in_the_task_where_the_hand_on_would_happen_is_applied(
    short_histories: FollowUpHarness,
):
    """The escalation is at rest (the on-call paged, a long ack timeout running, the trail
    stored). With no worker up, a flood of provider callbacks pushes its history past
    Temporal's suggestion and a cancel arrives: the next worker gets both in one workflow
    task, the first in which ``may_hand_on`` would be true. The cancel wins."""
    followups = short_histories
    async with running_worker(followups.client, followups.settings):
        handle = await followups.start(make_event("imminent"), escalation=QUIET_ESCALATION,
                                       **SHORT_PROTOCOL)
        await followups.until(handle, lambda s: s.audit_backlog == 0 and {
            "staff_page_sent", "emergency_contact_notified", "crisis_resources_sent"}
            <= {e.step for e in s.trail}, "paged, everyone told, the trail stored")
        await asyncio.sleep(1)
    first_run = (await handle.describe()).run_id
    assert not await hand_on_suggested(handle)
    history_length = len((await handle.fetch_history()).events)

    for number in range(SUGGEST_CONTINUE_AS_NEW_AFTER - history_length + 10):
        await handle.signal(DepartureFollowUp.delivery_failed,
                            DeliveryFailure(provider_message_id=f"SM{number:032x}"))
    cancelled_at = datetime.now(UTC)
    cancelling = asyncio.create_task(handle.execute_update(
        DepartureFollowUp.cancel, Cancel(staff_id="t-oncall", reason="client came back")))
    await asyncio.sleep(2)  # the update is admitted, waiting for a worker
    assert not cancelling.done()

    async with running_worker(followups.client, followups.settings):
        await asyncio.wait_for(cancelling, 30)
        outcome = await asyncio.wait_for(handle.result(), 60)

    assert (await latest(followups, handle).describe()).run_id == first_run, (
        "no hand-on: the cancel was applied by the run it landed in")
    events = list((await handle.fetch_history()).events)
    accepted = next(i for i, e in enumerate(events) if e.event_type
                    == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    task = max(i for i in range(accepted)
               if events[i].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
    assert events[task].workflow_task_started_event_attributes.suggest_continue_as_new, (
        "the cancel came in the first task that suggested the hand-on")
    assert not any(e.workflow_task_started_event_attributes.suggest_continue_as_new
                   for e in events[:task]
                   if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
    assert events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED

    on_call_pages = texts(followups, ON_CALL_PHONE, PAGE)
    assert len(on_call_pages) == 1 and on_call_pages[0] < cancelled_at
    told = texts(followups, ON_CALL_PHONE, CANCELLED)
    assert len(told) == 1 and told[0] > cancelled_at
    assert not followups.mail.sent_to(LEAD_EMAIL), "level 2 was never reached"
    assert len(followups.texts_to(CONTACT_PHONE)) == 1
    assert sum("not alone" in t for t in followups.texts_to(CLIENT_PHONE)) == 1
    await assert_cancelled_once_and_replays(followups, handle, outcome, [None])


async def test_a_cancel_in_the_new_run_after_a_hand_on_tells_everyone_paged_in_either_run(
    short_histories: FollowUpHarness,
):
    """The escalation pages round after round and hands on to a new run. A cancel there
    closes it: everyone paged in either run hears it once, and nobody is paged after it."""
    followups = short_histories
    async with running_worker(followups.client, followups.settings):
        handle = await followups.start(make_event("imminent"), escalation=SECONDS_ESCALATION,
                                       **SHORT_PROTOCOL)
        first_run = (await handle.describe()).run_id
        await followups.until(handle, lambda s: "continued" in [e.step for e in s.trail],
                              "the follow-up handed on to a new run", timeout=120)
        new_run = latest(followups, handle)
        assert (await new_run.describe()).run_id != first_run
        # Right after a page of the new run, so no page is in flight when the cancel lands.
        pages = len(texts(followups, ON_CALL_PHONE, PAGE))
        await followups.until(new_run, lambda s: len(texts(followups, ON_CALL_PHONE, PAGE))
                              > pages and s.trail[-1].step == "staff_page_sent",
                              "the new run paged the on-call", timeout=30)
        assert mails(followups, LEAD_EMAIL, PAGE), "the lead was paged before the cancel"

        cancelled_at = await cancel(new_run)
        outcome = await asyncio.wait_for(new_run.result(), 60)
        await asyncio.sleep(3)

    for page_times in (texts(followups, ON_CALL_PHONE, PAGE), mails(followups, LEAD_EMAIL, PAGE)):
        assert page_times and max(page_times) < cancelled_at, "no page after the cancel"
    for told in (texts(followups, ON_CALL_PHONE, CANCELLED),
                 mails(followups, LEAD_EMAIL, CANCELLED)):
        assert len(told) == 1 and told[0] > cancelled_at, "each paged member told once"
    assert not mails(followups, ON_CALL_EMAIL, CANCELLED)
    assert len(followups.texts_to(CONTACT_PHONE)) == 1
    steps = [e.step for e in outcome.trail]
    assert steps_in_order(steps, "received", "escalation_started", "continued", "cancelled",
                          "closed")
    await assert_cancelled_once_and_replays(followups, handle, outcome, [first_run, None])
