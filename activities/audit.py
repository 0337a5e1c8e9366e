"""Writes the follow-up's audit trail as it happens, so it outlives Temporal's history."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.delivery_ledger import CRASH_EXIT_CODE
from aftercare.temporal.codec import EncryptionCodec
from aftercare.trail.store import AuditConflictError, AuditStore, StoredView
from workflows.models import AuditBatch

AUDIT_CONFLICT = "AuditConflict"
"""ApplicationError type of a batch the store refuses: retrying would only refuse it again."""


class AuditActivities:
    """Stores the batches of the trail the workflow hands over."""

    def __init__(self, store: AuditStore, codec: EncryptionCodec, *,
                 crash_after_commit: bool = False) -> None:
        self._store = store
        self._codec = codec
        self._crash_after_commit = crash_after_commit  # the fault suite's; see Settings

    @activity.defn
    async def append_audit_entries(self, batch: AuditBatch) -> None:
        """Idempotent: a retried batch re-appends the same entries, which is a no-op. Staff
        notes and the client's reply for review are sealed before they are stored."""
        view = batch.view and StoredView(
            view=batch.view,
            sealed_reply=batch.view.reply_for_review
            and self._codec.seal(batch.view.reply_for_review.encode()))
        try:
            await self._store.append(batch.entries, view)
        except AuditConflictError as err:
            raise ApplicationError(str(err), type=AUDIT_CONFLICT, non_retryable=True) from None
        if batch.notes:
            workflow_id = activity.info().workflow_id
            for note in batch.notes:
                sealed = self._codec.seal(note.text.encode())
                await self._store.record_note(workflow_id, note, sealed, datetime.now(UTC))
        if self._crash_after_commit:
            os._exit(CRASH_EXIT_CODE)
