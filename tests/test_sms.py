"""The SMS activity, through the real twilio client, against the loopback outbox."""

import asyncio
import dataclasses
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from sqlalchemy.engine import make_url
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from activities.audit import TrailBatches
from activities.delivery_ledger import BACKLOG_METRIC
from activities.provider_errors import CONFIGURATION_ERRORS_METRIC, PROVIDER_MISCONFIGURED
from activities.sms import SMS_PROVIDER_UNAVAILABLE, SmsActivities
from aftercare.settings import (
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_TWILIO_FROM_NUMBER,
    Settings,
)
from aftercare.temporal.codec import EncryptionCodec
from aftercare.trail.store import AuditStore
from devsinks.http import serve
from tests.fixtures.relay import TcpRelay
from tests.metered import MeteredActivityEnvironment
from tests.trails import sealed_trail
from workflows.models import PERMANENT_DELIVERY_FAILURE, AuditBatch, Channel, OutboundMessage
from workflows.trail import seal

CLIENT_PHONE = "+15555550123"
ON_CALL_PHONE = "+15555550111"
WORKFLOW_ID = "followup-clinic-42-s-1"


def checkin(to: str = CLIENT_PHONE, key: str = "checkin-1") -> OutboundMessage:
    return OutboundMessage(
        workflow_id="followup-clinic-42-s-1",
        message_key=key,
        channel=Channel.SMS,
        to=to,
        body="Hi Dana, checking in after today. Reply OK if you're safe. Crisis line: 988",
    )


def attempt_of(number: int, first_scheduled: datetime | None = None) -> ActivityEnvironment:
    """The activity's ``number``th attempt, the first scheduled at ``first_scheduled``."""
    first_scheduled = first_scheduled or datetime.now(UTC) - timedelta(seconds=10)
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(
        environment.info, attempt=number, scheduled_time=first_scheduled,
        current_attempt_scheduled_time=datetime.now(UTC), started_time=datetime.now(UTC))
    return environment


async def send(settings, ledger, message: OutboundMessage, attempt: int = 1):
    """One attempt on a worker's activities, which it leaves once the ledger has the
    delivery (or the ledger is found unavailable for too long)."""
    async with SmsActivities(settings, ledger) as sms:
        return await attempt_of(attempt).run(sms.send_sms, message)


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


async def test_a_retry_of_a_text_twilio_accepted_texts_the_client_once(
    delivery_settings, sqlite_store, sms_outbox
):
    first = await send(delivery_settings, sqlite_store, checkin())
    again = await send(delivery_settings, sqlite_store, checkin(), attempt=2)

    assert len(sms_outbox.messages) == 1
    assert again.already_sent and again.provider_message_id == first.provider_message_id
    recorded = await sqlite_store.find_delivery("followup-clinic-42-s-1", "checkin-1")
    assert recorded.provider_message_id == first.provider_message_id


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
        async with SmsActivities(settings, sqlite_store) as sms:
            await environment.run(sms.send_sms, checkin())

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


async def test_a_page_due_while_the_store_is_locked_goes_out_and_the_ledger_catches_up(
    delivery_settings, sqlite_store, sms_outbox, tmp_path
):
    # A backup holds the audit store's write lock from another connection, as another
    # process would, for longer than any send may wait for it.
    holder = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    environment = MeteredActivityEnvironment()
    environment.info = attempt_of(1).info
    try:
        async with SmsActivities(delivery_settings, sqlite_store) as sms:
            page = await environment.run(sms.send_sms, checkin(to=ON_CALL_PHONE, key="page"))
            [sms_sent] = sms_outbox.messages
            assert page.provider_message_id == sms_sent.sid, "out before the store is free"
            assert await sqlite_store.find_delivery(WORKFLOW_ID, "page") is None
            holder.execute("ROLLBACK")
            # The worker stops: its recorder writes what the lock held back.
    finally:
        holder.close()

    recorded = await sqlite_store.find_delivery(WORKFLOW_ID, "page")
    assert recorded.provider_message_id == sms_sent.sid
    backlog = [value for value, _ in environment.counted(BACKLOG_METRIC)]
    assert backlog == [1, 0], "operators see the ledger behind, then caught up"


