"""Writes the follow-up's audit trail as it happens, so it outlives Temporal's history: in
batches of their own (``append_audit_entries``), or riding a send (``carrying_trail``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.delivery_ledger import CRASH_EXIT_CODE
from aftercare.logs import get_logger
from aftercare.metrics import count_audit_write
from aftercare.temporal.codec import EncryptionCodec
from aftercare.trail.store import AuditConflictError, AuditStore, StoredView
from workflows.models import AuditBatch, Delivery, OutboundMessage

AUDIT_CONFLICT = "AuditConflict"
"""ApplicationError type of a batch the store refuses: retrying would only refuse it again."""
# A send that carries the trail gives the store this long after the send itself; what is not
# stored by then the follow-up writes in a batch of its own. The page has already gone.
RIDE_SECONDS = 2.0

log = get_logger(__name__)


class TrailBatches:
    """Stores batches of the trail the workflow hands over. Idempotent: a retried batch
    re-appends the same entries, which is a no-op. Staff notes and the client's reply for
    review are sealed before they are stored."""

    def __init__(self, store: AuditStore, codec: EncryptionCodec) -> None:
        self._store = store
        self._codec = codec

    async def store(self, batch: AuditBatch, workflow_id: str) -> None:
        view = batch.view and StoredView(
            view=batch.view,
            sealed_reply=batch.view.reply_for_review
            and self._codec.seal(batch.view.reply_for_review.encode()))
        try:
            await self._store.append(batch.entries, view)
        except AuditConflictError as err:
            raise ApplicationError(str(err), type=AUDIT_CONFLICT, non_retryable=True) from None
        for note in batch.notes:
            sealed = self._codec.seal(note.text.encode())
            await self._store.record_note(workflow_id, note, sealed, datetime.now(UTC))

    async def store_riding(self, batch: AuditBatch, workflow_id: str) -> bool:
        try:
            await asyncio.wait_for(self.store(batch, workflow_id), RIDE_SECONDS)
        except Exception as err:  # the follow-up writes it itself; never fail the send
            log.warning("trail riding a send not stored", error=type(err).__name__)
            count_audit_write("failed")
            return False
        count_audit_write("stored")
        return True


async def carrying_trail(trail: TrailBatches | None, message: OutboundMessage,
                         send: Awaitable[Delivery]) -> Delivery:
    """Send, then store the trail the message carries, whether the send went or not: the
    delivery says whether it was stored, and the follow-up writes it itself if not."""
    if trail is None or message.trail is None:
        return await send
    stored = False
    try:
        delivery = await send
    finally:
        stored = await trail.store_riding(message.trail, message.workflow_id)
    return delivery.model_copy(update={"trail_stored": stored})


class AuditActivities:
    """Stores the batches of the trail the workflow hands over on their own."""

    def __init__(self, trail: TrailBatches, *, crash_after_commit: bool = False) -> None:
        self._trail = trail
        self._crash_after_commit = crash_after_commit  # the fault suite's; see Settings

    @activity.defn
    async def append_audit_entries(self, batch: AuditBatch) -> None:
        await self._trail.store(batch, activity.info().workflow_id)
        if self._crash_after_commit:
            os._exit(CRASH_EXIT_CODE)
