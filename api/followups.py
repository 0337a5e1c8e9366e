"""Clinics' endpoints: send a departure event, read a follow-up, act on it as staff."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Response
from pydantic import BaseModel, Field
from temporalio.client import Client

from aftercare.followups import actions, views
from aftercare.followups.errors import ActionRefused, FollowUpNotFound, SessionConflict
from aftercare.followups.start import start_followup
from api.auth import CallingClinic
from api.intake import Intake, intake
from api.metrics import intake_events
from api.problems import problems
from workflows.models import (
    Acknowledge,
    ActionResult,
    Cancel,
    ClientReply,
    DepartureEvent,
    FollowUpStatus,
    Resolve,
    clinic_of_followup,
    legacy_followup_workflow_id,
)

router = APIRouter(prefix="/v1", tags=["follow-ups"])

Service = Annotated[Intake, Depends(intake)]
WorkflowId = Annotated[
    str,
    Path(min_length=1, max_length=200, pattern=r"^followup-[A-Za-z0-9][A-Za-z0-9._-]*$",
         description="followup-{clinic_id, each - doubled}-{session_id}"),
]


class FollowUpAccepted(BaseModel):
    workflow_id: str
    status_url: str


class ReplyByApi(BaseModel):
    text: str = Field(min_length=1, max_length=1600, description="What the client said")


class ReplyAccepted(BaseModel):
    workflow_id: str
    message: str


@router.post(
    "/departures",
    status_code=202,
    response_model=FollowUpAccepted,
    responses={
        200: {"model": FollowUpAccepted, "description": "A repeat of an event already received"},
        **problems(400, 401, 403, 409, 413, 422, 503),
    },
)
async def receive_departure(
    event: DepartureEvent, clinic_id: CallingClinic, service: Service, response: Response
) -> FollowUpAccepted:
    """Start the follow-up for a client who left a session; a repeat changes nothing."""
    if event.clinic_id != clinic_id:
        raise HTTPException(403, f"clinic_id: this API key is not for clinic {event.clinic_id!r}")
    client = await service.temporal()
    try:
        started = await start_followup(client, service.settings, service.policies, event)
    except SessionConflict as err:
        intake_events.labels("departure", "conflict").inc()
        raise HTTPException(409, f"session_id: {err}") from None
    intake_events.labels("departure", "started" if started.created else "repeat").inc()
    status_url = (
        f"{service.settings.public_base_url.rstrip('/')}{router.prefix}/followups/"
        f"{started.workflow_id}"
    )
    response.status_code = 202 if started.created else 200
    response.headers["Location"] = status_url
    return FollowUpAccepted(workflow_id=started.workflow_id, status_url=status_url)


@router.get(
    "/followups/{workflow_id}",
    response_model=FollowUpStatus,
    responses=problems(400, 401, 404, 422, 503),
)
async def read_followup(
    workflow_id: WorkflowId, clinic_id: CallingClinic, service: Service
) -> FollowUpStatus:
    """State, next deadline and the audit trail of one of the clinic's follow-ups, as the
    audit store last received them from the follow-up (``updated_at``). Just after the
    departure, until its first view is stored, a ``404`` says it is being set up."""
    refuse_other_clinics_ids(clinic_id, workflow_id)
    try:
        return await views.read_status(await service.audit_store(), service.codec(),
                                       workflow_id, clinic_id=clinic_id)
    except FollowUpNotFound:
        raise await missing(service, clinic_id, workflow_id) from None


def refuse_other_clinics_ids(clinic_id: str, workflow_id: str) -> None:
    """Cheap first: the id names the clinic (in today's form, or the form of follow-ups
    started before clinic ids' dashes were doubled); the stored view says for sure. Another
    clinic's follow-up is answered exactly like one that does not exist, and as fast: it is
    refused here, before the store or Temporal is asked (asking about a follow-up that
    exists takes longer than about one that does not, which told a clinic another's ids)."""
    if not names_the_clinic(workflow_id, clinic_id):
        raise not_found(clinic_id, workflow_id)


def names_the_clinic(workflow_id: str, clinic_id: str) -> bool:
    """Whether ``workflow_id`` is one of ``clinic_id``'s: its clinic part is that clinic,
    or (for a clinic id with a ``-``) it has the form follow-ups had before clinic ids'
    dashes were doubled. A prefix test let ``followup-demo--x-…`` (clinic ``demo-x``) pass
    for clinic ``demo``."""
    if clinic_of_followup(workflow_id) == clinic_id:
        return True
    return "-" in clinic_id and workflow_id.startswith(legacy_followup_workflow_id(clinic_id, ""))


async def missing(service: Intake, clinic_id: str, workflow_id: str) -> HTTPException:
    """Why the clinic's follow-up has no stored view: still being set up, or none at all."""
    if await views.being_set_up(await service.temporal(), workflow_id, clinic_id):
        return HTTPException(
            404, f"workflow_id: follow-up {workflow_id!r} is being set up: try again in a "
                 "moment", headers={"Retry-After": "1"})
    return not_found(clinic_id, workflow_id)


def not_found(clinic_id: str, workflow_id: str) -> HTTPException:
    return HTTPException(404, f"workflow_id: clinic {clinic_id!r} has no follow-up "
                              f"{workflow_id!r}")


async def act_on_followup(
    service: Intake,
    clinic_id: str,
    workflow_id: str,
    action: Callable[[Client, str, Any], Awaitable[Any]],
    arg: Any,
) -> Any:
    """Act on one of the clinic's follow-ups, also one still being set up."""
    refuse_other_clinics_ids(clinic_id, workflow_id)
    client = await service.temporal()
    try:
        await views.read_view(await service.audit_store(), workflow_id, clinic_id=clinic_id)
    except FollowUpNotFound:
        if not await views.being_set_up(client, workflow_id, clinic_id):
            raise not_found(clinic_id, workflow_id) from None
    try:
        return await action(client, workflow_id, arg)
    except ActionRefused as err:
        raise HTTPException(409, str(err)) from None
    except FollowUpNotFound:
        raise HTTPException(409, "this follow-up is closed") from None


ACTION_ERRORS = problems(400, 401, 404, 409, 413, 422, 503)


@router.post(
    "/followups/{workflow_id}/acknowledge", response_model=ActionResult, responses=ACTION_ERRORS
)
async def acknowledge_escalation(
    workflow_id: WorkflowId, ack: Acknowledge, clinic_id: CallingClinic, service: Service
) -> ActionResult:
    """A staff member takes the escalation: the chain stops paging the next level."""
    return await act_on_followup(service, clinic_id, workflow_id, actions.acknowledge, ack)


@router.post(
    "/followups/{workflow_id}/resolve", response_model=ActionResult, responses=ACTION_ERRORS
)
async def resolve_followup(
    workflow_id: WorkflowId, resolution: Resolve, clinic_id: CallingClinic, service: Service
) -> ActionResult:
    """Record what happened (reached the client, emergency services, ...)."""
    return await act_on_followup(service, clinic_id, workflow_id, actions.resolve, resolution)


@router.post(
    "/followups/{workflow_id}/cancel", response_model=ActionResult, responses=ACTION_ERRORS
)
async def cancel_followup(
    workflow_id: WorkflowId, cancellation: Cancel, clinic_id: CallingClinic, service: Service
) -> ActionResult:
    """Close the follow-up now, e.g. the client came back to the clinic."""
    return await act_on_followup(service, clinic_id, workflow_id, actions.cancel, cancellation)


@router.post(
    "/followups/{workflow_id}/caring-contacts/stop", response_model=ActionResult,
    responses=ACTION_ERRORS,
)
async def stop_caring_contacts(
    workflow_id: WorkflowId, stop: Cancel, clinic_id: CallingClinic, service: Service
) -> ActionResult:
    """Stop the Caring Contacts series that followed this follow-up (``workflow_id`` may
    also be the series' own id): no more messages; an open escalation stays open."""
    return await act_on_followup(service, clinic_id, actions.series_of(workflow_id),
                                 actions.stop_caring_contacts, stop)


@router.post(
    "/followups/{workflow_id}/reply",
    status_code=202,
    response_model=ReplyAccepted,
    responses=ACTION_ERRORS,
)
async def reply_for_client(
    workflow_id: WorkflowId, reply: ReplyByApi, clinic_id: CallingClinic, service: Service
) -> ReplyAccepted:
    """A client's reply that reached the clinic another way, acted on as if texted."""
    await act_on_followup(
        service, clinic_id, workflow_id, actions.send_reply, ClientReply(text=reply.text)
    )
    return ReplyAccepted(workflow_id=workflow_id, message="reply passed to the follow-up")
