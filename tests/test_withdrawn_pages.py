"""A page already on its way when staff close the escalation may still reach its person.
Whoever it reaches must also hear that the escalation is over, after the page: an on-call
left holding a page nobody closes calls a client for nothing, or stops trusting pages."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import WorkflowHandle

from tests.followup_harness import (
    ON_CALL_EMAIL,
    ON_CALL_PHONE,
    FollowUpHarness,
    make_event,
    steps_in_order,
)
from tests.test_followup import checked_in
from workflows.followup import DepartureFollowUp
from workflows.models import ClientReply, Resolve


async def test_a_page_accepted_after_the_resolve_is_followed_by_the_all_clear(
    followups: FollowUpHarness,
):
    followups.sms.hold(ON_CALL_PHONE)  # the provider has the page and has not answered yet
    handle = await followups.start(make_event("imminent"))
    await followups.until_step(handle, "crisis_resources_sent")
    await asyncio.sleep(0.5)
    assert not followups.texts_to(ON_CALL_PHONE), "the on-call's page is still on its way"

    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-backup", outcome="reached_client"))
    followups.sms.release(ON_CALL_PHONE)  # the provider takes the page after all
    outcome = await followups.finish(handle)

    page, *after = followups.texts_to(ON_CALL_PHONE)
    assert "imminent risk" in page
    assert len(after) == 1 and "is resolved" in after[0], (
        "the on-call hears the page is over, once, after the page")
    steps = [(e.step, e.recipient) for e in outcome.trail]
    assert steps_in_order(steps, ("resolved", "staff:t-backup"),
                          ("staff_page_sent", "staff:t-oncall"),
                          ("staff_resolved_sent", "staff:t-oncall"))


async def page_refused_after_the_resolve(followups: FollowUpHarness) -> WorkflowHandle:
    """Imminent risk; the on-call's page is with the provider when staff resolve, and the
    provider then refuses it (a 503). The follow-up closed."""
    followups.sms.hold(ON_CALL_PHONE)
    handle = await followups.start(make_event("imminent"))
    await followups.until_step(handle, "crisis_resources_sent")
    await asyncio.sleep(0.5)
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-backup", outcome="reached_client"))
    followups.sms.fail_number(ON_CALL_PHONE, 20503, "Service unavailable", status=503)
    followups.sms.release(ON_CALL_PHONE)
    await followups.finish(handle)
    return handle


async def test_a_page_refused_after_the_resolve_is_recorded_as_withdrawn(
    followups: FollowUpHarness,
):
    """The provider refuses the page's try under way once staff have closed the escalation.
    Nobody tries it again; the trail says the page was withdrawn, not that the provider was
    tried to the end, and the on-call gets no all-clear for a page that never reached them."""
    outcome = await (await page_refused_after_the_resolve(followups)).result()

    assert not followups.texts_to(ON_CALL_PHONE)
    assert not followups.mails_to(ON_CALL_EMAIL)
    pages = [(e.step, e.outcome) for e in outcome.trail if e.recipient == "staff:t-oncall"]
    assert pages == [("staff_page_failed", "withdrawn")], pages


async def repage_on_its_way_at_the_resolve(followups: FollowUpHarness, *,
                                           refused: bool = False) -> WorkflowHandle:
    """No reply, so the on-call is paged; the client then texts a crisis and the on-call is
    paged again. The provider has that second page and has not answered when the on-call
    resolves; it then takes it, or (``refused``) answers 503 to it and to every text after."""
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await followups.advance(handle, timedelta(hours=1))
    await followups.until_step(handle, "staff_page_sent")
    followups.sms.hold(ON_CALL_PHONE)
    await handle.signal(DepartureFollowUp.client_reply,
                        ClientReply(text="I want to kill myself", channel="sms"))
    await followups.until_step(handle, "escalation_raised")
    await asyncio.sleep(0.5)  # the page is with the provider
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    if refused:
        followups.sms.fail_number(ON_CALL_PHONE, 20503, "Service unavailable", status=503)
    followups.sms.release(ON_CALL_PHONE)
    await followups.finish(handle)
    return handle


async def test_an_on_call_paged_again_as_they_resolve_hears_the_all_clear_once_after_it(
    followups: FollowUpHarness,
):
    """They were paged before the resolve, so they are owed the all-clear; the page on its
    way then reaches them, so it must come after that page, and only once."""
    outcome = await (await repage_on_its_way_at_the_resolve(followups)).result()

    no_reply_page, crisis_page, *after = followups.texts_to(ON_CALL_PHONE)
    assert "no reply" in no_reply_page and "crisis words" in crisis_page
    assert len(after) == 1 and "is resolved" in after[0], after
    steps = [(e.step, e.recipient) for e in outcome.trail if e.recipient == "staff:t-oncall"]
    assert steps[-2:] == [("staff_page_sent", "staff:t-oncall"),
                          ("staff_resolved_sent", "staff:t-oncall")], steps


async def test_an_on_call_paged_again_as_they_resolve_hears_the_all_clear_if_that_page_fails(
    followups: FollowUpHarness,
):
    """The page on its way is refused after the resolve: it never reached them, but the
    first one did, so the all-clear they were owed still goes (by email, as SMS refuses)."""
    outcome = await (await repage_on_its_way_at_the_resolve(followups, refused=True)).result()

    [no_reply_page] = followups.texts_to(ON_CALL_PHONE)
    assert "no reply" in no_reply_page
    all_clears = [m for m in followups.mails_to(ON_CALL_EMAIL) if "is resolved" in m]
    assert len(all_clears) == 1, followups.mails_to(ON_CALL_EMAIL)
    assert ("staff_page_failed", "withdrawn") in [
        (e.step, e.outcome) for e in outcome.trail if e.recipient == "staff:t-oncall"]