async def test_a_retry_while_the_store_is_locked_finds_the_text_the_worker_remembers(
    delivery_settings, sqlite_store, sms_outbox, tmp_path
):
    holder = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        async with SmsActivities(delivery_settings, sqlite_store) as sms:
            first = await attempt_of(1).run(sms.send_sms, checkin())
            # Temporal never heard of the result (a timeout): the retry runs here too.
            retried = await attempt_of(2).run(sms.send_sms, checkin())
            assert sms.recorder.backlog == 1
            holder.execute("ROLLBACK")
    finally:
        holder.close()

    assert len(sms_outbox.messages) == 1
    assert retried.already_sent and retried.provider_message_id == first.provider_message_id
    recorded = await sqlite_store.find_delivery(WORKFLOW_ID, "checkin-1")
    assert recorded.provider_message_id == first.provider_message_id


async def test_a_text_the_ledger_never_heard_of_is_found_at_twilio_not_sent_again(
    delivery_settings, sqlite_store, sms_outbox, tmp_path
):
    # Twilio accepts the text while a backup holds the store, and the worker dies before
    # its recorder could write the delivery (or Temporal heard of the result).
    holder = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    first_scheduled = datetime.now(UTC)
    try:
        dying = SmsActivities(delivery_settings, sqlite_store)
        first = await attempt_of(1, first_scheduled).run(dying.send_sms, checkin())
        await dying.recorder.close(wait=0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    [sms] = sms_outbox.messages
    assert first.provider_message_id == sms.sid
    assert await sqlite_store.find_delivery(WORKFLOW_ID, "checkin-1") is None

    # The retry, on another worker, asks Twilio from the first scheduling on.
    async with SmsActivities(delivery_settings, sqlite_store) as successor:
        retried = await attempt_of(2, first_scheduled).run(successor.send_sms, checkin())

    assert len(sms_outbox.messages) == 1
    assert retried.already_sent and retried.provider_message_id == sms.sid
    found = await sqlite_store.find_delivery(WORKFLOW_ID, "checkin-1")
    assert found.provider_message_id == sms.sid


async def test_a_retry_asks_twilio_even_when_the_ledger_cannot_be_read(
    delivery_settings, postgresql_url, sms_outbox
):
    # The ledger on PostgreSQL, reached through a relay that then goes away.
    url = make_url(postgresql_url)
    relay = TcpRelay(f"{url.host}:{url.port or 5432}")
    await relay.start()
    store = await AuditStore.open(
        url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False))
    workflow_id = f"followup-clinic-42-{uuid.uuid4().hex[:12]}"
    message = checkin().model_copy(update={"workflow_id": workflow_id})
    first_scheduled = datetime.now(UTC)
    try:
        dying = SmsActivities(delivery_settings, store)
        first = await attempt_of(1, first_scheduled).run(dying.send_sms, message)
        await relay.stop()
        await dying.recorder.close(wait=0)

        async with SmsActivities(delivery_settings, store) as successor:
            retried = await attempt_of(2, first_scheduled).run(successor.send_sms, message)
            await successor.recorder.close(wait=0)
    finally:
        await relay.stop()
        await store.close()

    assert retried.already_sent and retried.provider_message_id == first.provider_message_id
    assert len(sms_outbox.messages) == 1


async def test_an_attempt_that_never_reached_twilio_is_sent_on_retry(
    delivery_settings, sqlite_store, sms_outbox
):
    delivery = await send(delivery_settings, sqlite_store, checkin(), attempt=2)

    [sms] = sms_outbox.messages
    assert not delivery.already_sent and delivery.provider_message_id == sms.sid


