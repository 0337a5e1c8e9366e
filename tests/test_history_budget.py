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
from workflows.models import ClientReply

# Check-in after its delay, the client answers OK, is told "glad you're OK", is offered a
# reschedule and answers NO. Bare Temporal needs about 40 events for that shape: started and
# completed (2), the check-in timer (2), three sends (3 each), two reply waits whose timers
# are cancelled (2 each), two signals, and a workflow task per wake-up (3 events each, 7 of
# them). Aftercare adds a local-activity marker per batch of audit entries (one before each
# sleep and one at the close: 4, plus the patch marker) and no workflow task of its own:
# about 45. A signal racing an activity's completion, or the time-skipping server's own
# wake-up, can add a workflow task. 60 leaves room for that and a step or two more, not for
# audit writes that each cost a server round trip (27 more here).
HAPPY_PATH_EVENT_BUDGET = 60
# Entries reach the audit store in batches: before the check-in timer, while waiting for
# the reply, while waiting for the slot choice, at the close.
AUDIT_BATCHES = 4
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
    outcome = await handle.result()  # declining closes it: no timer left to skip
    assert outcome.client_safe and outcome.trail[-2].outcome == "declined"

    kinds = [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
             for e in (await handle.fetch_history()).events]
    kinds = [kind for kind in kinds if kind not in TEST_SERVER_ONLY]
    assert len(kinds) <= HAPPY_PATH_EVENT_BUDGET, (
        f"{len(kinds)} history events for the happy path (budget "
        f"{HAPPY_PATH_EVENT_BUDGET}): {kinds}")
    assert kinds.count("ACTIVITY_TASK_SCHEDULED") == SENDS, (
        "only the sends are activities: audit writes stay local, no server round trip")
    local_activities = kinds.count("MARKER_RECORDED") - 1  # one is the patch marker
    assert local_activities <= AUDIT_BATCHES, "audit entries are written in batches"
