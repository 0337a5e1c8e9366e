"""A clinic's templates may use every placeholder PLACEHOLDERS allows, and the workflow
fills each one in: what the policy check accepts never fails a follow-up at send time."""

from __future__ import annotations

from datetime import timedelta

from tests.followup_harness import BACKUP_EMAIL, CLIENT_PHONE, CONTACT_PHONE, make_event
from workflows.followup import DepartureFollowUp
from workflows.models import Acknowledge, ClientReply, Resolve
from workflows.templates import DEFAULT_TEMPLATES, PLACEHOLDERS


def every_placeholder_used() -> dict[str, dict[str, object]]:
    """The built-in templates, each ending with every placeholder it may use."""
    templates = {}
    for language, defaults in DEFAULT_TEMPLATES.items():
        fields = defaults.model_dump()
        for kind, allowed in PLACEHOLDERS.items():
            fields[kind] += " <" + " ".join(f"{name}={{{name}}}" for name in sorted(allowed)) + ">"
        templates[language] = fields
    return templates


async def test_every_placeholder_a_template_may_use_is_filled_in(followups):
    handle = await followups.start(
        make_event(), templates=every_placeholder_used(),
        reschedule={"slots": [{"after": "P1D", "at": "10:00"}], "offer_window": "PT1H",
                    "booking_url": "https://clinic.example/book"})
    await followups.advance(handle, timedelta(minutes=10))
    # The reply window opens once the check-in is out: only then may its hour be skipped.
    await followups.until_step(handle, "checkin_sent")
    await followups.advance(handle, timedelta(hours=1, minutes=10))
    await followups.until_step(handle, "emergency_contact_notified")
    await handle.signal(DepartureFollowUp.client_reply, ClientReply(text="ok", channel="sms"))
    await followups.until_step(handle, "staff_client_replied_sent")
    await handle.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id="t-backup"))
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-backup", outcome="reached_client"))
    await followups.until_step(handle, "reschedule_offer_sent")
    await handle.signal(DepartureFollowUp.client_reply, ClientReply(text="a", channel="sms"))
    outcome = await followups.finish(handle)

    sent = [*followups.texts_to(CLIENT_PHONE), *followups.texts_to(CONTACT_PHONE),
            *followups.mails_to(BACKUP_EMAIL)]
    assert all("{" not in text for text in sent)
    assert any("url=https://clinic.example/book" in text for text in sent)
    assert any("contact_name=Sam" in text for text in sent)
    assert [e.step for e in outcome.trail][-1] == "closed"
    assert "booking_confirmed_sent" in [e.step for e in outcome.trail]