async def test_the_same_words_sent_earlier_under_another_key_are_not_mistaken_for_this_one(
    delivery_settings, sqlite_store, sms_outbox
):
    first = await send(delivery_settings, sqlite_store, checkin(key="reminder-1"))

    second = await send(delivery_settings, sqlite_store, checkin(key="reminder-2"), attempt=2)

    assert len(sms_outbox.messages) == 2
    assert not second.already_sent and second.provider_message_id != first.provider_message_id


async def test_a_worker_sends_and_asks_twilio_over_one_kept_connection(
    delivery_settings, sqlite_store, sms_outbox
):
    async with SmsActivities(delivery_settings, sqlite_store) as sms:
        for key in ("checkin-1", "reminder-1", "reminder-2", "page-1", "page-2"):
            await attempt_of(1).run(sms.send_sms, checkin(key=key))
        retried = await attempt_of(2).run(sms.send_sms, checkin(key="page-2"))

    assert len(sms_outbox.messages) == 5 and retried.already_sent
    assert sms_outbox.connections == 1


async def test_texts_sent_at_once_share_the_workers_connections(
    delivery_settings, sqlite_store, sms_outbox
):
    async with SmsActivities(delivery_settings, sqlite_store) as sms:
        for _ in range(2):
            await asyncio.gather(*(attempt_of(1).run(sms.send_sms, checkin(key=f"page-{n}"))
                                   for n in range(10)))

    assert len(sms_outbox.messages) == 20
    assert sms_outbox.connections <= 10, "the second burst reuses the first one's connections"


async def test_a_restarted_twilio_endpoint_is_reconnected_to(
    delivery_settings, sqlite_store, sms_outbox
):
    port = int(sms_outbox.url.rpartition(":")[2])
    async with SmsActivities(delivery_settings, sqlite_store) as sms:
        await attempt_of(1).run(sms.send_sms, checkin(key="checkin-1"))
        await sms_outbox.stop()  # every kept connection closes with it
        await sms_outbox.start(port=port)
        await attempt_of(1).run(sms.send_sms, checkin(key="reminder-1"))

    assert [m.body for m in sms_outbox.messages] == [checkin().body] * 2
    assert sms_outbox.connections == 2


def carrying(message: OutboundMessage, entries: list) -> OutboundMessage:
    return message.model_copy(update={"trail": AuditBatch(entries=entries)})


async def test_a_text_carrying_the_trail_goes_out_first_and_then_stores_it(
    delivery_settings, sqlite_store, sms_outbox, encryption_keys
):
    trail = sealed_trail(WORKFLOW_ID, length=3)
    message = carrying(checkin(), trail)
    sms_outbox.hold(CLIENT_PHONE)
    async with SmsActivities(delivery_settings, sqlite_store,
                             TrailBatches(sqlite_store, EncryptionCodec(encryption_keys))) as sms:
        sending = asyncio.create_task(attempt_of(1).run(sms.send_sms, message))
        await asyncio.sleep(0.5)
        assert await sqlite_store.entries(WORKFLOW_ID) == [], "the store waits for the text"
        sms_outbox.release(CLIENT_PHONE)
        delivery = await sending

    assert len(sms_outbox.messages) == 1
    assert delivery.trail_stored
    assert await sqlite_store.entries(WORKFLOW_ID) == trail


async def test_a_text_goes_out_when_the_store_refuses_the_trail_it_carries(
    delivery_settings, sqlite_store, sms_outbox, encryption_keys
):
    [first] = sealed_trail(WORKFLOW_ID, length=1)
    rival = seal(workflow_id=WORKFLOW_ID, seq=1, at=first.at, prev_hash=first.prev_hash,
                 step="other")
    await sqlite_store.append([rival])
    async with SmsActivities(delivery_settings, sqlite_store,
                             TrailBatches(sqlite_store, EncryptionCodec(encryption_keys))) as sms:
        delivery = await attempt_of(1).run(sms.send_sms, carrying(checkin(), [first]))

    assert [sms.to for sms in sms_outbox.messages] == [CLIENT_PHONE]
    assert not delivery.trail_stored, "the follow-up writes it itself, and hears the refusal"
    assert await sqlite_store.entries(WORKFLOW_ID) == [rival]
