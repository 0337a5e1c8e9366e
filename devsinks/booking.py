"""A clinic's booking webhook on loopback: ``POST /clinics/{clinic_id}/bookings``.

It checks the request as a clinic's integrator would, from the documented contract
alone: ``X-Aftercare-Signature: v1=<hex HMAC-SHA256>`` with that clinic's secret over
``{X-Aftercare-Timestamp}.{Idempotency-Key}.{body}``, and a timestamp within five minutes
of its clock. A good request gets ``200 {"booking_id": ...}`` (the same id again for the
same idempotency key), a bad signature or a stale timestamp ``401``, an unknown clinic
``404``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from activities.booking import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    SIGNATURE_TOLERANCE_SECONDS,
    TIMESTAMP_HEADER,
)
from devsinks.http import HttpSink


@dataclass
class BookingCall:
    clinic_id: str
    body: bytes
    signature: str | None
    timestamp: str | None
    idempotency_key: str | None
    verified: bool

    @property
    def json(self) -> dict:
        return json.loads(self.body)


def _is_fresh(timestamp: str | None, now: float) -> bool:
    try:
        sent = int(timestamp or "")
    except ValueError:
        return False
    return abs(now - sent) <= SIGNATURE_TOLERANCE_SECONDS


class BookingSink(HttpSink):
    """Records every call in ``calls``; ``bookings`` maps idempotency key to booking id."""

    def __init__(self, clinic_secrets: Mapping[str, str]) -> None:
        self.clinic_secrets = dict(clinic_secrets)
        self.calls: list[BookingCall] = []
        self.bookings: dict[str, str] = {}
        self._next_failures: list[int] = []

    def webhook_url(self, clinic_id: str) -> str:
        return f"{self.url}/clinics/{clinic_id}/bookings"

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        self._next_failures.extend([status] * count)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/clinics/{clinic_id}/bookings", self._book)]

    async def _book(self, request: web.Request) -> web.Response:
        clinic_id = request.match_info["clinic_id"]
        body = await request.read()
        signature = request.headers.get(SIGNATURE_HEADER)
        call = BookingCall(
            clinic_id=clinic_id,
            body=body,
            signature=signature,
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
            verified=False,
        )
        self.calls.append(call)
        secret = self.clinic_secrets.get(clinic_id)
        if secret is None:
            return web.json_response({"error": "unknown clinic"}, status=404)
        # Recomputed from the contract, not with the sender's helper: an integrator's view.
        signed = f"{call.timestamp}.{call.idempotency_key}.".encode() + body
        expected = "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(signature, expected):
            return web.json_response({"error": "bad signature"}, status=401)
        if not _is_fresh(call.timestamp, time.time()):
            return web.json_response({"error": "stale or missing timestamp"}, status=401)
        call.verified = True
        if self._next_failures:
            status = self._next_failures.pop(0)
            return web.json_response({"error": "simulated failure"}, status=status)
        key = call.idempotency_key or secrets.token_hex(8)
        booking_id = self.bookings.setdefault(key, "bk-" + secrets.token_hex(6))
        return web.json_response({"booking_id": booking_id})
