"""Verify exported Aftercare audit trails on their own: Python's standard library only.

    aftercare-auditor export --workflow ID --for-verification > trail.jsonl
    python scripts/verify_trail.py trail.jsonl --key KEY_ID:SECRET

A second implementation of ``aftercare-auditor verify``, written from the canonical form
the README documents ("The canonical form") and sharing no code with the service: an
auditor can read it in one sitting, run it where the service is not installed, or use it
as the model for their own. It prints the same lines as ``verify`` and exits the same way:
0 every chain holds, 1 findings. Keys come from ``--key`` (repeatable) or
``AFTERCARE_AUDIT_SIGNING_KEYS`` (``id:secret,id:secret``).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
from datetime import UTC, datetime

GENESIS = "0" * 64
CLOSE_STEP = "closed"
REOPEN_STEP = "reopened"
CHECKPOINT_PURPOSE = "aftercare-audit-checkpoint-v1"


def canonical(fields: dict) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: dict) -> str:
    fields = {name: value for name, value in entry.items() if name != "hash"}
    fields["at"] = datetime.fromisoformat(entry["at"]).astimezone(UTC).isoformat()
    return hashlib.sha256(canonical(fields)).hexdigest()


def checkpoint_holds(checkpoint: dict, keys: dict[str, str]) -> bool | None:
    secret = keys.get(checkpoint["key_id"])
    if secret is None:
        return None
    message = canonical({"purpose": CHECKPOINT_PURPOSE, "workflow_id": checkpoint["workflow_id"],
                         "seq": checkpoint["seq"], "hash": checkpoint["hash"],
                         "closed": checkpoint["closed"]})
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, checkpoint["signature"])


def link_finding(entries: list[dict]) -> str | None:
    """The first broken link: a missing, reordered, unlinked or edited entry."""
    prev = GENESIS
    for expected_seq, entry in enumerate(entries, start=1):
        if entry["seq"] != expected_seq:
            what = "missing" if entry["seq"] > expected_seq else "reordered or duplicated"
            return (f"broken at entry {expected_seq}: entry {expected_seq} is {what} "
                    f"(found seq {entry['seq']})")
        if entry["prev_hash"] != prev:
            moved = next((later for later in entries[expected_seq:] if later["prev_hash"] == prev),
                         None)
            if moved is not None:
                return (f"broken at entry {expected_seq}: entry {expected_seq} was reordered: "
                        f"the entry that follows entry {expected_seq - 1} is stored as entry "
                        f"{moved['seq']}")
            return (f"broken at entry {expected_seq}: entry {expected_seq} does not follow "
                    f"entry {expected_seq - 1}")
        if entry_hash(entry) != entry["hash"]:
            return (f"broken at entry {expected_seq}: entry {expected_seq} was edited: its hash "
                    "no longer matches")
        prev = entry["hash"]
    return None


def checkpoint_findings(entries: list[dict], checkpoints: list[dict],
                        keys: dict[str, str]) -> list[str]:
    if not checkpoints:
        return ["not anchored: no signed checkpoint vouches for any entry"]
    for checkpoint in checkpoints:
        holds = checkpoint_holds(checkpoint, keys)
        if holds is None:
            return [f"checkpoint at entry {checkpoint['seq']} is signed with key "
                    f"{checkpoint['key_id']!r}, which is not configured: add it to "
                    "AFTERCARE_AUDIT_SIGNING_KEYS"]
        if not holds:
            return [f"checkpoint at entry {checkpoint['seq']} does not hold: its signature was "
                    "forged or its fields altered"]
    last_matching = 0
    for checkpoint in checkpoints:
        seq = checkpoint["seq"]
        if seq > len(entries):
            head = checkpoints[-1]
            what = "the close" if head["closed"] else f"entry {head['seq']}"
            return [f"truncated after entry {len(entries)}: a signed checkpoint vouches for "
                    f"entries up to {what} (entry {head['seq']})"]
        if entries[seq - 1]["hash"] != checkpoint["hash"]:
            return [f"re-sealed: entry {seq} is not the entry signed for it; the rewrite starts "
                    f"after entry {last_matching} and at or before entry {seq}"]
        last_matching = seq
    if last_matching < len(entries):
        return [f"entries {last_matching + 1} to {len(entries)} are not covered by a signed "
                "checkpoint: the service did not write them"]
    return []


def verify(entries: list[dict], checkpoints: list[dict], keys: dict[str, str]) -> list[str]:
    """What is wrong with one chain; or, as the last line, that it holds."""
    closed = bool(entries) and entries[-1]["step"] == CLOSE_STEP
    broken = link_finding(entries)
    if broken is not None:
        return [broken]
    findings = [f"entry {entry['seq']} follows the close at entry {previous['seq']}: a closed "
                f"chain ends there, or is {REOPEN_STEP}"
                for previous, entry in zip(entries, entries[1:], strict=False)
                if previous["step"] == CLOSE_STEP and entry["step"] != REOPEN_STEP][:1]
    findings += checkpoint_findings(entries, checkpoints, keys)
    if findings:
        return findings
    if closed:
        return [f"verified ({len(entries)} entries, closed)"]
    return [f"verified ({len(entries)} entries; no close recorded: still running, or its close "
            "is missing)"]


def parse_keys(pairs: list[str]) -> dict[str, str]:
    keys = {}
    for pair in pairs:
        key_id, _, secret = pair.strip().partition(":")
        if not key_id or not secret:
            sys.exit(f"verify_trail: {pair!r} is not KEY_ID:SECRET")
        keys[key_id] = secret
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("export", help="a JSON lines export with checkpoints ('-' for stdin)")
    parser.add_argument("--key", action="append", default=[], metavar="KEY_ID:SECRET",
                        help="a checkpoint signing key (default: AFTERCARE_AUDIT_SIGNING_KEYS)")
    args = parser.parse_args(argv)
    from_env = [pair for pair in os.environ.get("AFTERCARE_AUDIT_SIGNING_KEYS", "").split(",")
                if pair.strip()]
    keys = parse_keys(args.key or from_env)
    stream = sys.stdin if args.export == "-" else open(args.export, encoding="utf-8")  # noqa: SIM115
    chains: dict[str, tuple[list[dict], list[dict]]] = {}
    with stream:
        for line in stream:
            if not line.strip():
                continue
            record = json.loads(line)
            checkpoint = record.get("checkpoint")
            item = checkpoint if checkpoint is not None else record
            entries, checkpoints = chains.setdefault(item["workflow_id"], ([], []))
            (checkpoints if checkpoint is not None else entries).append(item)
    failed = 0
    for workflow_id, (entries, checkpoints) in chains.items():
        entries.sort(key=lambda entry: entry["seq"])
        checkpoints.sort(key=lambda checkpoint: checkpoint["seq"])
        lines = verify(entries, checkpoints, keys)
        failed += not lines[-1].startswith("verified")
        for line in lines:
            print(f"{workflow_id}: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
