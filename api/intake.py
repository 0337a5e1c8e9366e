"""What every endpoint shares: settings, policies, a Temporal client and the audit store.

The client connects on first use, so the service starts (and answers ``/healthz``) while
Temporal is still coming up; ``/readyz`` says when it is reachable.
"""

from __future__ import annotations

import asyncio
import os

from fastapi import Request
from temporalio.client import Client

from aftercare.policies import PolicyBook
from aftercare.settings import Settings
from aftercare.temporal.codec import EncryptionCodec
from aftercare.temporal.connection import TemporalTarget, connect, temporal_target
from aftercare.trail.inbox import WebhookInbox
from aftercare.trail.store import AuditStore
from api.problems import TemporalUnavailable

CONNECT_TIMEOUT_SECONDS = 5.0


class Intake:
    def __init__(self, settings: Settings, policies: PolicyBook, client: Client | None) -> None:
        self.settings = settings
        self.policies = policies
        self._client = client
        self._store: AuditStore | None = None
        self._inbox: WebhookInbox | None = None
        self._codec: EncryptionCodec | None = None
        self._spool_store: AuditStore | None = None
        self._spool: WebhookInbox | None = None
        self._lock = asyncio.Lock()
        # Apart: the spool is wanted exactly while opening the audit store hangs or fails.
        self._spool_lock = asyncio.Lock()

    @property
    def target(self) -> TemporalTarget:
        return temporal_target(self.settings)

    async def temporal(self) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    try:
                        self._client = await asyncio.wait_for(
                            connect(self.settings), CONNECT_TIMEOUT_SECONDS
                        )
                    except (RuntimeError, OSError, TimeoutError) as err:
                        raise TemporalUnavailable(
                            f"unreachable at {self.target.address}"
                        ) from err
        return self._client

    async def audit_store(self) -> AuditStore:
        if self._store is None:
            async with self._lock:
                if self._store is None:
                    self._store = await AuditStore.open(self.settings.audit_database_url)
        return self._store

    def codec(self) -> EncryptionCodec:
        """Seals and opens what the audit store keeps sealed (texts waiting, replies)."""
        if self._codec is None:
            self._codec = EncryptionCodec(self.settings.encryption_keys)
        return self._codec

    async def inbox(self) -> WebhookInbox:
        if self._inbox is None:
            self._inbox = WebhookInbox(await self.audit_store(), self.codec())
        return self._inbox

    async def spool(self) -> WebhookInbox:
        """Twilio's webhooks while the audit database is away: the same table, in a SQLite
        file on this host that only its owner can read."""
        if self._spool is None:
            async with self._spool_lock:
                if self._spool is None:
                    path = self.settings.webhook_spool_path
                    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
                    self._spool_store = await AuditStore.open(f"sqlite+aiosqlite:///{path}")
                    self._spool = WebhookInbox(self._spool_store, self.codec())
        return self._spool

    async def close(self) -> None:
        for store in (self._store, self._spool_store):
            if store is not None:
                await store.close()


def intake(request: Request) -> Intake:
    return request.app.state.intake
