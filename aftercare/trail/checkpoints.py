"""Signed checkpoints: what anchors a follow-up's hash chain outside its own rows.

Each time the store appends a batch of entries it also records, in the same transaction,
a checkpoint of the chain's new head: the workflow id, the last entry's seq and hash,
whether that entry is the terminal ``closed``, and an HMAC-SHA256 over them with a key from
``AFTERCARE_AUDIT_SIGNING_KEYS``. The key lives with the worker and the auditor, never in
the database: whoever can only run SQL can delete or rewrite rows and re-seal the chain,
but cannot sign a checkpoint for the result. The newest checkpoint is the chain's head.

The signed message is the canonical JSON (``workflows.trail.canonical_json``) of
``{"purpose": "aftercare-audit-checkpoint-v1", "workflow_id": …, "seq": …, "hash": …,
"closed": true|false}``; the signature is its HMAC-SHA256 in lowercase hex.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from pydantic import AwareDatetime, BaseModel

from workflows.trail import canonical_json

CHECKPOINT_PURPOSE = "aftercare-audit-checkpoint-v1"
CLOSE_STEP = "closed"
# A reply that arrives while a follow-up is closing reopens it: the only step after a close.
REOPEN_STEP = "reopened"
"""The terminal step: nothing may follow it in a chain."""


class Checkpoint(BaseModel):
    workflow_id: str
    seq: int
    hash: str
    closed: bool
    signed_at: AwareDatetime
    key_id: str
    signature: str


def checkpoint_signature(secret: str, workflow_id: str, seq: int, hash_: str, closed: bool) -> str:
    message = canonical_json({"purpose": CHECKPOINT_PURPOSE, "workflow_id": workflow_id,
                              "seq": seq, "hash": hash_, "closed": closed})
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_holds(checkpoint: Checkpoint, keys: Mapping[str, str]) -> bool | None:
    """True or False; None when the key it names is not among ``keys``."""
    secret = keys.get(checkpoint.key_id)
    if secret is None:
        return None
    expected = checkpoint_signature(secret, checkpoint.workflow_id, checkpoint.seq,
                                    checkpoint.hash, checkpoint.closed)
    return hmac.compare_digest(expected, checkpoint.signature)
