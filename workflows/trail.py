"""The per-follow-up hash chain: how an audit entry is sealed and how a chain is checked.

Pure functions over ``AuditEntry``: the workflow seals entries as it takes each step, the
audit store and the auditor's ``verify`` recompute the same hashes. ``TrailWriter`` is the
workflow's side: it seals steps and hands them to the audit store in batches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.models import AuditBatch, AuditEntry, FollowUpView, StaffNote
from workflows.versions import TRAIL_RIDES_SENDS, patched

GENESIS = "0" * 64
# What moves with the protocol's clock and its count of steps: stored with the next batch.
PROGRESS_FIELDS = ("next_deadline", "next_deadline_reason", "trail_length")
# The audit store is retried until it answers: the trail waits for it, nothing else does.
AUDIT_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
FLUSH_AFTER = timedelta(seconds=30)


def canonical_json(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_digest(entry: AuditEntry) -> str:
    """SHA-256 over the canonical JSON of every field but the hash itself."""
    fields = entry.model_dump(mode="json", exclude={"hash"})
    fields["at"] = _utc_iso(entry.at)
    return hashlib.sha256(canonical_json(fields)).hexdigest()


def seal(
    *,
    workflow_id: str,
    seq: int,
    at: datetime,
    prev_hash: str,
    step: str,
    **fields: Any,
) -> AuditEntry:
    draft = AuditEntry(
        workflow_id=workflow_id, seq=seq, at=at, step=step, prev_hash=prev_hash, hash="", **fields
    )
    draft.hash = entry_digest(draft)
    return draft


def first_break(entries: Sequence[AuditEntry]) -> tuple[int, str] | None:
    """The first broken link of one follow-up's chain, as (seq, what is wrong), or None."""
    prev = GENESIS
    for expected_seq, entry in enumerate(entries, start=1):
        if entry.seq != expected_seq:
            what = "missing" if entry.seq > expected_seq else "reordered or duplicated"
            return expected_seq, f"entry {expected_seq} is {what} (found seq {entry.seq})"
        if entry.prev_hash != prev:
            return entry.seq, f"entry {entry.seq} does not follow entry {entry.seq - 1}"
        if entry_digest(entry) != entry.hash:
            return entry.seq, f"entry {entry.seq} was edited: its hash no longer matches"
        prev = entry.hash
    return None


def _utc_iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


class TrailBuilder:
    """The chain a running follow-up extends, one sealed entry per step."""

    def __init__(self, workflow_id: str, entries: Sequence[AuditEntry] = ()) -> None:
        self.workflow_id = workflow_id
        self.entries: list[AuditEntry] = list(entries)
        self._handed_out = len(self.entries)

    def take_unwritten(self) -> list[AuditEntry]:
        """The entries added since the last call: the next batch for the audit store."""
        batch = self.entries[self._handed_out:]
        self._handed_out = len(self.entries)
        return batch

    def has_unwritten(self) -> bool:
        return self._handed_out < len(self.entries)

    @property
    def head(self) -> str:
        return self.entries[-1].hash if self.entries else GENESIS

    def add(self, at: datetime, step: str, **fields: Any) -> AuditEntry:
        entry = seal(
            workflow_id=self.workflow_id,
            seq=len(self.entries) + 1,
            at=at,
            prev_hash=self.head,
            step=step,
            **{k: v for k, v in fields.items() if v is not None},
        )
        self.entries.append(entry)
        return entry


