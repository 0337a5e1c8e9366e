"""Twilio's webhooks: texts from clients and on-call staff, and delivery status callbacks.

Both are signed by Twilio with the account's auth token over the URL Twilio called (our
``AFTERCARE_PUBLIC_BASE_URL`` plus path and query) and the form fields; an unsigned or
forged request is refused before anything reaches a follow-up.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from aftercare.followups import actions
from aftercare.followups.errors import ActionRefused, FollowUpNotFound
from aftercare.followups.lookup import (
    closed_followup_of_sender,
    open_escalations_with_code,
    open_followup_of_sender,
)
from aftercare.followups.priority import to_any_worker
from aftercare.followups.start import start_late_followup
from aftercare.logs import get_logger
from aftercare.settings import Settings
from aftercare.trail.inbox import WebhookInbox
from api.intake import Intake, intake
from api.metrics import inbound_waiting, intake_events, one_of
from api.problems import problems
from workflows.followup import DepartureFollowUp
from workflows.models import (
    Acknowledge,
    Channel,
    ClientReply,
    DeliveryFailure,
    ResolutionOutcome,
    Resolve,
    clinic_of_followup,
)
from workflows.policy import ClinicPolicy
from workflows.replies import (
    DECLINE_WORDS,
    HELP_WORDS,
    SAFE_WORDS,
    START_WORDS,
    STOP_WORDS,
    normalize,
)

router = APIRouter(prefix="/v1/twilio", tags=["twilio webhooks"])
log = get_logger("aftercare.api.twilio")

Service = Annotated[Intake, Depends(intake)]

# "ACK 123456" or "RESOLVED 123456 reached_client [note]", as the staff page asks.
STAFF_COMMAND = re.compile(r"^\s*(ack|resolved?)\s+(\d{6})\b\s*(.*)$", re.IGNORECASE | re.DOTALL)
OUTCOMES = " | ".join(outcome.value for outcome in ResolutionOutcome)
# Twilio answers these keywords itself (Advanced Opt-Out): we act on them, silently.
TWILIO_KEYWORDS = STOP_WORDS | START_WORDS | HELP_WORDS
UNDELIVERED = {"undelivered", "failed"}
# Twilio's message statuses: the only values the status callback's metric label takes.
TWILIO_STATUSES = frozenset({
    "accepted", "scheduled", "canceled", "queued", "sending", "sent", "failed", "delivered",
    "undelivered", "receiving", "received", "read", "partially_delivered",
})
WEBHOOK_KINDS = frozenset({"inbound", "status"})


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
    kind = one_of(request.url.path.rsplit("/", 1)[-1], WEBHOOK_KINDS)
    intake_events.labels(kind, "bad signature").inc()
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
               **problems(403, 413, 422)},
    openapi_extra=_form("From", "To", "Body", "MessageSid"),
)
async def text_received(fields: TwilioForm, service: Service) -> TwiML:
    """A text to the clinic's number: a client's reply, or staff acting on a page.

    Kept before it is passed on: a replay of the same ``MessageSid`` is ignored, and when
    Temporal cannot take it Twilio still gets 200 and the text is passed on once it can.
    A client's text is never lost to a 5xx that Twilio would not retry."""
    key = f"inbound:{_required(fields, 'MessageSid')}"
    return twiml(await keep_and_pass_on(service, key, {"kind": "inbound", "fields": fields}))


def _required(fields: dict[str, str], name: str) -> str:
    if not fields.get(name):
        raise HTTPException(422, f"{name}: missing")
    return fields[name]


