"""What an auditor is told about a stored chain: verified, or what is wrong with it.

``scripts/verify_trail.py`` is a second, independent implementation of the same checks on
an exported trail; the two must always agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aftercare.trail.checkpoints import CLOSE_STEP, REOPEN_STEP, Checkpoint, signature_holds
from workflows.models import AuditEntry
from workflows.trail import GENESIS, first_break


def first_broken_link(entries: Sequence[AuditEntry]) -> tuple[int, str] | None:
    """``workflows.trail.first_break``, telling a reordering apart from an edit.

    Rows read back in seq order hide a swap of two entries' seq numbers as a plain broken
    link; when the entry that does follow the last good one sits further down the chain,
    the entries were reordered.
    """
    found = first_break(entries)
    if found is None:
        return None
    seq, what = found
    index = seq - 1
    if index < len(entries) and entries[index].seq == seq:
        expected_prev = entries[index - 1].hash if index else GENESIS
        if entries[index].prev_hash != expected_prev:
            belongs_here = next(
                (later for later in entries[index + 1 :] if later.prev_hash == expected_prev),
                None,
            )
            if belongs_here is not None:
                return seq, (
                    f"entry {seq} was reordered: the entry that follows entry {seq - 1} "
                    f"is stored as entry {belongs_here.seq}"
                )
    return found


@dataclass(frozen=True)
class ChainReport:
    """What ``verify`` says of one follow-up's stored chain: findings, or that it holds."""

    findings: list[str]
    entries: int
    closed: bool

    @property
    def summary(self) -> str:
        if self.closed:
            return f"verified ({self.entries} entries, closed)"
        return (f"verified ({self.entries} entries; no close recorded: still running, or its "
                "close is missing)")


def verify_chain(
    entries: Sequence[AuditEntry], checkpoints: Sequence[Checkpoint], keys: Mapping[str, str]
) -> ChainReport:
    """The stored chain against itself and against its signed checkpoints.

    Recomputing the hashes finds an edited, missing or reordered entry; only the
    checkpoints, signed with a key the database does not hold, find what a consistent
    rewrite hides: a truncation (entries, the close among them, deleted from the end), a
    re-seal (an entry rewritten and every later hash recomputed), entries added by hand
    after the last checkpoint, and anything after a ``closed`` but a ``reopened`` (a reply
    that arrived while the follow-up was closing).
    """
    closed = bool(entries) and entries[-1].step == CLOSE_STEP
    broken = first_broken_link(entries)
    if broken is not None:
        return ChainReport([f"broken at entry {broken[0]}: {broken[1]}"], len(entries), closed)
    findings = [
        f"entry {entry.seq} follows the close at entry {previous.seq}: a closed chain ends "
        f"there, or is {REOPEN_STEP}"
        for previous, entry in zip(entries, entries[1:], strict=False)
        if previous.step == CLOSE_STEP and entry.step != REOPEN_STEP
    ][:1]
    findings += _checkpoint_findings(entries, checkpoints, keys)
    return ChainReport(findings, len(entries), closed)


def _checkpoint_findings(
    entries: Sequence[AuditEntry], checkpoints: Sequence[Checkpoint], keys: Mapping[str, str]
) -> list[str]:
    if not checkpoints:
        return ["not anchored: no signed checkpoint vouches for any entry"]
    for checkpoint in checkpoints:
        holds = signature_holds(checkpoint, keys)
        if holds is None:
            return [f"checkpoint at entry {checkpoint.seq} is signed with key "
                    f"{checkpoint.key_id!r}, which is not configured: add it to "
                    "AFTERCARE_AUDIT_SIGNING_KEYS"]
        if not holds:
            return [f"checkpoint at entry {checkpoint.seq} does not hold: its signature was "
                    "forged or its fields altered"]
    last_matching = 0
    for checkpoint in checkpoints:
        if checkpoint.seq > len(entries):
            head = checkpoints[-1]
            what = "the close" if head.closed else f"entry {head.seq}"
            return [f"truncated after entry {len(entries)}: a signed checkpoint vouches for "
                    f"entries up to {what} (entry {head.seq})"]
        if entries[checkpoint.seq - 1].hash != checkpoint.hash:
            return [f"re-sealed: entry {checkpoint.seq} is not the entry signed for it; the "
                    f"rewrite starts after entry {last_matching} and at or before entry "
                    f"{checkpoint.seq}"]
        last_matching = checkpoint.seq
    if last_matching < len(entries):
        return [f"entries {last_matching + 1} to {len(entries)} are not covered by a signed "
                "checkpoint: the service did not write them"]
    return []
