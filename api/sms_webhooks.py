"""Twilio's webhooks: texts from clients and on-call staff, and delivery status callbacks.

Both are signed by Twilio with the account's auth token over the URL Twilio called (our
``AFTERCARE_PUBLIC_BASE_URL`` plus path and query) and the form fields; an unsigned or
forged request is refused before anything reaches a follow-up.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

import starter
from aftercare.settings import Settings
from api.intake import Intake, intake
from api.lookup import open_escalations_with_code, open_followup_of_sender
from api.metrics import intake_events
from api.problems import problems
from workflows.followup import DepartureFollowUp
from workflows.models import (
    Acknowledge,
    Channel,
    ClientReply,
    DeliveryFailure,
    ResolutionOutcome,
    Resolve,
)
from workflows.policy import ClinicPolicy
from workflows.replies import HELP_WORDS, START_WORDS, STOP_WORDS, normalize

router = APIRouter(prefix="/v1/twilio", tags=["twilio webhooks"])

Service = Annotated[Intake, Depends(intake)]

# "ACK 123456" or "RESOLVED 123456 reached_client [note]", as the staff page asks.
STAFF_COMMAND = re.compile(r"^\s*(ack|resolved?)\s+(\d{6})\b\s*(.*)$", re.IGNORECASE | re.DOTALL)
OUTCOMES = " | ".join(outcome.value for outcome in ResolutionOutcome)
# Twilio answers these keywords itself (Advanced Opt-Out): we act on them, silently.
TWILIO_KEYWORDS = STOP_WORDS | START_WORDS | HELP_WORDS
UNDELIVERED = {"undelivered", "failed"}


class TwiML(Response):
    media_type = "text/xml"


def twiml(text: str | None = None) -> TwiML:
    answer = MessagingResponse()
    if text:
        answer.message(text)
    return TwiML(str(answer))


def _form(*fields: str) -> dict[str, object]:
    schema = {"type": "object", "properties": {name: {"type": "string"} for name in fields}}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        }
    }


async def signed_by_twilio(
    request: Request,
    service: Service,
    x_twilio_signature: Annotated[str | None, Header()] = None,
) -> dict[str, str]:
    """The form fields of a request Twilio signed; 403 for any other."""
    fields = dict(parse_qsl((await request.body()).decode("utf-8", "replace"),
                            keep_blank_values=True))
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not x_twilio_signature:
        problem = "X-Twilio-Signature: missing"
    elif not twilio_validator(service.settings).validate(
        public_url(service.settings, path), fields, x_twilio_signature
    ):
        problem = "X-Twilio-Signature: does not match this request"
    else:
        return fields
    intake_events.labels(request.url.path.rsplit("/", 1)[-1], "bad signature").inc()
    raise HTTPException(403, problem)


def twilio_validator(settings: Settings) -> RequestValidator:
    """Checks against the configured token only: the app refuses to start without one, so
    no public development token can ever stand in for it."""
    settings.require("twilio_auth_token")
    return RequestValidator(settings.twilio_auth_token)


def public_url(settings: Settings, path: str) -> str:
    """The URL Twilio calls (and signs) for our ``path``: we may sit behind a proxy."""
    settings.require("public_base_url")
    return settings.public_base_url.rstrip("/") + path


def twilio_signature(settings: Settings, path: str, fields: dict[str, str]) -> str:
    """What Twilio sends as X-Twilio-Signature for a request to our ``path``."""
    return twilio_validator(settings).compute_signature(public_url(settings, path), fields)


TwilioForm = Annotated[dict[str, str], Depends(signed_by_twilio)]


@router.post(
    "/inbound",
    response_class=TwiML,
    responses={200: {"description": "TwiML: what to text back, if anything"},
               **problems(403, 413, 422, 503)},
    openapi_extra=_form("From", "To", "Body", "MessageSid"),
)
async def text_received(fields: TwilioForm, service: Service) -> TwiML:
    """A text to the clinic's number: a client's reply, or staff acting on a page."""
    sender, body = fields.get("From", ""), fields.get("Body", "")
    client = await service.temporal()
    command = STAFF_COMMAND.match(body)
    if command:
        verb, code, rest = command.groups()
        intake_events.labels("inbound", f"staff {verb.lower()}").inc()
        return twiml(await act_for_staff(service, client, sender, verb, code, rest.strip()))
    return twiml(await pass_on_client_text(service, client, sender, body, fields.get("MessageSid")))


async def pass_on_client_text(
    service: Intake, client: Client, sender: str, body: str, message_sid: str | None
) -> str | None:
    secret = service.settings.lookup_secret
    workflow_id = await open_followup_of_sender(client, secret, sender) if secret else None
    if workflow_id is not None:
        reply = ClientReply(text=body[:1600], channel=Channel.SMS, provider_message_id=message_sid)
        try:
            await starter.send_reply(client, workflow_id, reply)
        except starter.FollowUpNotFound:
            pass
        else:
            intake_events.labels("inbound", "client reply").inc()
            return None
    intake_events.labels("inbound", "no open follow-up").inc()
    if normalize(body) in TWILIO_KEYWORDS:
        return None
    default = service.policies.for_clinic("default")
    return ("There is no open check-in for this number. "
            + default.crisis_line_for(default.default_language))


async def act_for_staff(
    service: Intake, client: Client, sender: str, verb: str, code: str, rest: str
) -> str:
    for workflow_id in await open_escalations_with_code(client, code):
        status = await starter.get_status(client, workflow_id)
        staff_id = staff_with_phone(service.policies.for_clinic(status.clinic_id), sender)
        if staff_id is None:
            continue
        try:
            if verb.lower() == "ack":
                result = await starter.acknowledge(
                    client, workflow_id, Acknowledge(staff_id=staff_id, code=code))
                return (f"Ref {code}: {result.message}. When done, reply RESOLVED {code} "
                        f"and one of {OUTCOMES}.")
            outcome, _, note = rest.partition(" ")
            resolution = Resolve(staff_id=staff_id, outcome=outcome.lower().replace("-", "_"),
                                 note=note.strip() or None)
            result = await starter.resolve(client, workflow_id, resolution)
            return f"Ref {code}: {result.message}."
        except ValidationError:
            return f"Ref {code}: reply RESOLVED {code} and one of {OUTCOMES}."
        except starter.ActionRefused as err:
            return f"Ref {code}: {err}."
        except starter.FollowUpNotFound:
            return f"Ref {code} is closed."
    return f"No open escalation has ref {code} for this number."


def staff_with_phone(policy: ClinicPolicy, phone: str) -> str | None:
    return next((staff_id for staff_id, member in policy.staff.items()
                 if phone and member.phone == phone), None)


@router.post(
    "/status",
    status_code=204,
    response_class=Response,
    responses=problems(403, 413, 422, 503),
    openapi_extra=_form("MessageSid", "MessageStatus", "ErrorCode"),
)
async def delivery_status(
    fields: TwilioForm,
    service: Service,
    followup: Annotated[
        str | None, Query(max_length=200, description="Set by the SMS activity")
    ] = None,
) -> Response:
    """Twilio's word on a text it accepted: undelivered or failed → the other channel."""
    status, sid = fields.get("MessageStatus", ""), fields.get("MessageSid")
    intake_events.labels("status", status or "none").inc()
    if followup and sid and status in UNDELIVERED:
        failure = DeliveryFailure(provider_message_id=sid, error_code=fields.get("ErrorCode"))
        try:
            await (await service.temporal()).get_workflow_handle(followup).signal(
                DepartureFollowUp.delivery_failed, failure)
        except RPCError as err:
            # The follow-up has closed: nothing is left to fall back for.
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
    return Response(status_code=204)