async def keep_and_pass_on(service: Intake, key: str, request: dict[str, Any]) -> str | None:
    """Keep the webhook, pass it on, and say what to answer Twilio (TwiML text, if any)."""
    try:
        inbox = await service.inbox()
        fresh = await inbox.keep(key, request, datetime.now(UTC))
    except Exception as err:  # noqa: BLE001 - the audit database must not cost a client's text
        log.warning("audit database unavailable: webhook kept in the local spool",
                    kind=request["kind"], error=type(err).__name__)
        return await spool_and_pass_on(service, key, request)
    if not fresh:
        intake_events.labels(request["kind"], "replay ignored").inc()
        return None
    try:
        answer = await pass_on(service, request)
    except Exception as err:  # noqa: BLE001 - whatever failed, the webhook waits to be redone
        await inbox.release(key)
        log.warning("webhook kept for redelivery", kind=request["kind"],
                    error=type(err).__name__)
        intake_events.labels(request["kind"], "kept for redelivery").inc()
        return answer_while_kept(request)
    await inbox.delivered(key, datetime.now(UTC))
    return answer


async def spool_and_pass_on(service: Intake, key: str, request: dict[str, Any]) -> str | None:
    """While the audit database is away: keep the webhook in the local spool, where a key
    seen during the outage is a replay. What could lower a client's care if it were a
    replay of an older text waits until the audit database can say; the rest (a crisis,
    a call request, words for on-call to read, a delivery receipt) is passed on at once."""
    try:
        spool = await service.spool()
        fresh = await spool.keep(key, request, datetime.now(UTC))
    except Exception as err:  # noqa: BLE001 - unkept beats lost
        log.error("webhook passed on unkept: neither the audit database nor the local spool "
                  "could keep it", kind=request["kind"], error=type(err).__name__)
        intake_events.labels(request["kind"], "passed on unkept").inc()
        return await pass_on(service, request)
    if not fresh:
        intake_events.labels(request["kind"], "replay ignored").inc()
        return None
    if lowers_care(request):
        await spool.release(key)
        intake_events.labels(request["kind"], "held for the audit database").inc()
        return answer_while_kept(request)
    try:
        answer = await pass_on(service, request)
    except Exception as err:  # noqa: BLE001 - it waits in the spool to be redone
        await spool.release(key)
        log.warning("webhook kept for redelivery", kind=request["kind"],
                    error=type(err).__name__)
        intake_events.labels(request["kind"], "kept for redelivery").inc()
        return answer_while_kept(request)
    await spool.delivered(key, datetime.now(UTC))
    return answer


def lowers_care(request: dict[str, Any]) -> bool:
    """Whether acting on this webhook a second time could take care away from a client: a
    safe answer, an opt-out, a declined offer or a chosen slot, staff taking or closing a
    page. A replay of anything else pages or asks someone to look, at worst once more."""
    if request["kind"] != "inbound":
        return False  # a receipt's fallback happens once per message, replayed or not
    body = request["fields"].get("Body", "")
    said = normalize(body)
    return bool(STAFF_COMMAND.match(body) or said.rstrip("!. ") in SAFE_WORDS
                or said in STOP_WORDS or said in DECLINE_WORDS
                or (len(said) == 1 and said.isalpha()))


async def pass_on(service: Intake, request: dict[str, Any]) -> str | None:
    """Act on a kept webhook; raises when Temporal (or anything else) could not take it."""
    client = await service.temporal()
    fields = request["fields"]
    if request["kind"] == "status":
        await pass_on_delivery_status(client, fields, request.get("followup"))
        return None
    sender, body = fields.get("From", ""), fields.get("Body", "")
    command = STAFF_COMMAND.match(body)
    if command:
        verb, code, rest = command.groups()
        intake_events.labels("inbound", f"staff {verb.lower()}").inc()
        return await act_for_staff(service, client, sender, verb, code, rest.strip())
    return await pass_on_client_text(service, client, sender, body, fields.get("MessageSid"))


def answer_while_kept(request: dict[str, Any]) -> str | None:
    """A client's text needs no answer (the follow-up texts back once it has it); staff
    must not read silence as done."""
    command = STAFF_COMMAND.match(request["fields"].get("Body", ""))
    if request["kind"] != "inbound" or command is None:
        return None
    return (f"Ref {command.group(2)}: received but not acted on yet; it will be as soon as "
            "the service is back. If it cannot wait, call the clinic.")


