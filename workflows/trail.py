"""The per-follow-up hash chain: how an audit entry is sealed and how a chain is checked.

Pure functions over ``AuditEntry``: the workflow seals entries as it takes each step, the
audit store and the auditor's ``verify`` recompute the same hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from workflows.models import AuditEntry

GENESIS = "0" * 64


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
