"""The treating therapist hears how the follow-up ended: its outcome and any booked session,
by their own channel, in the trail, and nothing clinical."""

from __future__ import annotations

from tests.followup_harness import (
    CLIENT_EMAIL,
    CLIENT_PHONE,
    FollowUpHarness,
    make_event,
    policy_document,
)
from tests.test_followup import checked_in, reply

THERAPIST_EMAIL = "therapist@clinic.example"
WITH_THERAPIST = {**policy_document()["staff"],
                  "t-12": {"name": "Therapist", "email": THERAPIST_EMAIL, "channel": "email"}}


async def test_the_treating_therapist_hears_the_outcome_and_the_booked_session(
    followups: FollowUpHarness,
):
    event = make_event()
    handle = await followups.start(event, staff=WITH_THERAPIST)
    await checked_in(followups, handle)
    await reply(followups, handle, "OK")
    await followups.until_step(handle, "reschedule_offer_sent")
    await reply(followups, handle, "A")
    status = await followups.until_step(handle, "staff_debrief_sent")

    (debrief,) = followups.mail.sent_to(THERAPIST_EMAIL)
    assert "client safe" in debrief.text
    assert "Next session booked:" in debrief.text
    assert event.session_id in debrief.message["Subject"]
    for detail in ("Dana", CLIENT_PHONE, CLIENT_EMAIL, "moderate", "risk"):
        assert detail not in debrief.text, f"{detail!r} in the therapist's debrief"
    (sent,) = [e for e in status.trail if e.step == "staff_debrief_sent"]
    assert sent.recipient == "staff:t-12" and sent.channel == "email"
    steps = [e.step for e in status.trail]
    assert steps.index("booking_confirmed") < steps.index("staff_debrief_sent")
    await followups.finish(handle)


async def test_a_clinic_that_turned_the_debrief_off_tells_no_therapist(
    followups: FollowUpHarness,
):
    handle = await followups.start(make_event(), staff=WITH_THERAPIST, therapist_debrief=False)
    await checked_in(followups, handle)
    await reply(followups, handle, "OK")
    await followups.until_step(handle, "reschedule_offer_sent")
    await reply(followups, handle, "no")
    outcome = await followups.finish(handle)

    assert not followups.mail.sent_to(THERAPIST_EMAIL)
    assert not [e for e in outcome.trail if e.step.startswith("staff_debrief")]
