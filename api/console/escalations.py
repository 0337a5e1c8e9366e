"""The on-call's escalation page: from the link in a page, or from the clinic board.

``GET /e/{token}`` only shows a button (link previews and mail scanners open every link);
the button's POST spends the link and signs the staff member in for that follow-up, or
adds it to the session they already have. The follow-up page shows the reason, the ref,
the time since departure and what was tried; while an escalation is open, also the
client's first name and phone (a ``tel:`` link) and, for a safety reason with consent on
file, the emergency contact. Each view of them is written to the access log first: once
per view, however often the open page refreshes itself. Acknowledge, Resolve and Cancel
call the follow-up's updates. Staff who manage Caring Contacts (``manages_caring_contacts``)
also see the series that followed it, its state and next send, and may stop it with a
reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from temporalio.client import Client

from aftercare.followups import actions, views
from aftercare.followups.errors import ActionRefused, FollowUpNotFound
from aftercare.links.escalation import EscalationLink, link_expires_at, read_escalation_token
from aftercare.links.one_click import InvalidLink
from api.console.records import followup_input
from api.console.security import StaffSession, new_session, set_session_cookie
from api.console.web import Console, ConsoleDep, to_sign_in
from workflows.escalation import Reason
from workflows.models import (
    Acknowledge,
    ActionResult,
    Cancel,
    FollowUpStatus,
    FollowUpView,
    Phase,
    ResolutionOutcome,
    Resolve,
)
from workflows.policy import ClinicPolicy

router = APIRouter(include_in_schema=False)

Token = Annotated[str, Path(max_length=400)]
WorkflowId = Annotated[str, Path(min_length=1, max_length=200)]
CONTACT_VIEW = "console_view_contact"
# The open page refreshes itself every 20 s (a hidden tab's timers may slow to once a
# minute): a session that saw the contact details less than this ago is still viewing.
SAME_VIEW_WITHIN = timedelta(minutes=3)
DONE = {"acknowledge", "resolve", "cancel", "stop_caring_contacts"}


def escalation_open(status: FollowUpStatus) -> bool:
    esc = status.escalation
    return esc is not None and esc.resolved_by is None and status.phase is not Phase.CLOSED


async def link_or_refusal(
    request: Request, console: Console, token: str
) -> tuple[EscalationLink, FollowUpStatus] | HTMLResponse:
    """The link and its follow-up, or the refusal page saying why it cannot be used."""
    try:
        link = read_escalation_token(console.settings.link_secret or "", token)
    except InvalidLink:
        return console.refusal(request, "link_invalid", "link_invalid_text", 400)
    store = await console.service.audit_store()
    if await store.link_used(_jti(link)):
        return console.refusal(request, "link_used", "link_used_text", 409)
    try:
        status = await views.with_trail(store, await views.read_view(store, link.workflow_id))
    except FollowUpNotFound:
        status = None
    if status is None or status.escalation is None or status.escalation.code != link.code:
        # The stored view may be a round trip behind the page that carried the link.
        client = await console.service.temporal()
        if await views.escalation_starting(client, link.workflow_id, link.code):
            return console.refusal(request, "escalation_starting", "escalation_starting_text",
                                   503)
        return console.refusal(request, "link_expired", "link_expired_text", 410)
    policy = console.service.policies.for_clinic(status.clinic_id)
    if link.staff_id not in policy.staff:
        return console.refusal(request)
    # The link dies with its escalation (resolved, closed, or replaced by a newer one), and
    # a day after the newest page to this staff member.
    if not escalation_open(status):
        return console.refusal(request, "link_expired", "link_expired_text", 410)
    expires = link_expires_at(status.trail, status.escalation.code, link.staff_id)
    if expires is not None and datetime.now(UTC) >= expires:
        return console.refusal(request, "link_expired", "link_expired_text", 410)
    return link, status


def _jti(link: EscalationLink) -> str:
    return f"escalation:{link.nonce}"


@router.get("/e/{token}", response_class=HTMLResponse)
async def open_link(token: Token, request: Request, console: ConsoleDep) -> HTMLResponse:
    found = await link_or_refusal(request, console, token)
    if isinstance(found, HTMLResponse):
        return found
    return console.render(request, "open_link.html", {
        "action": f"/e/{token}", "title_key": "escalation_page",
        "text_key": "open_escalation_text", "button_key": "open_escalation"})


@router.post("/e/{token}", response_class=HTMLResponse)
async def use_link(
    token: Token, request: Request, console: ConsoleDep,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if not console.csrf.accepts(request, csrf_token):
        return console.form_refused(request, None)
    found = await link_or_refusal(request, console, token)
    if isinstance(found, HTMLResponse):
        return found
    link, status = found
    now = datetime.now(UTC)
    store = await console.service.audit_store()
    if not await store.use_link(_jti(link), link.workflow_id, "console", now):
        return console.refusal(request, "link_used", "link_used_text", 409)
    response = RedirectResponse(f"/console/followups/{link.workflow_id}", status_code=303)
    current = console.session(request)
    if current is not None and (current.staff_id, current.clinic_id) == (
            link.staff_id, status.clinic_id):
        # Already signed in as this staff member: the link adds its follow-up to that
        # session (a full one already has it) instead of replacing the board with it.
        session = current.with_followup(link.workflow_id)
        set_session_cookie(console.signer, console.settings, response, session, now)
    else:
        await console.end_session(request)  # another staff member's, on a shared device
        session = new_session(link.staff_id, status.clinic_id, now, followup=link.workflow_id)
        await console.start_session(response, session)
    await store.record_access(session.actor, "console_link_opened", link.workflow_id, now)
    return response


async def visible_followup(
    request: Request, console: Console, workflow_id: str
) -> tuple[StaffSession, FollowUpStatus] | Response:
    """The follow-up, when the signed-in staff member may see it; otherwise sign-in or a
    refusal that looks the same for another clinic's follow-up and for none at all."""
    session = console.session(request)
    if session is None:
        return to_sign_in(request)
    if not session.may_open(workflow_id):
        return console.refusal(request, session=session)
    store = await console.service.audit_store()
    try:
        view = await views.read_view(store, workflow_id, clinic_id=session.clinic_id)
    except FollowUpNotFound:
        if await views.being_set_up(await console.service.temporal(), workflow_id,
                                    session.clinic_id):
            return console.refusal(request, "follow_up", "being_set_up", 404, session)
        return console.refusal(request, status_code=404, session=session)
    return session, await views.with_trail(store, view)


