"""The trail view, for clinic leads and auditors: a follow-up's stored audit trail as a
timeline, its chain verification, and exports (JSON lines, CSV, FHIR). Like the auditor's
CLI, each look and each export is written to the access log before it is answered."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response

from aftercare.trail.exports import EXPORT_FORMATS
from aftercare.trail.verification import first_broken_link
from api.console.escalations import visible_followup
from api.console.security import StaffSession
from api.console.web import Console, ConsoleDep
from workflows.models import FollowUpStatus

router = APIRouter(include_in_schema=False)

WorkflowId = Annotated[str, Path(min_length=1, max_length=200)]
MEDIA_TYPES = {"jsonl": ("application/x-ndjson", "jsonl"), "csv": ("text/csv", "csv"),
               "fhir": ("application/fhir+json", "json")}


async def readable_trail(
    request: Request, console: Console, workflow_id: str
) -> tuple[StaffSession, FollowUpStatus] | Response:
    found = await visible_followup(request, console, workflow_id)
    if not isinstance(found, tuple):
        return found
    session, status = found
    if not console.service.policies.for_clinic(session.clinic_id).reads_trails(session.staff_id):
        return console.refusal(request, session=session)
    return session, status


@router.get("/console/followups/{workflow_id}/trail", response_class=HTMLResponse)
async def trail_page(workflow_id: WorkflowId, request: Request, console: ConsoleDep) -> Response:
    found = await readable_trail(request, console, workflow_id)
    if not isinstance(found, tuple):
        return found
    session, status = found
    store = await console.service.audit_store()
    await store.record_access(session.actor, "console_view_trail", workflow_id, datetime.now(UTC))
    entries = await store.entries(workflow_id)
    policy = console.service.policies.for_clinic(session.clinic_id)
    return console.render(request, "trail.html", {
        "status": status,
        "entries": entries,
        "broken": first_broken_link(entries) if entries else None,
        "formats": list(EXPORT_FORMATS),
        "clinic_zone": policy.timezone,
    }, session=session)


@router.get("/console/followups/{workflow_id}/trail.{export_format}")
async def export_trail(
    workflow_id: WorkflowId, export_format: str, request: Request, console: ConsoleDep,
) -> Response:
    if export_format not in EXPORT_FORMATS:
        return console.refusal(request, status_code=404, session=console.session(request))
    found = await readable_trail(request, console, workflow_id)
    if not isinstance(found, tuple):
        return found
    session, _ = found
    store = await console.service.audit_store()
    await store.record_access(session.actor, f"console_export_{export_format}", workflow_id,
                              datetime.now(UTC))
    out = io.StringIO()
    EXPORT_FORMATS[export_format](await store.entries(workflow_id), out)
    media_type, extension = MEDIA_TYPES[export_format]
    return Response(out.getvalue(), media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="{workflow_id}.{extension}"',
        "Cache-Control": "no-store",
    })
