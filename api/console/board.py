"""The clinic board (``/console``): the clinic's open follow-ups, most urgent first, and
those closed in the last 7 days with their outcomes. It shows no contact detail: ids,
phases, risks, deadlines and staff ids only."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.records import closed_followups, open_followups
from api.console.web import ConsoleDep, to_sign_in
from workflows.models import Phase, RiskLevel

router = APIRouter(include_in_schema=False)


@router.get("/console", response_class=HTMLResponse)
async def board(
    request: Request, console: ConsoleDep, phase: str = "", risk: str = "",
) -> Response:
    session = console.session(request)
    if session is None:
        return to_sign_in(request)
    if session.followup is not None:
        # Signed in from an escalation link: that follow-up only.
        return RedirectResponse(f"/console/followups/{session.followup}", status_code=303)
    client = await console.service.temporal()
    now = datetime.now(UTC)
    followups, unanswered = await open_followups(client, session.clinic_id)
    if phase:
        followups = [f for f in followups if f.phase.value == phase]
    if risk:
        followups = [f for f in followups if f.risk_level.value == risk]
    store = await console.service.audit_store()
    closed = []
    for found in await closed_followups(client, session.clinic_id, now):
        trail = await store.entries(found.workflow_id)
        outcome = next((e.outcome for e in reversed(trail) if e.step == "closed"), found.status)
        closed.append((found, outcome))
    policy = console.service.policies.for_clinic(session.clinic_id)
    return console.render(request, "board.html", {
        "followups": followups,
        "unanswered": unanswered,
        "closed": closed,
        "phases": [p.value for p in Phase if p is not Phase.CLOSED],
        "risks": [r.value for r in RiskLevel],
        "phase": phase,
        "risk": risk,
        "clinic_zone": policy.timezone,
        "clinic_name": policy.clinic_name,
        "refresh": True,
    }, session=session)
