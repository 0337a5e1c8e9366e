"""Texts clients and on-call staff through Twilio, or any Twilio-compatible endpoint.

Without Twilio credentials the official client talks to ``AFTERCARE_TWILIO_API_BASE_URL``
(the dev outbox) with the development credentials. Twilio's refusals that no retry can
change (invalid or unsubscribed number, not SMS-capable, ...) fail the activity as a
non-retryable ``PERMANENT_DELIVERY_FAILURE`` so the workflow falls back to email;
outages, rate limits and timeouts fail it retryably.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import aiohttp
from temporalio import activity
from temporalio.exceptions import ApplicationError
from twilio.base.exceptions import TwilioException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from activities.delivery_ledger import DeliveryLedger, deliver_once
from aftercare.console_links import with_escalation_link
from aftercare.settings import (
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_TWILIO_FROM_NUMBER,
    Settings,
)
from workflows.models import PERMANENT_DELIVERY_FAILURE, Channel, Delivery, OutboundMessage

SMS_PROVIDER_UNAVAILABLE = "SmsProviderUnavailable"

# Twilio error codes that mean this number will never receive this message.
# https://www.twilio.com/docs/api/errors
PERMANENT_TWILIO_CODES = frozenset(
    {21211, 21212, 21408, 21610, 21612, 21614, 30003, 30005, 30006, 30007}
)

_REQUEST_TIMEOUT_SECONDS = 15.0


class SmsActivities:
    def __init__(self, settings: Settings, ledger: DeliveryLedger) -> None:
        if not settings.twilio_is_real and not settings.twilio_api_base_url:
            raise ValueError(
                "set AFTERCARE_TWILIO_ACCOUNT_SID and AFTERCARE_TWILIO_AUTH_TOKEN, or point "
                "AFTERCARE_TWILIO_API_BASE_URL at a Twilio-compatible endpoint"
            )
        if settings.twilio_is_real:
            self._credentials = (settings.twilio_account_sid, settings.twilio_auth_token)
        else:
            self._credentials = (DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN)
        self._sender = _sender(settings)
        self._status_callback = (
            f"{settings.public_base_url.rstrip('/')}/v1/twilio/status"
            if settings.twilio_status_callback
            else None
        )
        self.settings = settings
        self.ledger = ledger

    @activity.defn
    async def send_sms(self, message: OutboundMessage) -> Delivery:
        return await deliver_once(self.ledger, message, lambda: self._send(message))

    async def _send(self, message: OutboundMessage) -> Delivery:
        try:
            async with _TimedHttpClient(timeout=_REQUEST_TIMEOUT_SECONDS) as http:
                client = Client(*self._credentials, http_client=http)
                if self.settings.twilio_api_base_url:
                    client.api.base_url = self.settings.twilio_api_base_url.rstrip("/")
                sent = await client.messages.create_async(
                    to=message.to,
                    body=with_escalation_link(self.settings, message, datetime.now(UTC)),
                    status_callback=self._status_callback_for(message),
                    **self._sender,
                )
        except TwilioException as err:
            raise _classified(getattr(err, "status", None), getattr(err, "code", None)) from None
        except (aiohttp.ClientError, TimeoutError) as err:
            raise ApplicationError(
                f"Twilio unreachable: {type(err).__name__}", type=SMS_PROVIDER_UNAVAILABLE
            ) from None
        activity.logger.info("SMS accepted as %s (%s)", sent.sid, message.message_key)
        return Delivery(channel=Channel.SMS, provider_message_id=sent.sid)

    def _status_callback_for(self, message: OutboundMessage) -> str | None:
        """Where Twilio reports delivery; the follow-up's id says whom an undelivered
        text concerns."""
        if self._status_callback is None:
            return None
        return f"{self._status_callback}?{urlencode({'followup': message.workflow_id})}"


def _sender(settings: Settings) -> dict[str, str]:
    if settings.twilio_messaging_service_sid:
        return {"messaging_service_sid": settings.twilio_messaging_service_sid}
    if settings.twilio_from_number:
        return {"from_": settings.twilio_from_number}
    if not settings.twilio_is_real:
        return {"from_": DEV_TWILIO_FROM_NUMBER}
    raise ValueError(
        "set AFTERCARE_TWILIO_FROM_NUMBER or AFTERCARE_TWILIO_MESSAGING_SERVICE_SID"
    )


def _classified(status: int | None, code: int | None) -> ApplicationError:
    # Twilio's own message often quotes the phone number: only the codes go further.
    detail = f"Twilio error {code} (HTTP {status})"
    if status is None or status == 429 or code == 20429 or status >= 500:
        return ApplicationError(detail, type=SMS_PROVIDER_UNAVAILABLE)
    if code in PERMANENT_TWILIO_CODES or 400 <= status < 500:
        return ApplicationError(detail, type=PERMANENT_DELIVERY_FAILURE, non_retryable=True)
    return ApplicationError(detail, type=SMS_PROVIDER_UNAVAILABLE)


class _TimedHttpClient(AsyncTwilioHttpClient):
    """The async client ignores its own ``timeout`` (twilio 9): a hung request would hold
    the activity until Temporal's start-to-close timeout. This one applies it."""

    async def request(self, *args, timeout: float | None = None, **kwargs):
        return await super().request(*args, timeout=timeout or self.timeout, **kwargs)
