"""Texts clients and on-call staff through Twilio, or any Twilio-compatible endpoint.

Without Twilio credentials the official client talks to ``AFTERCARE_TWILIO_API_BASE_URL``
(the dev outbox) with the development credentials. Twilio's refusals that no retry can
change (invalid or unsubscribed number, not SMS-capable, ...) fail the activity as a
non-retryable ``PERMANENT_DELIVERY_FAILURE`` so the workflow falls back to email;
outages, rate limits and timeouts fail it retryably. So do refusals of our own account
(bad credentials, a suspended account, a sender that is not ours): those are the
operator's to fix, not a sign the person can't be reached, so they are logged as errors and
counted in ``aftercare_provider_configuration_errors`` while the activity keeps retrying.

A worker keeps one Twilio client and one pool of keep-alive HTTP connections for all its
sends; what Twilio accepted reaches the delivery ledger behind the send, never before it
(see activities/delivery_ledger.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar
from urllib.parse import urlencode

import aiohttp
from temporalio import activity
from temporalio.exceptions import ApplicationError
from twilio.base.exceptions import TwilioException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from activities.audit import TrailBatches, carrying_trail
from activities.delivery_ledger import DeliveryLedger, DeliveryRecorder, deliver_once
from activities.provider_errors import provider_misconfigured
from aftercare.links.escalation import with_escalation_link
from aftercare.settings import (
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    DEV_TWILIO_FROM_NUMBER,
    Settings,
)
from workflows.models import PERMANENT_DELIVERY_FAILURE, Channel, Delivery, OutboundMessage

T = TypeVar("T")

SMS_PROVIDER_UNAVAILABLE = "SmsProviderUnavailable"

# Twilio error codes that mean this number will never receive this message.
# https://www.twilio.com/docs/api/errors
PERMANENT_TWILIO_CODES = frozenset(
    {21211, 21408, 21610, 21612, 21614, 30003, 30005, 30006, 30007}
)
# Twilio error codes that mean our account or sender is misconfigured, whoever the message
# is to: authentication (20003), inactive or suspended account (20005, 30002), test
# credentials (20008), unknown account (20404), a From number or Messaging Service that is
# not ours or cannot send (21212, 21606, 21659, 21703, 21704, 21705).
CONFIGURATION_TWILIO_CODES = frozenset(
    {20003, 20005, 20008, 20404, 21212, 21606, 21659, 21703, 21704, 21705, 30002}
)

# An attempt never waits for the ledger's write lock; a retry reads the ledger for at most
# LEDGER_READ_SECONDS (2 s) and makes two requests (the Messages list, the send):
# 2 s + 2 x 7 s stays inside the activity's 30 s start-to-close timeout, so an attempt never
# outlives Temporal's patience and races its own retry.
_REQUEST_TIMEOUT_SECONDS = 7.0
CONNECTIONS = 100
"""HTTP connections a worker keeps to Twilio: one per activity it may run at once (the
Temporal worker's default ``max_concurrent_activities``), so no send waits for another's."""
# Twilio's clock and ours may differ a little; a message created this long before our first
# attempt is still a candidate.
_CLOCK_SKEW = timedelta(minutes=1)
# The newest messages to a number that a retry reads back: far more than one follow-up,
# or a burst of pages to one on-call phone, sends in the minutes a retry takes.
_RECENT_MESSAGES_READ = 100


class SmsActivities:
    """The SMS activity. In a worker, ``async with SmsActivities(...)`` keeps one Twilio
    client and one pool of HTTP connections for every send, and on the way out gives the
    deliveries not yet in the ledger a bounded time to be written. Outside one (the
    console's sign-in codes), each request opens and closes its own connection."""

    def __init__(self, settings: Settings, ledger: DeliveryLedger | None,
                 trail: TrailBatches | None = None) -> None:
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
        self.recorder = DeliveryRecorder(ledger)
        self.trail = trail  # what a follow-up's message carries of its trail is stored here
        self._http: _TimedHttpClient | None = None
        self._client: Client | None = None

    async def open(self) -> None:
        """Open the worker's Twilio client and connection pool."""
        self._http = _TimedHttpClient(_REQUEST_TIMEOUT_SECONDS, connections=CONNECTIONS)
        self._client = self._twilio_client(self._http)

    async def close(self) -> None:
        """Give unwritten deliveries a bounded time to reach the ledger; close the pool."""
        await self.recorder.close()
        if self._http is not None:
            await self._http.close()
        self._http = self._client = None

    async def __aenter__(self) -> SmsActivities:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @activity.defn
    async def send_sms(self, message: OutboundMessage) -> Delivery:
        return await carrying_trail(self.trail, message, deliver_once(
            self.recorder, message, lambda: self._send(message),
            find_earlier_send=lambda since, accounted_for: self._find_sent(
                message, since, accounted_for),
            crash_after_accept=self.settings.test_crash_after == "provider_accepts",
        ))

    async def _send(self, message: OutboundMessage) -> Delivery:
        async def create(client: Client) -> Delivery:
            sent = await client.messages.create_async(
                to=message.to,
                body=with_escalation_link(self.settings, message),
                status_callback=self._status_callback_for(message),
                **self._sender,
            )
            activity.logger.info("SMS accepted as %s (%s)", sent.sid, message.message_key)
            return Delivery(channel=Channel.SMS, provider_message_id=sent.sid)

        return await self._with_twilio(create)

    async def _find_sent(
        self, message: OutboundMessage, since: datetime, accounted_for: set[str]
    ) -> Delivery | None:
        """The copy of ``message`` Twilio accepted from an attempt at or after ``since``
        whose outcome never reached the ledger, if there is one.

        Filtering on the date sent would miss exactly such a message while it is still
        queued (Twilio fills in date_sent only once it goes out, and filters by day), so
        the newest messages to the number are read and matched by body and creation time.
        """

        async def find(client: Client) -> Delivery | None:
            recent = await client.messages.list_async(
                to=message.to, limit=_RECENT_MESSAGES_READ)
            matches = [
                sent for sent in recent
                if sent.body == with_escalation_link(self.settings, message)
                and sent.sid not in accounted_for
                and sent.date_created is not None and sent.date_created >= since - _CLOCK_SKEW
            ]
            if not matches:
                return None
            earliest = min(matches, key=lambda sent: sent.date_created)
            return Delivery(channel=Channel.SMS, provider_message_id=earliest.sid)

        return await self._with_twilio(find)

    async def _with_twilio(self, request: Callable[[Client], Awaitable[T]]) -> T:
        """Run ``request`` on the worker's Twilio client (or, outside a worker, on one of
        its own), its failures classified for the workflow."""
        try:
            if self._client is not None:
                return await request(self._client)
            async with _TimedHttpClient(_REQUEST_TIMEOUT_SECONDS, connections=1) as http:
                return await request(self._twilio_client(http))
        except TwilioException as err:
            status, code = getattr(err, "status", None), getattr(err, "code", None)
            if status in (401, 403) or code in CONFIGURATION_TWILIO_CODES:
                raise provider_misconfigured("twilio", f"Twilio error {code} (HTTP {status})",
                                             code=str(code or status)) from None
            raise _classified(status, code) from None
        except (aiohttp.ClientError, TimeoutError) as err:
            raise ApplicationError(
                f"Twilio unreachable: {type(err).__name__}", type=SMS_PROVIDER_UNAVAILABLE
            ) from None

    def _twilio_client(self, http: AsyncTwilioHttpClient) -> Client:
        client = Client(*self._credentials, http_client=http)
        if self.settings.twilio_api_base_url:
            client.api.base_url = self.settings.twilio_api_base_url.rstrip("/")
        return client

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
    """Twilio's async client on a session whose pool holds ``connections``, kept alive
    between requests. It also applies its ``timeout``, which the async client ignores
    (twilio 9): a hung request would hold the activity until Temporal's start-to-close
    timeout."""

    def __init__(self, timeout: float, connections: int) -> None:
        super().__init__(pool_connections=False, timeout=timeout)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            limit=connections, limit_per_host=connections))

    async def request(self, *args, timeout: float | None = None, **kwargs):
        return await super().request(*args, timeout=timeout or self.timeout, **kwargs)