async def redeliver_waiting(
    service: Intake, inbox: WebhookInbox | None = None,
    passable: Callable[[dict[str, Any]], bool] = lambda _request: True,
) -> None:
    """One pass of the redelivery loop over ``inbox`` (the audit database's by default):
    pass on, oldest first, every kept webhook nobody is handling that is ``passable``; stop
    at the first failure (Temporal is still away) and give the rest back."""
    inbox = inbox or await service.inbox()
    claimed = await inbox.claim_waiting(datetime.now(UTC))
    for index, kept in enumerate(claimed):
        if not passable(kept.request):
            await inbox.release(kept.message_key)
            continue
        try:
            await pass_on(service, kept.request)
        except Exception as err:  # noqa: BLE001 - the webhook waits for the next pass
            log.warning("webhook redelivery failed", kind=kept.request["kind"],
                        error=type(err).__name__)
            for waiting in claimed[index:]:
                await inbox.release(waiting.message_key)
            break
        await inbox.delivered(kept.message_key, datetime.now(UTC))
        intake_events.labels(kept.request["kind"], "redelivered").inc()
    inbound_waiting.set(await inbox.waiting_count())


async def empty_the_spool(service: Intake) -> None:
    """Once the audit database answers, move what the spool kept into it: keys passed on
    are recorded (a key it had already was a replay passed on during the outage: counted),
    waiting webhooks are kept there for the redelivery loop, or ignored as the replays they
    turn out to be. While it is still away, pass on what need not wait for it."""
    spool = await service.spool()
    try:
        inbox = await service.inbox()
        await inbox.waiting_count()
    except Exception:  # noqa: BLE001 - still away: only what lowers no one's care goes on
        await redeliver_waiting(service, spool, lambda request: not lowers_care(request))
        return
    now = datetime.now(UTC)
    for key, received_at in await spool.delivered_keys():
        if not await inbox.keep_delivered(key, received_at, now):
            intake_events.labels(webhook_kind(key), "replay passed on while spooled").inc()
        await spool.forget(key)
    for kept in await spool.claim_waiting(now):
        if await inbox.keep(kept.message_key, kept.request, now):
            await inbox.release(kept.message_key)
        else:
            intake_events.labels(webhook_kind(kept.message_key), "replay ignored").inc()
        await spool.forget(kept.message_key)


def webhook_kind(message_key: str) -> str:
    return one_of(message_key.split(":", 1)[0], WEBHOOK_KINDS)


async def redeliver_forever(service: Intake) -> None:
    """The API's background loop: kept webhooks reach their follow-ups once Temporal is
    back, and what the spool kept reaches the audit database once that is."""
    while True:
        if service.settings.webhook_spool_path.exists():
            try:
                await empty_the_spool(service)
            except Exception as err:  # noqa: BLE001 - tried again next round
                log.warning("webhook spool pass failed", error=type(err).__name__)
        try:
            await redeliver_waiting(service)
        except Exception as err:  # noqa: BLE001 - the audit database may be away too
            log.warning("webhook redelivery pass failed", error=type(err).__name__)
        await asyncio.sleep(service.settings.inbox_retry_seconds)


async def pass_on_client_text(
    service: Intake, client: Client, sender: str, body: str, message_sid: str | None
) -> str | None:
    """A client's text goes to their open follow-up; failing that, to a late follow-up of
    the one that last closed within the retention. The follow-up texts back (crisis line
    included), so Twilio gets no answer of ours. A number with neither gets the crisis line.
    A keyword Twilio answers itself (STOP, HELP...) starts no late follow-up."""
    secret = service.settings.lookup_secret
    reply = ClientReply(text=body[:1600], channel=Channel.SMS, provider_message_id=message_sid)
    if secret and await passed_to_open_followup(client, secret, sender, reply):
        intake_events.labels("inbound", "client reply").inc()
        return None
    keyword = normalize(body) in TWILIO_KEYWORDS
    if secret and not keyword and await passed_to_late_followup(
        service, client, secret, sender, reply
    ):
        intake_events.labels("inbound", "late reply").inc()
        return None
    intake_events.labels("inbound", "no open follow-up").inc()
    if keyword:
        return None
    default = service.policies.for_clinic("default")
    return ("There is no open check-in for this number. "
            + default.crisis_line_for(default.default_language))


