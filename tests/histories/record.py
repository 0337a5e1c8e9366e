"""Records histories of real follow-ups after a deliberate change to the workflow (see
README.md beside this file):

    .venv/bin/python -m tests.histories.record

Each recording is a new file named by scenario and date; older files stay, so follow-ups
started under earlier code keep being replayed against today's.
"""

from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle, WorkflowHistory, WorkflowUpdateFailedError

from aftercare.followups import actions
from tests.fixtures.followups import closed_followup
from tests.followup_harness import SECONDS_ESCALATION, make_event
from tests.test_long_escalation import short_histories  # noqa: F401
from tests.test_withdrawn_pages import (
    page_refused_after_the_resolve,
    repage_on_its_way_at_the_resolve,
)
from workflows.followup import DepartureFollowUp
from workflows.models import Acknowledge, ClientReply, Resolve

HISTORIES = Path(__file__).parent


async def save(handle: WorkflowHandle, scenario: str) -> None:
    """Write the history under a name no earlier recording has: a second recording on the
    same day gets a number, so the code an earlier file proves stays proven."""
    history = await handle.fetch_history()
    await save_history(history, scenario)


async def save_history(history: WorkflowHistory, scenario: str) -> None:
    stem = f"followup-{scenario}-{date.today().isoformat()}"
    path = HISTORIES / f"{stem}.json"
    number = 1
    while path.exists():
        number += 1
        path = HISTORIES / f"{stem}-{number}.json"
    path.write_text(history.to_json() + "\n")


async def test_record_a_follow_up_the_client_answers_ok(followups):
    await save(await closed_followup(followups), "client-answers-ok")


async def test_record_a_client_answering_while_staff_are_paged(followups):
    handle = await followups.start(make_event())
    await followups.advance(handle, timedelta(hours=1, minutes=10))
    await followups.until_step(handle, "staff_page_sent")
    await handle.signal(DepartureFollowUp.client_reply, ClientReply(text="OK", channel="sms"))
    await followups.until_step(handle, "glad_you_are_ok_sent")
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    await followups.finish(handle)
    await save(handle, "reply-while-paged")


async def test_record_a_crisis_after_an_acknowledged_page_and_a_refused_ack(followups):
    handle = await followups.start(make_event("imminent"))
    await followups.until_step(handle, "staff_page_sent")
    await handle.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id="t-oncall"))
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(DepartureFollowUp.acknowledge,
                                    Acknowledge(staff_id="t-backup"))
    await handle.signal(DepartureFollowUp.client_reply,
                        ClientReply(text="i wanna die", channel="sms"))
    await followups.until_step(handle, "escalation_raised")
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client",
                                        note="called, she is with her sister"))
    await followups.finish(handle)
    await save(handle, "crisis-after-ack")


async def test_record_no_reply_walked_through_the_chain_then_resolved(followups):
    handle = await followups.start(make_event())
    await followups.advance(handle, timedelta(minutes=10))
    await followups.until_step(handle, "checkin_sent")
    await followups.advance(handle, timedelta(hours=1, minutes=25))
    await followups.until_step(handle, "ack_timeout")
    await handle.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id="t-backup"))
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-backup", outcome="reached_client"))
    await followups.finish(handle)
    await save(handle, "no-reply")


async def test_record_a_text_while_listening_that_pages(followups):
    handle = await followups.start(make_event())
    await followups.advance(handle, timedelta(minutes=10))
    await followups.until_step(handle, "checkin_sent")
    await handle.signal(DepartureFollowUp.client_reply, ClientReply(text="OK", channel="sms"))
    await followups.advance(handle, timedelta(hours=2))
    await followups.until_step(handle, "listening")
    await handle.signal(DepartureFollowUp.client_reply,
                        ClientReply(text="can someone call me", channel="sms"))
    await followups.until_step(handle, "staff_page_sent")
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    await followups.finish(handle)
    await save(handle, "listening")


async def test_record_a_crisis_text_the_intake_put_first(followups):
    """Passed on as the intake passes texts and staff actions: each puts the follow-up first
    (an options update in the history), and the sends it pages with carry priority 1."""
    handle = await followups.start(make_event())
    await followups.advance(handle, timedelta(minutes=10))
    await followups.until_step(handle, "checkin_sent")
    await actions.send_reply(followups.client, handle.id,
                             ClientReply(text="i want to kill myself", channel="sms"))
    await followups.until_step(handle, "staff_page_sent")
    await actions.acknowledge(followups.client, handle.id, Acknowledge(staff_id="t-oncall"))
    await actions.resolve(followups.client, handle.id,
                          Resolve(staff_id="t-oncall", outcome="reached_client"))
    await followups.finish(handle)
    await save(handle, "crisis-put-first")


async def test_record_a_page_refused_after_staff_resolved(followups):
    await save(await page_refused_after_the_resolve(followups), "page-refused-after-resolve")


async def test_record_a_repage_on_its_way_as_the_on_call_resolves(followups):
    await save(await repage_on_its_way_at_the_resolve(followups), "repage-on-its-way-at-resolve")


async def test_record_an_escalation_that_hands_on_to_a_new_run(short_histories):  # noqa: F811
    """Both runs: the first ends by handing on, the second starts from what it carried."""
    followups = short_histories
    handle = await followups.start(
        make_event("imminent"), escalation=SECONDS_ESCALATION, listen_after_close="PT1S",
        reschedule={"slots": [{"after": "P1D", "at": "10:00"}], "offer_window": "PT1S"})
    first_run = (await handle.describe()).run_id
    await followups.until(handle, lambda s: "continued" in [e.step for e in s.trail],
                          "the follow-up handed on to a new run", timeout=120)
    latest = followups.client.get_workflow_handle_for(DepartureFollowUp.run, handle.id)
    await latest.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id="t-oncall"))
    await latest.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    await latest.result()
    first = followups.client.get_workflow_handle(handle.id, run_id=first_run)
    await save_history(await first.fetch_history(), "hand-on-first-run")
    await save(latest, "hand-on-second-run")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
