"""Sealed audit trails to store, export and tamper with in tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from workflows.models import AuditEntry, followup_workflow_id
from workflows.trail import GENESIS, seal

STEPS = [
    ("received", {}),
    ("checkin_sent", {"channel": "sms", "provider_message_id": "SM0001", "outcome": "accepted"}),
    ("no_reply", {"outcome": "window_closed"}),
    ("on_call_paged", {"channel": "sms", "recipient": "t-12", "outcome": "accepted"}),
    (
        "emergency_contact_notified",
        {
            "channel": "sms",
            "recipient": "emergency_contact",
            "detail": {"why": "no_reply", "basis": "client consent"},
        },
    ),
]

STARTED = datetime(2026, 11, 21, 14, 47, tzinfo=UTC)


def new_workflow_id(clinic_id: str = "clinic-42") -> str:
    return followup_workflow_id(clinic_id, f"s-{uuid.uuid4().hex[:10]}")


def sealed_trail(
    workflow_id: str, length: int = len(STEPS), started: datetime = STARTED
) -> list[AuditEntry]:
    """A follow-up's first ``length`` steps, a minute apart, chained from GENESIS."""
    entries: list[AuditEntry] = []
    prev_hash = GENESIS
    for seq, (step, fields) in enumerate(STEPS[:length], start=1):
        entry = seal(
            workflow_id=workflow_id,
            seq=seq,
            at=started + timedelta(minutes=seq - 1),
            prev_hash=prev_hash,
            step=step,
            **fields,
        )
        entries.append(entry)
        prev_hash = entry.hash
    return entries
