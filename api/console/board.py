"""The clinic board (``/console``): the clinic's open follow-ups, most urgent first, a page
at a time, and those closed in the last 7 days with their outcomes. It reads the views the
follow-ups store in the audit store (a few queries), so it loads with every worker and
Temporal itself down. It shows no contact detail: ids, phases, risks, reasons, deadlines
and staff ids only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from aftercare.followups import views
from api.console.web import ConsoleDep, to_sign_in
from workflows.models import Phase, RiskLevel

router = APIRouter(include_in_schema=False)

PER_PAGE = 100
CLOSED_WINDOW = timedelta(days=7)


@router.get("/console", response_class=HTMLResponse)
async def board(
    request: Request, console: ConsoleDep, phase: str = "", risk: str = "",
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    session = console.session(request)
    if session is None:
        return to_sign_in(request)
    if session.followup is not None:
        # Signed in from an escalation link: that follow-up only.
        return RedirectResponse(f"/console/followups/{session.followup}", status_code=303)
    store = await console.service.audit_store()
    now = datetime.now(UTC)
    followups = [f for f in await views.open_followups(store, session.clinic_id)
                 if phase in ("", f.phase.value) and risk in ("", f.risk_level.value)]
    pages = max(1, -(-len(followups) // PER_PAGE))
    shown = followups[(page - 1) * PER_PAGE:page * PER_PAGE]
    policy = console.service.policies.for_clinic(session.clinic_id)
    return console.render(request, "board.html", {
        "followups": shown,
        "escalated": await store.escalations_started(
            [f.workflow_id for f in shown if f.escalation]),
        "page": page,
        "pages": pages,
        "after": max(0, len(followups) - page * PER_PAGE),
        "closed": await views.closed_followups(store, session.clinic_id, now - CLOSED_WINDOW),
        "phases": [p.value for p in Phase if p is not Phase.CLOSED],
        "risks": [r.value for r in RiskLevel],
        "phase": phase,
        "risk": risk,
        "now": now,
        "clinic_zone": policy.timezone,
        "clinic_name": policy.clinic_name,
        "refresh": True,
    }, session=session)