async def passed_to_open_followup(
    client: Client, secret: str, sender: str, reply: ClientReply
) -> bool:
    workflow_id = await open_followup_of_sender(client, secret, sender)
    if workflow_id is None:
        return False
    try:
        await actions.send_reply(client, workflow_id, reply)
    except FollowUpNotFound:
        return False  # it closed just now: the late follow-up takes the text
    return True


async def passed_to_late_followup(
    service: Intake, client: Client, secret: str, sender: str, reply: ClientReply
) -> bool:
    closed_since = datetime.now(UTC) - service.settings.late_text_retention
    closed_id = await closed_followup_of_sender(client, secret, sender, closed_since)
    if closed_id is None:
        return False
    try:
        await start_late_followup(client, service.settings, service.policies, closed_id, reply)
    except FollowUpNotFound:
        return False  # its history was deleted after visibility found it: nothing to go on
    return True


async def act_for_staff(
    service: Intake, client: Client, sender: str, verb: str, code: str, rest: str
) -> str:
    for workflow_id in await open_escalations_with_code(client, code):
        # The clinic is in the follow-up's id: a page answered before its view is stored
        # still finds it, and the update itself refuses anyone not on that clinic's staff.
        clinic_id = clinic_of_followup(workflow_id)
        if clinic_id is None:
            continue
        staff_id = staff_with_phone(service.policies.for_clinic(clinic_id), sender)
        if staff_id is None:
            continue
        try:
            if verb.lower() == "ack":
                result = await actions.acknowledge(
                    client, workflow_id, Acknowledge(staff_id=staff_id, code=code))
                return (f"Ref {code}: {result.message}. When done, reply RESOLVED {code} "
                        f"and one of {OUTCOMES}.")
            outcome, _, note = rest.partition(" ")
            resolution = Resolve(staff_id=staff_id, outcome=outcome.lower().replace("-", "_"),
                                 note=note.strip() or None)
            result = await actions.resolve(client, workflow_id, resolution)
            return f"Ref {code}: {result.message}."
        except ValidationError:
            return f"Ref {code}: reply RESOLVED {code} and one of {OUTCOMES}."
        except ActionRefused as err:
            return f"Ref {code}: {err}."
        except FollowUpNotFound:
            return f"Ref {code} is closed."
    return f"No open escalation has ref {code} for this number."


def staff_with_phone(policy: ClinicPolicy, phone: str) -> str | None:
    return next((staff_id for staff_id, member in policy.staff.items()
                 if phone and member.phone == phone), None)


@router.post(
    "/status",
    status_code=204,
    response_class=Response,
    responses=problems(403, 413, 422),
    openapi_extra=_form("MessageSid", "MessageStatus", "ErrorCode"),
)
async def delivery_status(
    fields: TwilioForm,
    service: Service,
    followup: Annotated[
        str | None, Query(max_length=200, description="Set by the SMS activity")
    ] = None,
) -> Response:
    """Twilio's word on a text it accepted: undelivered or failed → the other channel.
    Kept and de-duplicated like a text: Twilio reports each status of a message once."""
    status = fields.get("MessageStatus", "")
    intake_events.labels("status", one_of(status, TWILIO_STATUSES) if status else "none").inc()
    key = f"status:{_required(fields, 'MessageSid')}:{status}"
    await keep_and_pass_on(service, key, {"kind": "status", "fields": fields,
                                          "followup": followup})
    return Response(status_code=204)


async def pass_on_delivery_status(
    client: Client, fields: dict[str, str], followup: str | None
) -> None:
    status, sid = fields.get("MessageStatus", ""), fields.get("MessageSid")
    if followup and sid and status in UNDELIVERED:
        failure = DeliveryFailure(provider_message_id=sid, error_code=fields.get("ErrorCode"))
        await to_any_worker(client, followup)  # a page's fallback waits on no dead worker
        try:
            await client.get_workflow_handle(followup).signal(
                DepartureFollowUp.delivery_failed, failure)
        except RPCError as err:
            # The follow-up has closed: nothing is left to fall back for.
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
