"""The booking activity, through httpx, against a clinic's loopback booking webhook."""

import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.booking import (
    BOOKING_REJECTED,
    BOOKING_UNAVAILABLE,
    SIGNATURE_TOLERANCE_SECONDS,
    BookingActivities,
    booking_signature,
)
from tests.fixtures.sinks import BOOKING_SECRETS
from workflows.models import BookingRequest

SLOT = datetime(2026, 11, 24, 10, 0, tzinfo=timezone(timedelta(hours=-5)))


def choice(webhook_url: str, clinic_id: str = "clinic-42") -> BookingRequest:
    return BookingRequest(
        workflow_id=f"followup-{clinic_id}-s-1",
        clinic_id=clinic_id,
        session_id="s-1",
        client_id="c-7781",
        slot_start=SLOT,
        webhook_url=webhook_url,
    )


async def book(settings, request: BookingRequest):
    return await ActivityEnvironment().run(BookingActivities(settings).request_booking, request)


async def test_the_clinic_verifies_the_signed_choice_and_books_it(
    delivery_settings, booking_sink
):
    confirmation = await book(delivery_settings, choice(booking_sink.webhook_url("clinic-42")))

    [call] = booking_sink.calls
    assert call.verified
    assert confirmation.booking_id == booking_sink.bookings["followup-clinic-42-s-1"]
    assert call.json == {
        "workflow_id": "followup-clinic-42-s-1",
        "clinic_id": "clinic-42",
        "session_id": "s-1",
        "client_id": "c-7781",
        "slot_start": "2026-11-24T10:00:00-05:00",
    }
    # The contract, recomputed: timestamp, idempotency key and body are signed together.
    signed = f"{call.timestamp}.followup-clinic-42-s-1.".encode() + call.body
    expected = hmac.new(BOOKING_SECRETS["clinic-42"].encode(), signed, hashlib.sha256)
    assert call.signature == f"v1={expected.hexdigest()}"
    assert call.idempotency_key == "followup-clinic-42-s-1"
    assert abs(int(call.timestamp) - time.time()) < 60


async def test_the_webhook_refuses_a_replayed_request_with_a_stale_timestamp(
    delivery_settings, booking_sink
):
    await book(delivery_settings, choice(booking_sink.webhook_url("clinic-42")))
    [call] = booking_sink.calls
    headers = {"Content-Type": "application/json", "Idempotency-Key": call.idempotency_key}
    stale = str(int(call.timestamp) - SIGNATURE_TOLERANCE_SECONDS - 60)
    secret = BOOKING_SECRETS["clinic-42"]

    async with httpx.AsyncClient() as http:
        replayed = await http.post(booking_sink.webhook_url("clinic-42"), content=call.body,
                                   headers={**headers, "X-Aftercare-Timestamp": stale,
                                            "X-Aftercare-Signature": booking_signature(
                                                secret, stale, call.idempotency_key, call.body)})
        restamped = await http.post(booking_sink.webhook_url("clinic-42"), content=call.body,
                                    headers={**headers, "X-Aftercare-Timestamp": str(
                                        int(call.timestamp) + 1), "X-Aftercare-Signature":
                                        call.signature})
        rekeyed = await http.post(booking_sink.webhook_url("clinic-42"), content=call.body,
                                  headers={**headers, "Idempotency-Key": "followup-other",
                                           "X-Aftercare-Timestamp": call.timestamp,
                                           "X-Aftercare-Signature": call.signature})

    assert (replayed.status_code, replayed.json()) == (401, {"error": "stale or missing timestamp"})
    assert restamped.json() == rekeyed.json() == {"error": "bad signature"}
    assert len(booking_sink.bookings) == 1


async def test_a_retried_booking_books_the_slot_once(delivery_settings, booking_sink):
    request = choice(booking_sink.webhook_url("clinic-42"))

    first = await book(delivery_settings, request)
    again = await book(delivery_settings, request)

    assert first.booking_id == again.booking_id
    assert len(booking_sink.bookings) == 1


