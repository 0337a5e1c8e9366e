"""An audit trail in the forms auditors take away: JSON lines, CSV, a FHIR R4 Bundle.

The writers write the entries they are given; ``without_staff_text`` is what the auditor's
export applies first, unless it exports for verification.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from aftercare.trail.checkpoints import Checkpoint
from aftercare.trail.store import Disclosure
from workflows.models import Actor, AuditEntry

CSV_COLUMNS = list(AuditEntry.model_fields)

# Stable AuditEvent ids: the same entry exported twice is the same resource.
_FHIR_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftercare:audit-entry")
_STEP_SYSTEM = "urn:aftercare:followup-step"
_ACTOR_SYSTEM = "urn:aftercare:actor"
_WORKFLOW_SYSTEM = "urn:aftercare:followup"


WITHHELD = "[staff text withheld]"


def without_staff_text(entry: AuditEntry) -> AuditEntry:
    """The entry as exports show it: a staff member's free text (a cancel reason, which the
    trail records as the ``cancelled`` entry's outcome and in ``closed``'s "cancelled: …")
    may hold PHI, so it is withheld. Only a verification export keeps entries exact, since
    every byte is hashed."""
    if entry.step == "cancelled" and entry.outcome:
        return entry.model_copy(update={"outcome": WITHHELD})
    if entry.step == "closed" and (entry.outcome or "").startswith("cancelled: "):
        return entry.model_copy(update={"outcome": f"cancelled: {WITHHELD}"})
    return entry


def write_jsonl(entries: Sequence[AuditEntry], out: TextIO) -> None:
    for entry in entries:
        out.write(entry.model_dump_json() + "\n")


# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: object) -> object:
    """A text cell a spreadsheet shows as text: one starting like a formula gets a leading
    ``'``. The JSON lines export keeps every value exact, for re-verifying hashes."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell


def write_checkpoints(checkpoints: Sequence[Checkpoint], out: TextIO) -> None:
    """Signed checkpoints as JSON lines beside the entries: ``{"checkpoint": {...}}``."""
    for checkpoint in checkpoints:
        out.write(json.dumps({"checkpoint": checkpoint.model_dump(mode="json")}) + "\n")


def write_csv(entries: Sequence[AuditEntry], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for entry in entries:
        row = entry.model_dump(mode="json")
        row["detail"] = json.dumps(row["detail"], sort_keys=True)
        writer.writerow({column: spreadsheet_safe(cell) for column, cell in row.items()})


def write_fhir(entries: Sequence[AuditEntry], out: TextIO) -> None:
    json.dump(fhir_bundle(entries), out, indent=2)
    out.write("\n")


def fhir_bundle(entries: Sequence[AuditEntry]) -> dict[str, Any]:
    """A FHIR R4 ``collection`` Bundle with one AuditEvent per entry."""
    events = [fhir_audit_event(entry) for entry in entries]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": datetime.now(UTC).isoformat(),
        "entry": [{"fullUrl": f"urn:uuid:{event['id']}", "resource": event} for event in events],
    }


def fhir_audit_event(entry: AuditEntry) -> dict[str, Any]:
    agents = [
        {
            "type": {"coding": [{"system": _ACTOR_SYSTEM, "code": str(entry.actor)}]},
            "who": {"identifier": {"system": _ACTOR_SYSTEM, "value": str(entry.actor)}},
            "requestor": entry.actor != Actor.SYSTEM,
        }
    ]
    if entry.recipient:
        agents.append(
            {
                "type": {"text": "recipient"},
                "who": {"identifier": {"value": entry.recipient}},
                "requestor": False,
            }
        )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid5(_FHIR_ID_NAMESPACE, f"{entry.workflow_id}/{entry.seq}")),
        "type": {
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110100",
            "display": "Application Activity",
        },
        "subtype": [{"system": _STEP_SYSTEM, "code": entry.step}],
        "action": "E",
        "recorded": entry.at.astimezone(UTC).isoformat(),
        "agent": agents,
        "source": {
            "site": "aftercare",
            "observer": {"display": "Aftercare follow-up workflow"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": [
            {
                "what": {"identifier": {"system": _WORKFLOW_SYSTEM, "value": entry.workflow_id}},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
                "detail": _entity_details(entry),
            }
        ],
    }
    if entry.outcome:
        event["outcomeDesc"] = entry.outcome
    return event


def _entity_details(entry: AuditEntry) -> list[dict[str, str]]:
    """With the event's other fields, everything the hash covers: the export alone can be
    re-verified."""
    fields = {
        "seq": str(entry.seq),
        "channel": entry.channel,
        "provider_message_id": entry.provider_message_id,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
        **{f"detail.{key}": value for key, value in sorted(entry.detail.items())},
    }
    return [{"type": key, "valueString": value} for key, value in fields.items() if value]


DISCLOSURE_COLUMNS = list(Disclosure.model_fields)


def write_disclosures_jsonl(disclosures: Sequence[Disclosure], out: TextIO) -> None:
    for disclosure in disclosures:
        out.write(disclosure.model_dump_json() + "\n")


def write_disclosures_csv(disclosures: Sequence[Disclosure], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=DISCLOSURE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for disclosure in disclosures:
        row = disclosure.model_dump(mode="json")
        writer.writerow({column: spreadsheet_safe(cell) for column, cell in row.items()})


def write_disclosures_text(disclosures: Sequence[Disclosure], out: TextIO) -> None:
    """One line each, as a client asking for an accounting of disclosures would read it."""
    for d in disclosures:
        out.write(f"{d.at.isoformat()}  {d.workflow_id}  to {d.to_whom}  why: {d.why or '-'}  "
                  f"basis: {d.basis or '-'}  (entry {d.audit_seq})\n")
    out.write(f"{len(disclosures)} disclosure{'s' if len(disclosures) != 1 else ''}\n")


DISCLOSURE_FORMATS: dict[str, Callable[[Sequence[Disclosure], TextIO], None]] = {
    "text": write_disclosures_text,
    "jsonl": write_disclosures_jsonl,
    "csv": write_disclosures_csv,
}

EXPORT_FORMATS: dict[str, Callable[[Sequence[AuditEntry], TextIO], None]] = {
    "jsonl": write_jsonl,
    "csv": write_csv,
    "fhir": write_fhir,
}