@router.get("/console/followups/{workflow_id}", response_class=HTMLResponse)
async def followup_page(
    workflow_id: WorkflowId, request: Request, console: ConsoleDep, done: str | None = None,
) -> Response:
    found = await visible_followup(request, console, workflow_id)
    if not isinstance(found, tuple):
        return found
    session, status = found
    return await render_followup(request, console, session, status,
                                 notice=done if done in DONE else None)


async def render_followup(
    request: Request, console: Console, session: StaffSession, status: FollowUpStatus,
    notice: str | None = None, refused: str | None = None, status_code: int = 200,
) -> HTMLResponse:
    policy = console.service.policies.for_clinic(status.clinic_id)
    store = await console.service.audit_store()
    now = datetime.now(UTC)
    showing_contact = escalation_open(status)
    contact = emergency = None
    if showing_contact:
        # The access record comes first: a view that fails later is still on record.
        await (await console.sessions()).record_contact_view(
            session.session_id, session.actor, CONTACT_VIEW, status.workflow_id, now,
            SAME_VIEW_WITHIN)
        started = await followup_input(await console.service.temporal(), status.workflow_id)
        contact = started.event.client
        named = started.event.emergency_contact
        if named is not None and named.consent and status.escalation.reason in Reason.SAFETY:
            emergency = named
    return console.render(request, "followup.html", {
        "status": status,
        "esc": status.escalation,
        "open": showing_contact,
        "contact": contact,
        "emergency": emergency,
        "now": now,
        "escalated_at": (await store.escalations_started([status.workflow_id])).get(
            status.workflow_id),
        "clinic_zone": policy.timezone,
        "outcomes": list(ResolutionOutcome),
        "may_read_trail": policy.reads_trails(session.staff_id),
        "series": (status.caring_contacts
                   if policy.manages_caring_contacts(session.staff_id) else None),
        "notice": notice,
        "refused": refused,
        "closed": status.phase is Phase.CLOSED,
        "current_url": notice and f"/console/followups/{status.workflow_id}?done={notice}",
    }, status_code=status_code, session=session)


