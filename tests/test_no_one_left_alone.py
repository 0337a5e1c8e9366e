"""The ways a person in crisis was found to be left alone, each driven end to end: a reply
at the wrong moment, a crisis worded as people text it, a chain nobody answers, an SMS
outage, quiet hours. Each test asserts who was reached, with what, and the trail."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from aftercare.followups.actions import acknowledge
from aftercare.followups.errors import ActionRefused
from tests.followup_harness import (
    BACKUP_EMAIL,
    CLIENT_PHONE,
    CONTACT_PHONE,
    LEAD_EMAIL,
    ON_CALL_EMAIL,
    ON_CALL_PHONE,
    FollowUpHarness,
    make_event,
    steps_in_order,
)
from tests.test_followup import checked_in, reply
from workflows.followup import DepartureFollowUp
from workflows.models import Acknowledge, ClientReply, Resolve


def entries(status, step: str):
    return [e for e in status.trail if e.step == step]


async def test_help_and_start_keep_the_clock_and_silence_still_pages(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await reply(followups, handle, "Help")
    await handle.signal(DepartureFollowUp.client_reply, ClientReply(text="ayuda", channel="api"))
    await followups.until_step(handle, "help_sent")
    await reply(followups, handle, "yes")
    await followups.advance(handle, timedelta(hours=1))
    status = await followups.until_step(handle, "staff_page_sent")

    assert status.escalation.reason == "no reply", "help is not a safe reply"
    assert "no reply" in followups.texts_to(ON_CALL_PHONE)[0]
    texts = followups.texts_to(CLIENT_PHONE)
    # Twilio answers an SMS "Help" itself; only the reply that came by API got ours.
    assert sum("STOP to stop" in t for t in texts) == 1
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    await followups.finish(handle)


async def test_crisis_after_an_acknowledged_page_pages_again_and_resends_resources(followups):
    handle = await followups.start(make_event("imminent"))
    status = await followups.until_step(handle, "staff_page_sent")
    await acknowledge(followups.client, handle.id, Acknowledge(staff_id="t-oncall"))
    pages_before = len(followups.texts_to(ON_CALL_PHONE))
    resources_before = sum("not alone" in t for t in followups.texts_to(CLIENT_PHONE))

    await reply(followups, handle, "I took all the pills, I want to die")
    await followups.until(handle, lambda s: len(followups.texts_to(ON_CALL_PHONE))
                          > pages_before, "the acknowledger paged again")
    await followups.until(handle, lambda s: sum("not alone" in t for t in
                                                followups.texts_to(CLIENT_PHONE))
                          > resources_before, "crisis resources sent again")
    page = followups.texts_to(ON_CALL_PHONE)[-1]
    assert "crisis words" in page and f"ACK {status.escalation.code}" in page
    status = await followups.status(handle)
    assert [e.outcome for e in entries(status, "reply_received")] == ["crisis_words"]
    assert entries(status, "escalation_raised")
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    await followups.finish(handle)


async def test_crisis_while_the_booking_webhook_is_down_pages_at_once(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await reply(followups, handle, "ok")
    await followups.until_step(handle, "reschedule_offer_sent")
    followups.booking.fail_next(3)  # down for a while, then back
    await reply(followups, handle, "A")
    await followups.until_step(handle, "reschedule_chosen")
    await reply(followups, handle, "actually I wanna kill my self")
    status = await followups.until_step(handle, "staff_page_sent")

    assert status.escalation.reason == "crisis words in a reply"
    assert "crisis words" in followups.texts_to(ON_CALL_PHONE)[0]
    assert followups.texts_to(CONTACT_PHONE), "the consenting emergency contact hears"
    assert not status.client_safe or status.escalation is not None
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    outcome = await followups.finish(handle)
    assert outcome.closed_reason.startswith("escalation resolved")


async def test_a_text_after_the_protocol_ends_still_reaches_the_clinic(followups):
    handle = await followups.start(make_event(), reschedule={"slots": []})
    await checked_in(followups, handle)
    await reply(followups, handle, "ok")
    status = await followups.until_step(handle, "listening")
    assert status.phase == "listening"
    await followups.advance(handle, timedelta(days=1))

    await reply(followups, handle, "me quiero matar")
    status = await followups.until_step(handle, "staff_page_sent")
    assert status.escalation.reason == "crisis words in a reply"
    assert "crisis words" in followups.texts_to(ON_CALL_PHONE)[0]
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    outcome = await followups.finish(handle)
    steps = [e.step for e in outcome.trail]
    assert steps_in_order(steps, "reply_received", "listening", "reply_received",
                          "escalation_started", "staff_page_sent", "resolved", "closed")
    assert steps[-1] == "closed"


async def test_an_exhausted_chain_pages_again_and_a_crisis_restarts_it_at_level_one(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await followups.advance(handle, timedelta(hours=1, minutes=40))
    status = await followups.until_step(handle, "escalation_unacknowledged")
    assert status.escalation.exhausted

    # As an on-call policy repeats: level 1 again right after the last level's timeout.
    status = await followups.until(handle, lambda s: steps_in_order(
        [e.step for e in s.trail], "escalation_unacknowledged", "escalation_repaged",
        "staff_page_sent"), "on-call paged again after exhaustion")
    exhausted_at = entries(status, "escalation_unacknowledged")[0].at
    repaged = entries(status, "escalation_repaged")[0]
    assert repaged.at == exhausted_at, "no quiet pause before the chain starts again"
    page_again = next(e for e in status.trail if e.seq > repaged.seq
                      and e.step == "staff_page_sent")
    assert page_again.recipient == "staff:t-oncall"
    assert page_again.at - exhausted_at < timedelta(minutes=1), "accepted as soon as sent"
    on_call_pages = len(followups.texts_to(ON_CALL_PHONE))

    await reply(followups, handle, "cutting myself again")
    await followups.until(handle, lambda s: len(followups.texts_to(ON_CALL_PHONE))
                          > on_call_pages, "a crisis pages level 1 at once")
    assert "crisis words" in followups.texts_to(ON_CALL_PHONE)[-1]
    assert followups.mails_to(LEAD_EMAIL)
    with pytest.raises(ActionRefused, match="not a staff member"):
        await acknowledge(followups.client, handle.id, Acknowledge(staff_id="t-nobody"))
    assert not (await followups.status(handle)).escalation.acknowledged_by
    await acknowledge(followups.client, handle.id, Acknowledge(staff_id="t-oncall"))
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    await followups.finish(handle)


async def test_sms_down_for_fifteen_minutes_the_page_goes_out_on_time_by_email(
    followups: FollowUpHarness,
):
    handle = await followups.start(make_event(email=None), reminders=["PT50M"])
    await checked_in(followups, handle)  # check-in at 10 min, window ends at 70 min
    await followups.advance(handle, timedelta(minutes=48))
    followups.sms.down = True  # minute 58 to 73
    await followups.advance(handle, timedelta(minutes=15))
    status = await followups.until_step(handle, "staff_page_sent")
    followups.sms.down = False
    await followups.advance(handle, timedelta(minutes=5))

    (page,) = followups.mails_to(ON_CALL_EMAIL)
    assert "no reply" in page
    no_reply = entries(status, "no_reply")[0]
    (sent,) = entries(status, "staff_page_sent")
    assert sent.channel == "email"
    assert sent.at - no_reply.at <= timedelta(minutes=1, seconds=30), "paged on time"
    assert len(followups.texts_to(CLIENT_PHONE)) == 1, "the reminder was dropped, not late"
    status = await followups.status(handle)
    (dropped,) = entries(status, "reminder_failed")
    assert dropped.outcome.startswith("dropped")
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    await followups.finish(handle)
    assert followups.mails_to(BACKUP_EMAIL) == []


def quiet_hours_from_now(timezone: str, hours: int) -> dict[str, str]:
    local = datetime.now(ZoneInfo(timezone))
    start = (local - timedelta(minutes=1)).time().replace(second=0, microsecond=0)
    end = (local + timedelta(hours=hours)).time().replace(second=0, microsecond=0)
    return {"start": start.isoformat("minutes"), "end": end.isoformat("minutes")}


async def test_quiet_hours_never_hold_back_a_high_risk_check_in(followups):
    zone = "Asia/Tokyo"
    handle = await followups.start(make_event("high", timezone=zone),
                                   quiet_hours=quiet_hours_from_now(zone, 4))
    await followups.advance(handle, timedelta(minutes=5))
    status = await followups.until_step(handle, "checkin_sent")
    assert not entries(status, "checkin_deferred")
    assert len(followups.texts_to(CLIENT_PHONE)) == 1
    await reply(followups, handle, "ok")
    await followups.finish(handle)


async def test_a_moderate_risk_window_reaching_into_quiet_hours_waits_for_morning(followups):
    zone = "Asia/Tokyo"
    local = datetime.now(ZoneInfo(zone))
    quiet = {"start": (local + timedelta(minutes=30)).strftime("%H:%M"),
             "end": (local + timedelta(hours=4, minutes=30)).strftime("%H:%M")}
    handle = await followups.start(make_event(timezone=zone), quiet_hours=quiet)
    await checked_in(followups, handle)  # at 10 min; quiet from ~30 min to ~270 min
    status = await followups.until_step(handle, "response_window_extended")
    (extended,) = entries(status, "response_window_extended")
    assert extended.outcome == "quiet hours"
    await followups.advance(handle, timedelta(hours=3))
    assert followups.texts_to(ON_CALL_PHONE) == [], "nobody is woken for a sleeping client"
    assert followups.texts_to(CONTACT_PHONE) == []
    assert len(followups.texts_to(CLIENT_PHONE)) == 1, "no reminder in quiet hours"

    await followups.advance(handle, timedelta(hours=2, minutes=30))
    status = await followups.until_step(handle, "staff_page_sent")
    assert steps_in_order([e.step for e in status.trail], "response_window_extended",
                          "reminder_sent", "no_reply", "staff_page_sent")
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    await followups.finish(handle)
