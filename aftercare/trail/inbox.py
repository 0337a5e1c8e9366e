"""Twilio's webhooks, kept in the audit database before they reach Temporal.

Each webhook is written here first under its key (``inbound:{MessageSid}``, or
``status:{MessageSid}:{MessageStatus}`` for delivery receipts, which Twilio sends once per
status). A second request with a key already here is a replay, and is ignored. The request
is sealed with the payload encryption keys while it waits and dropped once delivered, so
the table keeps no client's number or words beyond the wait.

Whoever handles a webhook claims it for a while (``claimed_until``), so the API's
redelivery loop, in this process or another replica, leaves it alone meanwhile. When
Temporal cannot take it, the claim is given back and the loop delivers it later.

The same table in a SQLite file on the API's own disk is the spool that stands in while
the audit database is away (``api.sms_webhooks``); ``delivered_keys``, ``keep_delivered``
and ``forget`` move what it holds into the audit database once that is back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from aftercare.temporal.codec import EncryptionCodec
from aftercare.trail.schema import inbound_webhooks
from aftercare.trail.store import AuditStore

CLAIM = timedelta(seconds=60)
"""How long a handler may take before another may try the same webhook."""


@dataclass(frozen=True)
class KeptWebhook:
    message_key: str
    request: dict[str, Any]


class WebhookInbox:
    def __init__(self, store: AuditStore, codec: EncryptionCodec) -> None:
        self._engine = store.engine
        self._codec = codec

    async def keep(self, message_key: str, request: dict[str, Any], now: datetime) -> bool:
        """Keep a webhook, claimed by the caller; False when that key was seen before."""
        sealed = self._codec.seal(json.dumps(request, sort_keys=True).encode())
        try:
            async with self._engine.begin() as conn:
                await conn.execute(inbound_webhooks.insert().values(
                    message_key=message_key, received_at=now, sealed_request=sealed,
                    claimed_until=now + CLAIM))
        except IntegrityError:
            return False
        return True

    async def delivered(self, message_key: str, now: datetime) -> None:
        """Temporal has it: drop the sealed request, keep the key against replays."""
        async with self._engine.begin() as conn:
            await conn.execute(inbound_webhooks.update()
                               .where(inbound_webhooks.c.message_key == message_key)
                               .values(delivered_at=now, sealed_request=None, claimed_until=None))

    async def release(self, message_key: str) -> None:
        """Not delivered: the redelivery loop may take it at once."""
        async with self._engine.begin() as conn:
            await conn.execute(inbound_webhooks.update()
                               .where(inbound_webhooks.c.message_key == message_key)
                               .values(claimed_until=None))

    async def claim_waiting(self, now: datetime, limit: int = 50) -> list[KeptWebhook]:
        """Claim the oldest webhooks not yet delivered and not claimed by anyone else."""
        waiting = (inbound_webhooks.c.delivered_at.is_(None)
                   & (inbound_webhooks.c.claimed_until.is_(None)
                      | (inbound_webhooks.c.claimed_until < now)))
        query = (sa.select(inbound_webhooks.c.message_key, inbound_webhooks.c.claimed_until)
                 .where(waiting).order_by(inbound_webhooks.c.received_at).limit(limit))
        claimed: list[KeptWebhook] = []
        async with self._engine.connect() as conn:
            candidates = (await conn.execute(query)).all()
        for key, seen_claim in candidates:
            # Take it only if nobody took it since we looked: compare-and-set on the claim.
            unchanged = (inbound_webhooks.c.claimed_until.is_(None) if seen_claim is None
                         else inbound_webhooks.c.claimed_until == seen_claim)
            async with self._engine.begin() as conn:
                taken = await conn.execute(
                    inbound_webhooks.update()
                    .where(inbound_webhooks.c.message_key == key, unchanged,
                           inbound_webhooks.c.delivered_at.is_(None))
                    .values(claimed_until=now + CLAIM)
                    .returning(inbound_webhooks.c.sealed_request))
                sealed = taken.scalar_one_or_none()
            if sealed is not None:
                request = json.loads(self._codec.open(sealed))
                claimed.append(KeptWebhook(key, request))
        return claimed

    async def keep_delivered(self, message_key: str, received_at: datetime,
                             now: datetime) -> bool:
        """Record a key already passed on elsewhere; False when it was here before (the
        webhook was a replay)."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(inbound_webhooks.insert().values(
                    message_key=message_key, received_at=received_at, delivered_at=now))
        except IntegrityError:
            return False
        return True

    async def delivered_keys(self, limit: int = 200) -> list[tuple[str, datetime]]:
        """Keys (and when they came) of webhooks passed on, oldest first."""
        query = (sa.select(inbound_webhooks.c.message_key, inbound_webhooks.c.received_at)
                 .where(inbound_webhooks.c.delivered_at.is_not(None))
                 .order_by(inbound_webhooks.c.received_at).limit(limit))
        async with self._engine.connect() as conn:
            return [(key, received) for key, received in (await conn.execute(query)).all()]

    async def forget(self, message_key: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(inbound_webhooks.delete()
                               .where(inbound_webhooks.c.message_key == message_key))

    async def waiting_count(self) -> int:
        query = sa.select(sa.func.count()).where(inbound_webhooks.c.delivered_at.is_(None))
        async with self._engine.connect() as conn:
            return await conn.scalar(query) or 0