StaffAction = Callable[[Client, str, Any], Awaitable[ActionResult]]


def followup_after(status: FollowUpStatus, result: ActionResult) -> FollowUpView:
    return result.view or status


def series_after(status: FollowUpStatus, result: ActionResult) -> FollowUpView:
    """The follow-up's page with its series as the stop left it (the result is the
    series' view; the page may be the follow-up's)."""
    if result.view is None:
        return status
    return status.model_copy(update={"caring_contacts": result.view.caring_contacts})


async def act(
    request: Request, console: Console, workflow_id: str, csrf_token: str | None, action: str,
    call: StaffAction, build: Callable[[str], BaseModel],
    shown_after: Callable[[FollowUpStatus, ActionResult], FollowUpView] = followup_after,
    permitted: Callable[[ClinicPolicy, str], bool] = lambda policy, staff_id: True,
) -> Response:
    """Check the form came from this console and the signed-in staff member may do this,
    build the request as them, and call the update; its refusal is shown on the page."""
    found = await visible_followup(request, console, workflow_id)
    if not isinstance(found, tuple):
        return found
    session, status = found
    if not console.csrf.accepts(request, csrf_token):
        return console.form_refused(request, session)
    if not permitted(console.service.policies.for_clinic(session.clinic_id), session.staff_id):
        return console.refusal(request, status_code=403, session=session)
    client = await console.service.temporal()
    try:
        result = await call(client, workflow_id, build(session.staff_id))
    except (ActionRefused, FollowUpNotFound, ValidationError) as err:
        reason = str(err) if not isinstance(err, ValidationError) else "invalid form"
        return await render_followup(request, console, session, status, refused=reason,
                                     status_code=409)
    # The follow-up as the action left it: the stored view may be a round trip behind.
    after = shown_after(status, result)
    store = await console.service.audit_store()
    return await render_followup(request, console, session,
                                 await views.with_trail(store, after), notice=action)


@router.post("/console/followups/{workflow_id}/acknowledge")
async def acknowledge(
    workflow_id: WorkflowId, request: Request, console: ConsoleDep,
    code: Annotated[str | None, Form(max_length=20)] = None,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    return await act(request, console, workflow_id, csrf_token, "acknowledge", actions.acknowledge,
                     lambda staff_id: Acknowledge(staff_id=staff_id, code=code or None))


@router.post("/console/followups/{workflow_id}/resolve")
async def resolve(
    workflow_id: WorkflowId, request: Request, console: ConsoleDep,
    outcome: Annotated[str, Form(max_length=40)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    return await act(request, console, workflow_id, csrf_token, "resolve", actions.resolve,
                     lambda staff_id: Resolve(staff_id=staff_id, outcome=outcome,
                                              note=note.strip() or None))


@router.post("/console/followups/{workflow_id}/cancel")
async def cancel(
    workflow_id: WorkflowId, request: Request, console: ConsoleDep,
    reason: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    return await act(request, console, workflow_id, csrf_token, "cancel", actions.cancel,
                     lambda staff_id: Cancel(staff_id=staff_id, reason=reason.strip()))


@router.post("/console/followups/{workflow_id}/caring-contacts/stop")
async def stop_caring_contacts(
    workflow_id: WorkflowId, request: Request, console: ConsoleDep,
    reason: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    return await act(request, console, workflow_id, csrf_token, "stop_caring_contacts",
                     actions.stop_caring_contacts,
                     lambda staff_id: Cancel(staff_id=staff_id, reason=reason.strip()),
                     shown_after=series_after,
                     permitted=ClinicPolicy.manages_caring_contacts)
