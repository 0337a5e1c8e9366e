"""Every branch of the follow-up protocol, end to end on the time-skipping dev server.

Each test asserts what reached the SMS endpoint or the SMTP server (recipient, language,
crisis line, no clinical detail) and the trail's steps in order, in the query and in the
audit store.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from aftercare.followups.actions import acknowledge, cancel
from aftercare.followups.errors import ActionRefused
from aftercare.temporal.codec import EncryptionCodec
from tests.followup_harness import (
    BACKUP_EMAIL,
    CLIENT_EMAIL,
    CLIENT_PHONE,
    CONTACT_PHONE,
    LEAD_EMAIL,
    ON_CALL_EMAIL,
    ON_CALL_PHONE,
    FollowUpHarness,
    assert_client_message,
    make_event,
    quiet_hours_around_now,
    steps_in_order,
)
from workflows.followup import DepartureFollowUp
from workflows.models import Acknowledge, Cancel, ClientReply, DeliveryFailure, Resolve
from workflows.trail import first_break


async def reply(followups: FollowUpHarness, handle, text: str) -> None:
    before = len((await followups.status(handle)).trail)
    await handle.signal(DepartureFollowUp.client_reply, ClientReply(text=text, channel="sms"))
    await followups.until(
        handle, lambda s: "reply_received" in [e.step for e in s.trail[before:]],
        f"reply {text!r} recorded")


async def checked_in(followups: FollowUpHarness, handle) -> None:
    await followups.advance(handle, timedelta(minutes=10))
    await followups.until_step(handle, "checkin_sent")


async def stored_steps(followups: FollowUpHarness, workflow_id: str) -> list[str]:
    entries = await followups.store.entries(workflow_id)
    assert first_break(entries) is None, "the stored chain verifies"
    return [e.step for e in entries]


async def test_ok_reply_marks_client_safe_and_offers_reschedule(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    (checkin,) = followups.texts_to(CLIENT_PHONE)
    assert_client_message(checkin)
    assert "Reply OK" in checkin

    await reply(followups, handle, "ok")
    outcome = await followups.finish(handle)

    assert outcome.client_safe and outcome.escalation is None
    texts = followups.texts_to(CLIENT_PHONE)
    assert "glad" in texts[1]
    assert "book your next session" in texts[2] and "Reply A" in texts[2]
    for text in texts:
        assert_client_message(text)
    assert followups.texts_to(ON_CALL_PHONE) == []
    steps = [e.step for e in outcome.trail]
    assert steps_in_order(steps, "received", "checkin_scheduled", "checkin_sent",
                          "reply_received", "glad_you_are_ok_sent", "reschedule_offer_sent",
                          "reschedule_not_chosen", "closed")
    assert outcome.trail[-1].outcome == "client safe"
    assert await stored_steps(followups, handle.id) == steps


async def test_call_reply_pages_on_call_for_a_call_back(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await reply(followups, handle, "CALL")
    await followups.until_step(handle, "call_requested_sent")  # beside the page, not before
    status = await followups.until_step(handle, "staff_page_sent")

    assert "call you soon" in followups.texts_to(CLIENT_PHONE)[1]
    (page,) = followups.texts_to(ON_CALL_PHONE)
    assert "client asked for a call" in page and f"ACK {status.escalation.code}" in page
    assert "Dana" not in page and CLIENT_PHONE not in page
    assert followups.texts_to(CONTACT_PHONE) == [], "a call request is no emergency"

    await handle.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id="t-oncall"))
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    outcome = await followups.finish(handle)
    assert outcome.escalation.outcome == "reached_client"
    steps = [e.step for e in outcome.trail]
    assert steps_in_order(steps, "reply_received", "escalation_started", "staff_page_sent",
                          "acknowledged", "resolved", "staff_resolved_sent", "closed")
    assert steps_in_order(steps, "reply_received", "call_requested_sent", "closed")


async def test_stop_silences_the_client_without_paging_at_moderate_risk(followups):
    handle = await followups.start(make_event("moderate"))
    await checked_in(followups, handle)
    await reply(followups, handle, "STOP")
    outcome = await followups.finish(handle)

    assert followups.texts_to(CLIENT_PHONE) == [followups.texts_to(CLIENT_PHONE)[0]], (
        "nothing after STOP: no reminder, no reschedule offer")
    assert followups.texts_to(ON_CALL_PHONE) == []
    steps = [e.step for e in outcome.trail]
    assert steps_in_order(steps, "checkin_sent", "reply_received", "reminder_skipped", "closed")
    assert outcome.trail[-1].outcome == "client opted out"
    assert "escalation_started" not in steps


async def test_stop_at_high_risk_still_pages_staff_but_never_the_client(followups):
    handle = await followups.start(make_event("high"))
    await followups.advance(handle, timedelta(minutes=5))
    await followups.until_step(handle, "checkin_sent")
    await reply(followups, handle, "stop")
    status = await followups.until_step(handle, "staff_page_sent")

    assert status.opted_out
    assert "opted out at high risk" in followups.texts_to(ON_CALL_PHONE)[0]
    await followups.advance(handle, timedelta(minutes=30))
    assert len(followups.texts_to(CLIENT_PHONE)) == 1, "only the check-in, before STOP"
    assert followups.texts_to(CONTACT_PHONE) == [], "an opt-out is not a reason to disclose"
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-backup", outcome="reached_client"))
    outcome = await followups.finish(handle)
    assert len(followups.texts_to(CLIENT_PHONE)) == 1, "no reschedule offer after STOP"
    assert outcome.trail[-1].outcome == "escalation resolved: reached_client"


async def test_start_after_stop_lets_messages_through_again(followups):
    handle = await followups.start(make_event(), sms_keywords_answered_by_provider=False)
    await checked_in(followups, handle)
    await reply(followups, handle, "STOP")
    await reply(followups, handle, "START")
    await followups.until_step(handle, "opted_in_sent")
    texts = followups.texts_to(CLIENT_PHONE)
    assert len(texts) == 2 and "receiving messages" in texts[1]
    assert_client_message(texts[1])
    await reply(followups, handle, "1")
    outcome = await followups.finish(handle)
    assert outcome.client_safe
    steps = [e.step for e in outcome.trail]
    assert steps_in_order(steps, "reply_received", "reply_received", "opted_in_sent",
                          "reschedule_offer_sent")
    assert steps_in_order(steps, "reply_received", "reply_received", "reply_received",
                          "glad_you_are_ok_sent")


async def test_crisis_words_escalate_at_once_with_crisis_resources(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await reply(followups, handle, "OK but honestly I want to die")
    await followups.until_step(handle, "crisis_resources_sent")
    status = await followups.until_step(handle, "emergency_contact_notified")

    assert status.escalation.reason == "crisis words in a reply" and not status.client_safe
    crisis = followups.texts_to(CLIENT_PHONE)[1]
    assert "not alone" in crisis
    assert_client_message(crisis)
    assert "crisis words" in followups.texts_to(ON_CALL_PHONE)[0]
    (notice,) = followups.texts_to(CONTACT_PHONE)
    assert "Sam" in notice and "Dana" in notice and "988" in notice
    steps = await followups.steps(handle)
    for step in ("staff_page_sent", "emergency_contact_notified", "crisis_resources_sent"):
        assert steps_in_order(steps, "reply_received", "escalation_started", step)
    assert "ack_timeout" not in steps, "the contact hears at once, not after a timeout"
    await handle.execute_update(DepartureFollowUp.cancel,
                                Cancel(staff_id="t-oncall", reason="test over"))
    await followups.finish(handle)


async def test_unknown_text_asks_on_call_to_read_it(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await reply(followups, handle, "not sure how I feel tbh")
    await followups.until_step(handle, "reply_received_sent")
    status = await followups.until_step(handle, "staff_page_sent")

    assert status.reply_for_review == "not sure how I feel tbh"
    assert "will read your message" in followups.texts_to(CLIENT_PHONE)[1]
    page = followups.texts_to(ON_CALL_PHONE)[0]
    assert "needs reading" in page and "not sure" not in page, "the text stays off the page"
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    outcome = await followups.finish(handle)
    assert [e.outcome for e in outcome.trail if e.step == "reply_received"] == ["needs_review"]


async def test_no_reply_pages_on_call_who_acks_and_resolves_and_everyone_paged_is_told(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await followups.advance(handle, timedelta(hours=1))
    status = await followups.until_step(handle, "staff_page_sent")

    texts = followups.texts_to(CLIENT_PHONE)
    assert len(texts) == 2 and "again" in texts[1], "check-in then one reminder"
    assert status.escalation.reason == "no reply" and status.escalation.level == 1
    await reply(followups, handle, "ok")
    # The text reaches the phone before its send is over (the send then stores the trail
    # it carried): act once the follow-up has recorded it, as the trail's order says.
    await followups.until(handle, lambda s: len(followups.texts_to(ON_CALL_PHONE)) == 2
                          and "staff_client_replied_sent" in [e.step for e in s.trail],
                          "on-call told the client answered")
    assert "replied (safe)" in followups.texts_to(ON_CALL_PHONE)[1]
    assert (await followups.status(handle)).phase == "escalating", "staff still close it"
    acked = await acknowledge(followups.client, handle.id, Acknowledge(staff_id="t-oncall"))
    assert acked.message == "acknowledged by t-oncall"
    with pytest.raises(ActionRefused, match="already acknowledged by t-oncall"):
        await acknowledge(followups.client, handle.id, Acknowledge(staff_id="t-lead"))
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    outcome = await followups.finish(handle)

    pages = followups.texts_to(ON_CALL_PHONE)
    assert len(pages) == 3 and "is resolved" in pages[2]
    assert followups.mails_to(BACKUP_EMAIL) == [], "level 2 never paged"
    assert followups.texts_to(CONTACT_PHONE) == []
    steps = [e.step for e in outcome.trail]
    assert steps_in_order(steps, "checkin_sent", "reminder_sent", "no_reply",
                          "escalation_started", "staff_page_sent", "reply_received",
                          "staff_client_replied_sent", "acknowledged", "resolved",
                          "staff_resolved_sent", "closed")
    assert steps_in_order(steps, "resolved", "reschedule_offer_sent", "closed")
    assert await stored_steps(followups, handle.id) == steps


async def test_no_ack_moves_to_backup_and_consenting_emergency_contact(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await followups.advance(handle, timedelta(hours=1, minutes=10))
    status = await followups.until_step(handle, "emergency_contact_notified")

    assert status.escalation.level == 2
    (page,) = followups.mails_to(BACKUP_EMAIL)
    assert "no reply" in page and "/r/" in page, "email pages carry a signed ack link"
    (notice,) = followups.texts_to(CONTACT_PHONE)
    assert "emergency contact" in notice and "988" in notice
    await handle.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id="t-backup"))
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-backup", outcome="could_not_reach"))
    outcome = await followups.finish(handle)
    told = followups.texts_to(ON_CALL_PHONE)[-1], followups.mails_to(BACKUP_EMAIL)[-1]
    assert all("is resolved" in t for t in told), "both paged staff hear it is resolved"
    disclosure = next(e for e in outcome.trail if e.step == "emergency_contact_notified")
    assert disclosure.detail == {"basis": "client consent", "why": "no reply"}
    assert disclosure.recipient == "emergency_contact"


async def test_imminent_risk_escalates_at_once_and_still_sends_crisis_resources(followups):
    handle = await followups.start(make_event("imminent"))
    await followups.until_step(handle, "crisis_resources_sent")
    status = await followups.until_step(handle, "emergency_contact_notified")

    assert status.escalation.reason == "imminent risk"
    (crisis,) = followups.texts_to(CLIENT_PHONE)
    assert_client_message(crisis)
    assert "imminent risk" in followups.texts_to(ON_CALL_PHONE)[0]
    assert len(followups.texts_to(CONTACT_PHONE)) == 1
    steps = await followups.steps(handle)
    # The page and the crisis resources go out side by side: neither waits for the other.
    for step in ("staff_page_sent", "emergency_contact_notified", "crisis_resources_sent"):
        assert steps_in_order(steps, "received", "escalation_started", step)
    assert "checkin_scheduled" not in steps
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall",
                                        outcome="emergency_services_contacted"))
    await followups.finish(handle)


async def test_emergency_contact_without_consent_is_never_contacted(followups):
    handle = await followups.start(make_event("imminent", consent=False))
    await followups.until_step(handle, "emergency_contact_skipped")
    await followups.advance(handle, timedelta(minutes=30))
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-lead", outcome="could_not_reach"))
    outcome = await followups.finish(handle)

    assert followups.texts_to(CONTACT_PHONE) == []
    steps = [e.step for e in outcome.trail]
    assert "emergency_contact_notified" not in steps
    assert steps.count("emergency_contact_skipped") == 1
    assert followups.mails_to(BACKUP_EMAIL), "the backup level was still paged"


async def test_quiet_hours_defer_the_check_in(followups):
    zone = "Asia/Tokyo"
    handle = await followups.start(make_event(timezone=zone),
                                   quiet_hours=quiet_hours_around_now(zone))
    await followups.advance(handle, timedelta(minutes=30))
    status = await followups.until_step(handle, "checkin_deferred")
    assert followups.texts_to(CLIENT_PHONE) == [], "no check-in during quiet hours"
    deferred = next(e for e in status.trail if e.step == "checkin_deferred")
    assert deferred.outcome == "quiet hours"

    await followups.advance(handle, timedelta(hours=3))
    await followups.until_step(handle, "checkin_sent")
    await reply(followups, handle, "ok")
    await followups.finish(handle)


async def test_quiet_hours_never_defer_an_escalation(followups):
    zone = "Asia/Tokyo"
    handle = await followups.start(make_event("imminent", timezone=zone),
                                   quiet_hours=quiet_hours_around_now(zone))
    await followups.until_step(handle, "staff_page_sent")
    assert len(followups.texts_to(CLIENT_PHONE)) == 1, "crisis resources go out at once"
    assert len(followups.texts_to(ON_CALL_PHONE)) == 1
    assert "deferred" not in " ".join(await followups.steps(handle))
    await handle.execute_update(DepartureFollowUp.cancel, Cancel(staff_id="t-oncall",
                                                                 reason="test over"))
    await followups.finish(handle)


async def test_sms_permanent_failure_falls_back_to_email(followups):
    unreachable = "+15005550001"  # Twilio: not a valid phone number (21211)
    handle = await followups.start(make_event(phone=unreachable))
    await checked_in(followups, handle)

    assert followups.sms.sent_to(unreachable) == []
    (checkin,) = followups.mails_to(CLIENT_EMAIL)
    assert_client_message(checkin)
    assert "/r/" in checkin, "email check-ins carry one-click reply links"
    await reply(followups, handle, "ok")
    outcome = await followups.finish(handle)
    steps = [e.step for e in outcome.trail]
    assert steps_in_order(steps, "checkin_failed", "checkin_sent", "channel_fallback",
                          "glad_you_are_ok_sent")
    assert [e.channel for e in outcome.trail if e.step.endswith("_sent")][:2] == ["email",
                                                                                  "email"]


async def test_cancel_mid_wait_stops_everything_and_tells_paged_staff(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await followups.advance(handle, timedelta(hours=1))
    await followups.until_step(handle, "staff_page_sent")
    await handle.execute_update(DepartureFollowUp.cancel,
                                Cancel(staff_id="t-oncall", reason="client came back"))
    outcome = await followups.finish(handle)

    assert outcome.closed_reason == "cancelled"
    assert "client came back" not in str([e.model_dump() for e in outcome.trail]), (
        "staff free text stays out of the trail")
    (note,) = await followups.store.notes(handle.id)
    assert (note.kind, note.staff_id) == ("cancel_reason", "t-oncall")
    codec = EncryptionCodec(followups.settings.encryption_keys)
    assert codec.open(note.sealed_text).decode() == "client came back"
    assert outcome.trail[note.audit_seq - 1].step == "cancelled"
    assert "closed by staff" in followups.texts_to(ON_CALL_PHONE)[-1]
    assert len(followups.texts_to(CLIENT_PHONE)) == 2, "nothing to the client after cancel"
    assert followups.mails_to(BACKUP_EMAIL) == []
    with pytest.raises(ActionRefused, match="closed"):
        await cancel(followups.client, handle.id, Cancel(staff_id="t-lead", reason="again"))


async def test_reschedule_choice_books_through_the_signed_webhook_and_confirms(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await reply(followups, handle, "ok")
    await followups.until_step(handle, "reschedule_offer_sent")
    await reply(followups, handle, "b")
    outcome = await followups.finish(handle)

    (call,) = followups.booking.calls
    assert call.verified, "the webhook's HMAC-SHA256 signature checks out"
    assert call.json["workflow_id"] == handle.id
    assert "Dana" not in str(call.json) and CLIENT_PHONE not in str(call.json)
    confirmation = followups.texts_to(CLIENT_PHONE)[-1]
    assert "booked" in confirmation
    assert_client_message(confirmation)
    assert outcome.rescheduled_slot is not None
    assert steps_in_order([e.step for e in outcome.trail], "reschedule_offer_sent",
                          "reply_received", "reschedule_chosen", "booking_confirmed",
                          "booking_confirmed_sent", "closed")


async def test_spanish_speaking_client_is_written_to_in_spanish(followups):
    handle = await followups.start(make_event(language="es-MX"))
    await checked_in(followups, handle)
    (checkin,) = followups.texts_to(CLIENT_PHONE)
    assert "Hola Dana" in checkin and "988" in checkin
    assert_client_message(checkin, language="es")
    await reply(followups, handle, "estoy bien")
    await followups.until_step(handle, "reschedule_offer_sent")
    await reply(followups, handle, "A")
    await followups.finish(handle)
    texts = followups.texts_to(CLIENT_PHONE)
    assert "Gracias" in texts[1]
    offer, booked = texts[2], texts[3]
    assert "Responde A para" in offer and "Responde B para" in offer
    assert any(day in offer for day in ("lun ", "mar ", "mié ", "jue ", "vie ", "sab ", "dom "))
    assert "Tu cita es el" in booked and "10:00" in booked


async def test_nobody_acknowledging_keeps_the_follow_up_open_and_says_so(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await followups.advance(handle, timedelta(hours=1, minutes=40))
    status = await followups.until_step(handle, "escalation_unacknowledged")

    assert status.escalation.exhausted and status.phase == "escalating"
    assert followups.mails_to(LEAD_EMAIL), "the clinic lead was the last level paged"
    await followups.advance(handle, timedelta(hours=1))
    status = await followups.status(handle)
    assert status.phase == "escalating", "never closes on its own"
    assert "escalation_repaged" in [e.step for e in status.trail], "and is never silent"
    await acknowledge(followups.client, handle.id, Acknowledge(staff_id="t-lead"))
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-lead", outcome="could_not_reach"))
    outcome = await followups.finish(handle)
    assert steps_in_order([e.step for e in outcome.trail], "ack_timeout", "ack_timeout",
                          "ack_timeout", "escalation_unacknowledged", "acknowledged",
                          "resolved")


async def test_undelivered_check_in_is_sent_again_by_email(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    (sms,) = followups.sms.sent_to(CLIENT_PHONE)
    await handle.signal(DepartureFollowUp.delivery_failed,
                        DeliveryFailure(provider_message_id=sms.sid, error_code="30003"))
    await followups.until_step(handle, "channel_fallback")

    (mail,) = followups.mails_to(CLIENT_EMAIL)
    assert_client_message(mail)
    assert (await followups.status(handle)).channel == "email"
    await reply(followups, handle, "ok")
    outcome = await followups.finish(handle)
    assert steps_in_order([e.step for e in outcome.trail], "checkin_sent", "checkin_undelivered",
                          "checkin_sent", "channel_fallback")


async def test_crisis_after_a_resolved_escalation_pages_again(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await reply(followups, handle, "CALL")
    await followups.until_step(handle, "staff_page_sent")
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    await followups.until_step(handle, "reschedule_offer_sent")
    await reply(followups, handle, "I want to end my life")
    status = await followups.until_step(handle, "emergency_contact_notified")

    assert status.escalation.reason == "crisis words in a reply"
    assert status.escalation.acknowledged_by is None, "a new escalation needs a new ack"
    with pytest.raises(ActionRefused, match="that code does not match"):
        await acknowledge(followups.client, handle.id,
                          Acknowledge(staff_id="t-oncall", code="000000"))
    await acknowledge(followups.client, handle.id,
                      Acknowledge(staff_id="t-oncall", code=status.escalation.code))
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall",
                                        outcome="emergency_services_contacted"))
    outcome = await followups.finish(handle)
    assert [e.step for e in outcome.trail].count("escalation_started") == 2
    assert outcome.closed_reason == "escalation resolved: emergency_services_contacted"


async def test_crisis_words_while_the_offer_waits_for_quiet_hours_page_instead_of_offering(
    followups,
):
    zone = "Asia/Tokyo"
    handle = await followups.start(make_event(timezone=zone),
                                   quiet_hours=quiet_hours_around_now(zone))
    await followups.advance(handle, timedelta(minutes=30))
    await followups.until_step(handle, "checkin_deferred")
    await reply(followups, handle, "ok")  # e.g. by the API, before any check-in went out
    await followups.until_step(handle, "reschedule_offer_deferred")
    await reply(followups, handle, "I want to end my life")
    await followups.until_step(handle, "staff_page_sent")
    status = await followups.until_step(handle, "crisis_resources_sent")

    steps = [e.step for e in status.trail]
    assert "reschedule_offer_sent" not in steps
    for step in ("crisis_resources_sent", "staff_page_sent"):
        assert steps_in_order(steps, "reschedule_offer_deferred", "reply_received",
                              "escalation_started", step)
    assert "not alone" in followups.texts_to(CLIENT_PHONE)[-1], "quiet hours never hold it"
    await handle.execute_update(DepartureFollowUp.cancel,
                                Cancel(staff_id="t-oncall", reason="test over"))
    await followups.finish(handle)


async def test_an_undelivered_page_reaches_the_on_call_by_email(followups):
    handle = await followups.start(make_event())
    await checked_in(followups, handle)
    await followups.advance(handle, timedelta(hours=1))
    await followups.until_step(handle, "staff_page_sent")
    (page,) = followups.sms.sent_to(ON_CALL_PHONE)
    await handle.signal(DepartureFollowUp.delivery_failed,
                        DeliveryFailure(provider_message_id=page.sid, error_code="30006"))
    status = await followups.until_step(handle, "channel_fallback")

    (mail,) = followups.mails_to(ON_CALL_EMAIL)
    assert f"ACK {status.escalation.code}" in mail and "/r/" in mail, "with its ack link"
    assert status.channel == "sms", "the client's channel is untouched"
    fallback = next(e for e in status.trail if e.step == "channel_fallback")
    assert (fallback.recipient, fallback.channel) == ("staff:t-oncall", "email")
    await handle.execute_update(DepartureFollowUp.cancel,
                                Cancel(staff_id="t-oncall", reason="test over"))
    await followups.finish(handle)