async def test_a_signature_made_with_another_secret_is_refused(delivery_settings, booking_sink):
    settings = delivery_settings.model_copy(
        update={"booking_webhook_secrets": {"clinic-42": "not-the-clinics-secret"}}
    )

    with pytest.raises(ApplicationError) as failure:
        await book(settings, choice(booking_sink.webhook_url("clinic-42")))

    assert failure.value.type == BOOKING_REJECTED and failure.value.non_retryable
    assert "401" in str(failure.value)
    assert not booking_sink.calls[0].verified


async def test_a_clinic_without_a_webhook_secret_is_not_called(delivery_settings, booking_sink):
    with pytest.raises(ApplicationError) as failure:
        await book(delivery_settings, choice(booking_sink.webhook_url("clinic-9"), "clinic-9"))

    assert failure.value.type == BOOKING_REJECTED and failure.value.non_retryable
    assert booking_sink.calls == []


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_webhook_outage_is_retried(delivery_settings, booking_sink, status):
    booking_sink.fail_next(status=status)

    with pytest.raises(ApplicationError) as failure:
        await book(delivery_settings, choice(booking_sink.webhook_url("clinic-42")))

    assert failure.value.type == BOOKING_UNAVAILABLE and not failure.value.non_retryable


async def test_an_unreachable_webhook_is_retried(delivery_settings, booking_sink):
    url = booking_sink.webhook_url("clinic-42")
    await booking_sink.stop()

    with pytest.raises(ApplicationError) as failure:
        await book(delivery_settings, choice(url))

    assert failure.value.type == BOOKING_UNAVAILABLE and not failure.value.non_retryable


async def test_the_webhook_learns_no_name_phone_or_email(delivery_settings, booking_sink):
    await book(delivery_settings, choice(booking_sink.webhook_url("clinic-42")))

    body = json.loads(booking_sink.calls[0].body)
    assert set(body) == {"workflow_id", "clinic_id", "session_id", "client_id", "slot_start"}


# Spellings of private addresses a policy's load-time check reads as names: each one is
# private once resolved, so the activity refuses it at send time.
PRIVATE_SPELLINGS = [
    "https://2852039166/bookings",            # 169.254.169.254 (cloud metadata) as a number
    "https://0xA9FEA9FE/bookings",            # the same in hex
    "https://0251.0376.0251.0376/bookings",   # the same in octal
    "https://127.1:8443/bookings",            # 127.0.0.1, short form
    "https://[::ffff:169.254.169.254]/bookings",  # IPv4-mapped IPv6
    "https://localhost/bookings",             # a name that resolves to loopback
]


@pytest.mark.parametrize("webhook_url", PRIVATE_SPELLINGS)
async def test_a_private_address_is_refused_at_send_time_whatever_its_spelling(
    delivery_settings, webhook_url
):
    """clinic-7's policy does not allow a private network (its system is on the internet)."""
    settings = delivery_settings.model_copy(update={
        "booking_webhook_secrets": {"clinic-7": "booking-secret-7-for-tests"}})

    with pytest.raises(ApplicationError) as refused:
        await book(settings, choice(webhook_url, clinic_id="clinic-7"))

    assert refused.value.type == BOOKING_REJECTED and refused.value.non_retryable
    assert "resolves to a loopback or private address" in refused.value.message


async def test_a_policy_allowing_a_private_network_reaches_its_webhook_in_any_spelling(
    delivery_settings, booking_sink
):
    """clinic-42's policy allows it (its system is the loopback sink): the short form of
    127.0.0.1 reaches the sink, with the URL's own host in ``Host``."""
    port = httpx.URL(booking_sink.webhook_url("clinic-42")).port
    url = f"http://127.1:{port}/clinics/clinic-42/bookings"

    confirmation = await book(delivery_settings, choice(url))

    assert confirmation.booking_id is not None
    assert booking_sink.calls[0].verified
