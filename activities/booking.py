"""Sends a client's chosen slot to the clinic's booking webhook.

Signed as Stripe and Slack sign their webhooks, so a captured request cannot be replayed
later or re-keyed: ``X-Aftercare-Signature: v1=<hex HMAC-SHA256>`` with the clinic's
secret over ``{X-Aftercare-Timestamp}.{Idempotency-Key}.{body}``, the timestamp in Unix
seconds. The receiver recomputes it and refuses a timestamp more than five minutes from
its clock. The body names the follow-up, clinic, session, client id and slot, never a
name or phone number. The follow-up's workflow id is the idempotency key, so a retried
request books once; each attempt is signed afresh.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from aftercare.settings import Settings
from workflows.models import BookingConfirmation, BookingRequest

SIGNATURE_HEADER = "X-Aftercare-Signature"
TIMESTAMP_HEADER = "X-Aftercare-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"

BOOKING_REJECTED = "BookingRejected"
"""ApplicationError type of a booking the clinic refused: retrying will not change it."""
BOOKING_UNAVAILABLE = "BookingWebhookUnavailable"

_TIMEOUT = httpx.Timeout(15.0)

SIGNATURE_TOLERANCE_SECONDS = 300
"""How far a receiver lets the signed timestamp stray from its clock."""


def booking_signature(secret: str, timestamp: str, idempotency_key: str, body: bytes) -> str:
    """The ``X-Aftercare-Signature`` value: timestamp, idempotency key and body, together."""
    signed = f"{timestamp}.{idempotency_key}.".encode() + body
    return "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


class BookingActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn
    async def request_booking(self, request: BookingRequest) -> BookingConfirmation:
        secret = self.settings.booking_webhook_secrets.get(request.clinic_id)
        if secret is None:
            raise ApplicationError(
                f"no booking webhook secret for clinic {request.clinic_id}",
                type=BOOKING_REJECTED,
                non_retryable=True,
            )
        body = json.dumps(
            request.model_dump(mode="json", exclude={"webhook_url"}), separators=(",", ":")
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: booking_signature(secret, timestamp, request.workflow_id, body),
            TIMESTAMP_HEADER: timestamp,
            IDEMPOTENCY_HEADER: request.workflow_id,
        }
        try:
            async with httpx.AsyncClient(timeout=_TIMEOUT) as http:
                response = await http.post(request.webhook_url, content=body, headers=headers)
        except httpx.HTTPError as err:
            # The URL is the clinic's; the error names nothing about the client.
            raise ApplicationError(
                f"booking webhook unreachable: {type(err).__name__}", type=BOOKING_UNAVAILABLE
            ) from None

        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise ApplicationError(f"booking webhook answered {status}", type=BOOKING_UNAVAILABLE)
        if not response.is_success:
            raise ApplicationError(
                f"booking webhook refused the booking with {status}",
                type=BOOKING_REJECTED,
                non_retryable=True,
            )
        return BookingConfirmation(booking_id=_booking_id(response))


def _booking_id(response: httpx.Response) -> str | None:
    try:
        booking_id = response.json().get("booking_id")
    except (ValueError, AttributeError):
        return None
    return str(booking_id) if booking_id is not None else None
