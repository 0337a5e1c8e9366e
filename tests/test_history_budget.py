"""A happy-path follow-up's Temporal history stays lean: a count, not a timing.

Every event is server work and storage for as long as the history is retained, and the
design asks for the happy path in a few dozen events. A change that makes each step cost
more events (an audit write as a real activity, a timer per record, a workflow task per
step) fails here, not in a throughput run on some other day.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.enums.v1 import EventType

from tests.followup_harness import FollowUpHarness, make_event
from workflows.followup import DepartureFollowUp
from workflows.models import ClientReply, OutboundMessage

# Check-in after its delay, the client answers OK, is told "glad you're OK", is offered a
# reschedule and answers NO, then the follow-up listens for late texts and closes. Bare
# Temporal needs about 45 events for that shape: started and completed (2), the check-in and
# listening timers (4), three sends (3 each), reply waits whose timers are cancelled (2
# each), two signals, and a workflow task per wake-up (3 events each). Aftercare adds:
# - a fallback timer per send to someone with a second channel, cancelled once the first
#   accepts (2 each: 6);
# - a timer for the check-in's acceptance, cancelled when the provider takes it (2);
# - its audit trail, written so that only entries of tasks the server accepted reach the
#   store: mostly carried by the sends themselves (a send stores what is unwritten once its
#   message is out), the rest in batches of a regular activity, 3 events each and the
#   workflow task their completion wakes (a first view, a new phase, the close: 2 to 4
#   here), and the timer a step's outcome waits on for a send to carry it (2, cancelled);
# - the search attributes a reply is routed by. A follow-up started under version 2 has every
#   patch since version 1 built in: no patch markers, and no upserts of their own.
# 85, measured under version 2 (89 to 92 before it, with the markers; 111 before the sends
# carried the trail). 95 leaves room for a signal racing a completion, not for a batch per
# burst of steps again or a timer per record; the markers have an assertion of their own.
HAPPY_PATH_EVENT_BUDGET = 95
# Entries reach the audit store in batches, one in flight at a time: never one per step.
AUDIT_BATCHES = 10
# The time-skipping test server records these; a production history has none.
TEST_SERVER_ONLY = {"WORKFLOW_EXECUTION_OPTIONS_UPDATED",
                    "WORKFLOW_EXECUTION_TIME_SKIPPING_TRANSITIONED"}
SENDS = 3


async def answer(followups: FollowUpHarness, handle, text: str, replies_before: int) -> None:
    await handle.signal(DepartureFollowUp.client_reply, ClientReply(text=text, channel="sms"))
    await followups.until(
        handle, lambda s: [e.step for e in s.trail].count("reply_received") > replies_before,
        f"reply {text!r} recorded")


async def test_happy_path_history_stays_within_its_event_budget(followups):
    handle = await followups.start(make_event())
    await followups.advance(handle, timedelta(minutes=10))
    await followups.until_step(handle, "checkin_sent")
    await answer(followups, handle, "OK", replies_before=0)
    await followups.until_step(handle, "reschedule_offer_sent")
    await answer(followups, handle, "NO", replies_before=1)
    outcome = await followups.finish(handle)  # declining ends the protocol; it then listens
    assert outcome.client_safe
    assert "declined" in [e.outcome for e in outcome.trail if e.step == "reschedule_not_chosen"]

    events = (await handle.fetch_history()).events
    kinds = [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in events]
    kinds = [kind for kind in kinds if kind not in TEST_SERVER_ONLY]
    assert len(kinds) <= HAPPY_PATH_EVENT_BUDGET, (
        f"{len(kinds)} history events for the happy path (budget "
        f"{HAPPY_PATH_EVENT_BUDGET}): {kinds}")
    markers = [e.marker_recorded_event_attributes.marker_name for e in events
               if e.HasField("marker_recorded_event_attributes")]
    assert markers == [], "no local activity: audit writes are regular activities, sent only "
    "with an accepted workflow task; and no patch marker: version 2 has them built in"
    audit_batches = kinds.count("ACTIVITY_TASK_SCHEDULED") - SENDS
    assert 0 < audit_batches <= AUDIT_BATCHES, "audit entries are written in batches"
    steps = [e.step for e in outcome.trail]
    assert [e.step for e in await followups.store.entries(handle.id)] == steps


async def test_a_page_carries_the_trail_and_the_first_task_schedules_no_batch_of_its_own(
    followups,
):
    """Imminent risk: the first task pages; the page stores the trail once it is out."""
    handle = await followups.start(make_event("imminent"))
    await followups.until(handle, lambda s: s.escalation is not None and s.escalation.paged
                          and not s.audit_backlog, "paged, the trail stored")

    events = (await handle.fetch_history()).events
    first_task_end = next(i for i, e in enumerate(events) if e.event_type
                          == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    next_task_end = next(i for i, e in enumerate(events) if i > first_task_end and e.event_type
                         == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    first_commands = [e.activity_task_scheduled_event_attributes for e in
                      events[first_task_end:next_task_end] if e.event_type
                      == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert "append_audit_entries" not in [c.activity_type.name for c in first_commands]
    carried = [message.trail for command in first_commands
               for (message,) in [await followups.client.data_converter.decode(
                   command.input.payloads, [OutboundMessage])] if message.trail]
    assert len(carried) == 1, "one send carries what the first task sealed"
    steps = [e.step for e in carried[0].entries]
    assert steps[0] == "received" and "escalation_started" in steps
    assert carried[0].view is not None and carried[0].view.escalation is not None
    stored = [e.step for e in await followups.store.entries(handle.id)]
    assert stored[:len(steps)] == steps
