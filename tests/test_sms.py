"""The SMS activity, through the real twilio client, against the loopback outbox."""

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from sqlalchemy.exc import OperationalError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from activities.provider_errors import CONFIGURATION_ERRORS_METRIC, PROVIDER_MISCONFIGURED
from activities.sms import SMS_PROVIDER_UNAVAILABLE, SmsActivities
from aftercare.settings import (
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_TWILIO_FROM_NUMBER,
    Settings,
)
from devsinks.http import serve
from tests.metered import MeteredActivityEnvironment
from workflows.models import PERMANENT_DELIVERY_FAILURE, Channel, OutboundMessage

CLIENT_PHONE = "+15555550123"


def checkin(to: str = CLIENT_PHONE, key: str = "checkin-1") -> OutboundMessage:
    return OutboundMessage(
        workflow_id="followup-clinic-42-s-1",
        message_key=key,
        channel=Channel.SMS,
        to=to,
        body="Hi Dana, checking in after today. Reply OK if you're safe. Crisis line: 988",
    )


async def send(settings, ledger, message: OutboundMessage):
    return await ActivityEnvironment().run(SmsActivities(settings, ledger).send_sms, message)


async def test_a_checkin_reaches_the_outbox_through_the_twilio_client(
    delivery_settings, sqlite_store, sms_outbox
):
    delivery = await send(delivery_settings, sqlite_store, checkin())

    [sms] = sms_outbox.messages
    assert (sms.to, sms.from_, sms.body) == (CLIENT_PHONE, DEV_TWILIO_FROM_NUMBER, checkin().body)
    assert sms.status_callback == (
        "https://aftercare.test/v1/twilio/status?followup=followup-clinic-42-s-1"
    )
    assert delivery.provider_message_id == sms.sid
    assert sms.sid.startswith("SM") and len(sms.sid) == 34
    assert delivery.channel is Channel.SMS and not delivery.already_sent


async def test_the_same_message_sent_twice_texts_the_client_once(
    delivery_settings, sqlite_store, sms_outbox
):
    first = await send(delivery_settings, sqlite_store, checkin())
    again = await send(delivery_settings, sqlite_store, checkin())

    assert len(sms_outbox.messages) == 1
    assert again.already_sent and again.provider_message_id == first.provider_message_id


async def test_a_different_message_key_is_a_new_message(
    delivery_settings, sqlite_store, sms_outbox
):
    await send(delivery_settings, sqlite_store, checkin(key="checkin-1"))
    await send(delivery_settings, sqlite_store, checkin(key="reminder-1"))

    assert len(sms_outbox.messages) == 2


@pytest.mark.parametrize(
    "number", ["+15005550001", "+15005550002", "+15005550004", "+15005550009"]
)
async def test_a_number_twilio_will_never_text_fails_permanently_without_naming_it(
    delivery_settings, sqlite_store, sms_outbox, number
):
    with pytest.raises(ApplicationError) as failure:
        await send(delivery_settings, sqlite_store, checkin(to=number))

    assert failure.value.type == PERMANENT_DELIVERY_FAILURE
    assert failure.value.non_retryable
    assert number not in str(failure.value) and number[2:] not in str(failure.value)
    assert failure.value.__cause__ is None and failure.value.__suppress_context__
    assert sms_outbox.messages == []
    assert await sqlite_store.find_delivery("followup-clinic-42-s-1", "checkin-1") is None


async def test_any_other_client_error_from_twilio_is_permanent(
    delivery_settings, sqlite_store, sms_outbox
):
    sms_outbox.fail_number(CLIENT_PHONE, 21408, "Permission to send an SMS has not been enabled")

    with pytest.raises(ApplicationError) as failure:
        await send(delivery_settings, sqlite_store, checkin())

    assert failure.value.type == PERMANENT_DELIVERY_FAILURE and failure.value.non_retryable


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_twilio_outage_is_retried_and_then_sends_once(
    delivery_settings, sqlite_store, sms_outbox, status
):
    sms_outbox.fail_next(status=status)

    with pytest.raises(ApplicationError) as failure:
        await send(delivery_settings, sqlite_store, checkin())
    assert failure.value.type == SMS_PROVIDER_UNAVAILABLE
    assert not failure.value.non_retryable

    await send(delivery_settings, sqlite_store, checkin())
    assert len(sms_outbox.messages) == 1


