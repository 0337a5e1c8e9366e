"""The dev stack's sinks: what `make run` shows a developer of what Aftercare sent."""

import json

import httpx
from temporalio.testing import ActivityEnvironment

from activities.booking import BookingActivities
from activities.email import EmailActivities
from activities.sms import SmsActivities
from devsinks.stack import start_dev_sinks
from tests.fixtures.sinks import BOOKING_SECRETS
from tests.test_booking import choice
from tests.test_email import checkin as email_checkin
from tests.test_sms import checkin as sms_checkin


async def test_the_dev_stack_keeps_what_was_sent_on_disk_and_shows_it(
    tmp_path, delivery_settings, sqlite_store
):
    sinks = await start_dev_sinks(tmp_path, BOOKING_SECRETS, http_port=0, smtp_port=0)
    try:
        settings = delivery_settings.model_copy(
            update={"twilio_api_base_url": sinks.url, "smtp_port": sinks.mailbox.port}
        )
        env = ActivityEnvironment()
        await env.run(SmsActivities(settings, sqlite_store).send_sms, sms_checkin())
        email = email_checkin(key="checkin-1-email")
        await env.run(EmailActivities(settings, sqlite_store).send_email, email)
        booked = await env.run(
            BookingActivities(settings).request_booking,
            choice(sinks.booking.webhook_url("clinic-42")),
        )
        async with httpx.AsyncClient(base_url=sinks.url) as http:
            page = (await http.get("/")).text
            listed = (await http.get("/outbox")).json()
    finally:
        await sinks.stop()

    [mail] = (tmp_path / "mail" / "new").iterdir()
    private = {path.name: path.stat().st_mode & 0o777
               for path in (tmp_path, tmp_path / "outbox.jsonl", tmp_path / "mail", mail)}
    assert private == {tmp_path.name: 0o700, "outbox.jsonl": 0o600, "mail": 0o700,
                       mail.name: 0o600}
    [line] = (tmp_path / "outbox.jsonl").read_text().splitlines()
    assert json.loads(line)["to"] == sms_checkin().to == listed[0]["to"]
    assert booked.booking_id is not None
    assert "checking in after today" in page and "Checking in" in page
