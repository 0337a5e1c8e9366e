"""What an auditor is told about a stored chain: verified, or its first broken link."""

from __future__ import annotations

from collections.abc import Sequence

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