async def test_an_unreachable_twilio_is_retried(delivery_settings, sqlite_store, sms_outbox):
    await sms_outbox.stop()

    with pytest.raises(ApplicationError) as failure:
        await send(delivery_settings, sqlite_store, checkin())

    assert failure.value.type == SMS_PROVIDER_UNAVAILABLE
    assert not failure.value.non_retryable


async def test_a_messaging_service_sends_in_place_of_a_from_number(
    delivery_settings, sqlite_store, sms_outbox
):
    settings = delivery_settings.model_copy(
        update={"twilio_messaging_service_sid": "MG" + "1" * 32, "twilio_status_callback": False}
    )

    await send(settings, sqlite_store, checkin())

    [sms] = sms_outbox.messages
    assert sms.messaging_service_sid == "MG" + "1" * 32 and sms.from_ is None
    assert sms.status_callback is None


async def test_credentials_twilio_refuses_are_the_operators_to_fix_not_the_clients(
    delivery_settings, sqlite_store, sms_outbox, caplog
):
    settings = delivery_settings.model_copy(
        update={
            "twilio_account_sid": "AC" + "f" * 32,
            "twilio_auth_token": "wrong",
            "twilio_from_number": DEV_TWILIO_FROM_NUMBER,
        }
    )
    environment = MeteredActivityEnvironment()

    with pytest.raises(ApplicationError) as failure:
        await environment.run(SmsActivities(settings, sqlite_store).send_sms, checkin())

    assert failure.value.type == PROVIDER_MISCONFIGURED, "retried, never a fallback"
    assert not failure.value.non_retryable and "20003" in str(failure.value)
    [(count, labels)] = environment.counted(CONFIGURATION_ERRORS_METRIC)
    assert count == 1 and {"provider": "twilio", "code": "20003"}.items() <= labels.items()
    [logged] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "twilio refused our account or settings" in logged.getMessage()
    assert CLIENT_PHONE not in caplog.text
    assert sms_outbox.messages == []


@pytest.mark.parametrize(("status", "code"), [(403, 20003), (404, 20404), (400, 21212),
                                              (400, 21606), (401, 20005)])
async def test_twilio_refusing_our_account_or_sender_is_retried(
    delivery_settings, sqlite_store, sms_outbox, status, code
):
    sms_outbox.fail_next(status=status, code=code)

    with pytest.raises(ApplicationError) as failure:
        await send(delivery_settings, sqlite_store, checkin())
    assert failure.value.type == PROVIDER_MISCONFIGURED and not failure.value.non_retryable

    await send(delivery_settings, sqlite_store, checkin())
    assert len(sms_outbox.messages) == 1


async def test_without_credentials_or_an_endpoint_sms_cannot_be_configured(sqlite_store):
    settings = Settings(
        twilio_account_sid=None, twilio_auth_token=None, twilio_api_base_url=None
    )

    with pytest.raises(ValueError, match="TWILIO_API_BASE_URL"):
        SmsActivities(settings, sqlite_store)


