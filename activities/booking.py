"""Sends a client's chosen slot to the clinic's booking webhook.

Signed as Stripe and Slack sign their webhooks, so a captured request cannot be replayed
later or re-keyed: ``X-Aftercare-Signature: v1=<hex HMAC-SHA256>`` with the clinic's
secret over ``{X-Aftercare-Timestamp}.{Idempotency-Key}.{body}``, the timestamp in Unix
seconds. The receiver recomputes it and refuses a timestamp more than five minutes from
its clock. The body names the follow-up, clinic, session, client id and slot, never a
name or phone number. The follow-up's workflow id is the idempotency key, so a retried
request books once; each attempt is signed afresh.

The worker calls from inside its own network, so where the request goes is checked at
send time, on the addresses the host resolves to now: every one must be public (not
loopback, private, link-local such as cloud metadata, shared, reserved or multicast),
however the URL spells it (``https://2852039166/``, ``https://0xA9FEA9FE/`` and
``https://127.1/`` are all private once resolved), unless the clinic's policy sets
``reschedule.webhook_private_network: true``. The request then goes to the address that
was checked, with the URL's host in ``Host`` and in TLS (SNI and the certificate check),
so a name that resolves elsewhere a moment later (DNS rebinding) changes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from aftercare.policies import PolicyBook
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


@dataclass(frozen=True)
class WebhookTarget:
    """Where to send the request: the checked address, and the name the URL gave."""

    url: str
    host_header: str
    server_name: str


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def checked_target(webhook_url: str, private_network: bool) -> WebhookTarget:
    """The webhook's host resolved now, every address checked; refused (non-retryable)
    when one is not public and the policy does not allow a private network."""
    url = urlsplit(webhook_url)
    host = url.hostname
    if url.scheme not in ("https", "http") or not host:
        raise _rejected("the booking webhook must be an absolute https:// URL")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise ApplicationError(f"booking webhook host does not resolve: {err}",
                               type=BOOKING_UNAVAILABLE) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    private = [address for address in addresses if not is_public_address(address)]
    if private and not private_network:
        raise _rejected(
            f"booking webhook host resolves to a loopback or private address "
            f"({', '.join(private)}); the clinic's policy must set "
            "reschedule.webhook_private_network: true if its system really is there")
    address = addresses[0]
    literal = f"[{address}]" if ":" in address else address
    path_and_query = urlunsplit(("", "", url.path or "/", url.query, ""))
    return WebhookTarget(url=f"{url.scheme}://{literal}:{port}{path_and_query}",
                         host_header=url.netloc.rpartition("@")[2], server_name=host)


def _rejected(reason: str) -> ApplicationError:
    return ApplicationError(reason, type=BOOKING_REJECTED, non_retryable=True)


class BookingActivities:
    def __init__(self, settings: Settings, policies: PolicyBook | None = None) -> None:
        """``policies``: whose booking webhooks may be on a private network; by default
        the worker's policy file, the one the API resolved the follow-up's policy from."""
        self.settings = settings
        self.policies = policies or PolicyBook.load(settings.policy_file)

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
        private_network = self.policies.for_clinic(
            request.clinic_id).reschedule.webhook_private_network
        target = await checked_target(request.webhook_url, private_network)
        headers["Host"] = target.host_header
        try:
            async with httpx.AsyncClient(timeout=_TIMEOUT) as http:
                response = await http.post(target.url, content=body, headers=headers,
                                           extensions={"sni_hostname": target.server_name})
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