class TrailWriter:
    """A running follow-up's trail: each step sealed into the chain as it happens, and the
    sealed entries written to the audit store batch after batch, with the follow-up's view.

    The writer is a regular activity started from a task of its own: its command leaves only
    with a workflow task the server accepted, so every stored entry is one the history
    reproduces, and nothing the protocol does ever waits for it. An audit store outage
    delays the trail (``backlog``), never a page; the trail catches up when the store is back.

    Since the ``trail-rides-sends`` patch, a send about to leave takes what is unwritten
    with it (``ride``), as regular an activity as the writer's and as reproducible: the
    message goes out first, then the send stores the batch and says whether it did
    (``ride_over``); what it could not store the writer writes. The writer's own batches
    are for what no send takes (a send's outcome, a reply no message answers, the close),
    one per burst of steps; a new escalation is written at once.
    """

    def __init__(
        self, workflow_id: str, view: Callable[[], FollowUpView], quiet: Callable[[], bool],
        carried: Sequence[AuditEntry] = (), refused: int = 0, view_revision: int = 0,
    ) -> None:
        self.chain = TrailBuilder(workflow_id, carried)
        self.refused = refused
        self.stored = len(carried) - refused
        self.view_revision = view_revision
        self._view = view
        self._quiet = quiet
        self._published: FollowUpView | None = None
        # Entries a send carried but could not store: the next batch writes them.
        self._returned: list[AuditEntry] = []
        self._rides = False  # set when the writer starts, by the follow-up's version
        # Staff free text (it may hold PHI) travels beside the trail, sealed by the store.
        self._notes: list[StaffNote] = []

    @property
    def workflow_id(self) -> str:
        return self.chain.workflow_id

    @property
    def entries(self) -> list[AuditEntry]:
        return self.chain.entries

    def record(self, step: str, **fields: object) -> AuditEntry:
        """Seal one step; it reaches the audit store with the next batch."""
        entry = self.chain.add(workflow.now(), step, **fields)
        workflow.logger.info("follow-up step", extra={"step": step, "seq": entry.seq})
        return entry

    def keep_note(self, kind: str, staff_id: str, text: str) -> None:
        """Staff free text, stored sealed under the entry just recorded, never in the trail."""
        self._notes.append(StaffNote(audit_seq=len(self.chain.entries), kind=kind,
                                     staff_id=staff_id, text=text))

    def backlog(self) -> int:
        """Entries sealed but not yet in the audit store, and notes waiting with them."""
        return len(self.chain.entries) - self.stored - self.refused + len(self._notes)

    def _urgent(self) -> bool:
        """A new phase or a new escalation: the board must show it now."""
        return self._escalation_changed() or self._published.phase != self._view().phase

    def _has_news(self) -> bool:
        return (self.chain.has_unwritten() or bool(self._returned)
                or self._view() != self._published)

    def _worth_a_batch(self) -> bool:
        """Entries, or a view people would read differently: a deadline that moved without
        a step waits for the next batch or send (``PROGRESS_FIELDS``)."""
        if self.chain.has_unwritten() or self._returned or self._published is None:
            return True
        before = self._published
        return self._view().model_copy(
            update={name: getattr(before, name) for name in PROGRESS_FIELDS}) != before

    def _next_batch(self) -> tuple[list[AuditEntry], FollowUpView]:
        """The entries not yet handed out and the view as it is now, handed out."""
        batch = self._returned + self.chain.take_unwritten()
        self._returned = []
        self._published = self._view()
        self.view_revision += 1
        return batch, self._published.model_copy(
            update={"revision": self.view_revision, "updated_at": workflow.now()})

    async def _burst_settled(self) -> None:
        """Until a burst of steps is over: the rest of this activation, and unless the
        escalation changed (the board shows that at once), until the sends are done
        (FLUSH_AFTER at most) and the activation that finished them has run. A reply and
        all it sets off make one batch, or ride the send that answers it. Conditions alone:
        no command, no timer but the bound."""
        await workflow.wait_condition(lambda: True)
        if self._escalation_changed() or self._quiet():
            return
        try:
            await workflow.wait_condition(self._quiet, timeout=FLUSH_AFTER)
        except TimeoutError:
            return
        await workflow.wait_condition(lambda: True)

    def _escalation_changed(self) -> bool:
        before, now = self._published, self._view()
        return before is None or ((before.escalation and before.escalation.code)
                                  != (now.escalation and now.escalation.code))

    def ride(self) -> AuditBatch | None:
        """What a send about to leave carries to the audit store: everything unwritten and
        the view, unless a staff note waits (notes go with a batch of their own)."""
        if self._notes or not self._rides or not self._has_news():
            return None
        entries, view = self._next_batch()
        return AuditBatch(entries=entries, view=view)

    def ride_over(self, ride: AuditBatch, stored: bool) -> None:
        """The send that carried ``ride`` ended: stored, or its entries go with the next
        batch (appending is idempotent, so a batch stored after all costs nothing)."""
        if stored:
            self.stored += len(ride.entries)
        else:
            self._returned.extend(ride.entries)

    async def keep_written(self) -> None:
        self._rides = patched(TRAIL_RIDES_SENDS)
        news = self._worth_a_batch if self._rides else self._has_news
        while True:
            await workflow.wait_condition(news)
            if self._rides:
                await self._burst_settled()
                if not news():
                    continue  # a send leaving meanwhile took it (``ride``)
            # Steps come in bursts (a send and its outcome, a reply and its answer): one
            # batch for the burst keeps the history lean, never later than FLUSH_AFTER.
            elif not (self._quiet() or self._urgent()):
                try:
                    await workflow.wait_condition(self._quiet, timeout=FLUSH_AFTER)
                except TimeoutError:
                    pass
            batch, view = self._next_batch()
            notes = [n for n in self._notes if batch and n.audit_seq <= batch[-1].seq]
            try:
                await workflow.execute_activity(
                    "append_audit_entries", AuditBatch(entries=batch, notes=notes, view=view),
                    start_to_close_timeout=timedelta(seconds=30), retry_policy=AUDIT_RETRY,
                )
            except ActivityError:
                # Only a refused batch ends up here (retries have no deadline): the store
                # holds other entries under these numbers. Operators must see it; the
                # follow-up goes on, and verify/replay will name the difference.
                workflow.logger.error("audit store refused a batch of this follow-up's trail",
                                      extra={"first_seq": batch[0].seq if batch else 0})
                self.refused += len(batch)
            else:
                self.stored += len(batch)
            self._notes = [n for n in self._notes if n not in notes]