@pytest.mark.parametrize(
    ("undeliverable", "final"),
    [
        (False, {"MessageStatus": "delivered"}),
        (True, {"MessageStatus": "undelivered", "ErrorCode": "30003"}),
    ],
)
async def test_the_outbox_reports_delivery_to_the_status_callback_signed_as_twilio_does(
    delivery_settings, sqlite_store, sms_outbox, undeliverable, final
):
    receipts: asyncio.Queue = asyncio.Queue()

    async def status_callback(request: web.Request) -> web.Response:
        await receipts.put((dict(await request.post()), request.headers["X-Twilio-Signature"]))
        return web.Response(status=204)

    runner, url = await serve([web.post("/v1/twilio/status", status_callback)])
    sms_outbox.send_status_callbacks = True
    if undeliverable:
        sms_outbox.fail_delivery(CLIENT_PHONE)
    try:
        settings = delivery_settings.model_copy(update={"public_base_url": url})
        delivery = await send(settings, sqlite_store, checkin())
        sent, outcome = [await asyncio.wait_for(receipts.get(), 5) for _ in range(2)]
    finally:
        await runner.cleanup()

    validator = RequestValidator(DEV_TWILIO_AUTH_TOKEN)
    for params, signature in (sent, outcome):
        assert validator.validate(
            f"{url}/v1/twilio/status?followup=followup-clinic-42-s-1", params, signature
        )
        assert params["MessageSid"] == delivery.provider_message_id
    assert sent[0]["MessageStatus"] == "sent"
    assert final.items() <= outcome[0].items()


async def test_the_outbox_serves_twilios_messages_list_to_the_twilio_client(
    delivery_settings, sqlite_store, sms_outbox
):
    for key in ("checkin-1", "reminder-1", "reminder-2"):
        await send(delivery_settings, sqlite_store, checkin(key=key))
    await send(delivery_settings, sqlite_store, checkin(to="+15555550111", key="page-1"))
    async with AsyncTwilioHttpClient() as http:
        client = Client(DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN, http_client=http)
        client.api.base_url = sms_outbox.url
        paged = await client.messages.list_async(to=CLIENT_PHONE, page_size=2)
        today = await client.messages.list_async(
            to=CLIENT_PHONE, date_sent_after=sms_outbox.messages[0].date_created)
        tomorrow = await client.messages.list_async(
            date_sent_after=sms_outbox.messages[0].date_created + timedelta(days=1))

    to_client = [sms.sid for sms in sms_outbox.sent_to(CLIENT_PHONE)]
    assert [m.sid for m in paged] == to_client[::-1], "newest first, across pages"
    assert [m.sid for m in today] == to_client[::-1] and tomorrow == []
    assert paged[0].body == checkin().body and paged[0].status == "sent"
    assert paged[0].date_created.tzinfo is not None and paged[0].date_sent is not None


async def test_a_send_the_ledger_never_heard_of_is_found_at_twilio_not_sent_again(
    delivery_settings, sqlite_store, sms_outbox, tmp_path
):
    # Twilio accepts the text, then a backup holds the store: the delivery can't be recorded.
    holder = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    sms_outbox.on_accept = lambda _sms: holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(OperationalError, match="locked"):
            await send(delivery_settings, sqlite_store, checkin())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    sms_outbox.on_accept = None

    retried = await send(delivery_settings, sqlite_store, checkin())

    [sms] = sms_outbox.messages
    assert retried.already_sent and retried.provider_message_id == sms.sid
    found = await sqlite_store.find_delivery("followup-clinic-42-s-1", "checkin-1")
    assert found.provider_message_id == sms.sid


async def test_an_attempt_that_never_reached_twilio_is_sent_on_retry(
    delivery_settings, sqlite_store, sms_outbox
):
    await sqlite_store.record_send_attempt(
        "followup-clinic-42-s-1", "checkin-1", 1, datetime.now(UTC) - timedelta(seconds=30))

    delivery = await send(delivery_settings, sqlite_store, checkin())

    [sms] = sms_outbox.messages
    assert not delivery.already_sent and delivery.provider_message_id == sms.sid


async def test_the_same_words_sent_earlier_under_another_key_are_not_mistaken_for_this_one(
    delivery_settings, sqlite_store, sms_outbox
):
    first = await send(delivery_settings, sqlite_store, checkin(key="reminder-1"))
    await sqlite_store.record_send_attempt(
        "followup-clinic-42-s-1", "reminder-2", 1, datetime.now(UTC))

    second = await send(delivery_settings, sqlite_store, checkin(key="reminder-2"))

    assert len(sms_outbox.messages) == 2
    assert not second.already_sent and second.provider_message_id != first.provider_message_id
