"""Turns departure events into follow-ups, and lets staff act on them from a terminal.

    python starter.py start EVENT.json
    python starter.py status ID
    python starter.py reply ID TEXT
    python starter.py ack ID --staff S [--code C]
    python starter.py resolve ID --staff S --outcome O [--note N]
    python starter.py cancel ID --staff S --reason R

Every function takes the Temporal ``client`` so the HTTP service and tests call them
directly. An invalid event starts nothing: it is validated before Temporal hears of it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from aftercare.policies import PolicyBook, PolicyError
from aftercare.process import exit_without_finalizing
from aftercare.settings import Settings, get_settings
from aftercare.temporal.codec import EncryptionKeyError
from aftercare.temporal.connection import TemporalConfigError, TemporalUnreachable, connect
from aftercare.validation import describe_validation_error
from workflows.followup import DepartureFollowUp
from workflows.models import (
    Acknowledge,
    ActionResult,
    Cancel,
    ClientReply,
    DepartureEvent,
    FollowUpInput,
    FollowUpStatus,
    Resolve,
    legacy_followup_workflow_id,
)

CONTACT_KEY = SearchAttributeKey.for_keyword_list("AftercareContactKey")
# The staff console lists a clinic's follow-ups by it: a clinic id may contain "-", so
# it cannot be read back from followup-{clinic_id}-{session_id} safely.
CLINIC = SearchAttributeKey.for_keyword("AftercareClinic")
FINGERPRINT_MEMO = "event_fingerprint"


class InvalidInput(ValueError):
    """Bad input from a caller: the message names the field."""


class SessionConflict(ValueError):
    """A follow-up for this session exists and was started from a different event."""


class ActionRefused(ValueError):
    """A running follow-up refused a staff action (its validator's reason)."""


class FollowUpNotFound(LookupError):
    """No follow-up has this workflow id."""


@dataclass(frozen=True)
class Started:
    workflow_id: str
    created: bool


def parse_event(raw: bytes | str | dict[str, Any]) -> DepartureEvent:
    try:
        if isinstance(raw, dict):
            return DepartureEvent.model_validate(raw)
        return DepartureEvent.model_validate_json(raw)
    except ValidationError as err:
        raise InvalidInput(describe_validation_error(err)) from None


def contact_key(secret: str, phone: str) -> str:
    """A keyed hash of a phone number: finds a follow-up by sender without storing the number."""
    return hmac.new(secret.encode(), phone.encode(), hashlib.sha256).hexdigest()[:32]


def event_fingerprint(event: DepartureEvent) -> str:
    canonical = json.dumps(event.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def start_followup(
    client: Client, settings: Settings, policies: PolicyBook, event: DepartureEvent
) -> Started:
    """Start the session's follow-up, or find the one a repeat of this event started."""
    fingerprint = event_fingerprint(event)
    legacy_id = legacy_followup_workflow_id(event.clinic_id, event.session_id)
    if legacy_id != event.workflow_id and await _started_as(client, legacy_id, fingerprint):
        return Started(legacy_id, created=False)
    keys = [contact_key(settings.lookup_secret, event.client.phone)] if (
        settings.lookup_secret and event.client.phone
    ) else []
    pairs: list[SearchAttributePair] = [SearchAttributePair(CLINIC, event.clinic_id)]
    if keys:
        pairs.append(SearchAttributePair(CONTACT_KEY, keys))
    search_attributes = TypedSearchAttributes(pairs)
    try:
        await client.start_workflow(
            DepartureFollowUp.run,
            FollowUpInput(
                event=event,
                policy=policies.for_clinic(event.clinic_id).for_client(event.client.language),
            ),
            id=event.workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo={FINGERPRINT_MEMO: fingerprint},
            search_attributes=search_attributes,
        )
    except WorkflowAlreadyStartedError:
        described = await client.get_workflow_handle(event.workflow_id).describe()
        if await described.memo_value(FINGERPRINT_MEMO, default=None) != fingerprint:
            raise SessionConflict(
                f"a follow-up for session {event.session_id} already exists with different "
                "event content"
            ) from None
        return Started(event.workflow_id, created=False)
    return Started(event.workflow_id, created=True)


async def _started_as(client: Client, workflow_id: str, fingerprint: str) -> bool:
    """Whether this very event started the follow-up ``workflow_id``. Under a legacy id,
    another clinic's follow-up may answer: only the same event's fingerprint counts."""
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return await described.memo_value(FINGERPRINT_MEMO, default=None) == fingerprint


def followup(client: Client, workflow_id: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle_for(DepartureFollowUp.run, workflow_id)


async def get_status(client: Client, workflow_id: str) -> FollowUpStatus:
    try:
        return await followup(client, workflow_id).query(DepartureFollowUp.status)
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise FollowUpNotFound(f"no follow-up with id {workflow_id}") from None
        raise


async def send_reply(client: Client, workflow_id: str, reply: ClientReply) -> None:
    try:
        await followup(client, workflow_id).signal(DepartureFollowUp.client_reply, reply)
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise FollowUpNotFound(f"no open follow-up with id {workflow_id}") from None
        raise


async def _staff_action(client: Client, workflow_id: str, update: Any, arg: Any) -> ActionResult:
    try:
        return await followup(client, workflow_id).execute_update(update, arg)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise ActionRefused(getattr(cause, "message", None) or str(cause)) from None
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            await _refuse_if_closed(client, workflow_id)
            raise FollowUpNotFound(f"no follow-up with id {workflow_id}") from None
        raise


async def _refuse_if_closed(client: Client, workflow_id: str) -> None:
    """A closed follow-up answers "closed" to staff, not "not found"."""
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return
    raise ActionRefused("this follow-up is closed")


async def acknowledge(client: Client, workflow_id: str, ack: Acknowledge) -> ActionResult:
    return await _staff_action(client, workflow_id, DepartureFollowUp.acknowledge, ack)


async def resolve(client: Client, workflow_id: str, resolution: Resolve) -> ActionResult:
    return await _staff_action(client, workflow_id, DepartureFollowUp.resolve, resolution)


async def cancel(client: Client, workflow_id: str, cancellation: Cancel) -> ActionResult:
    return await _staff_action(client, workflow_id, DepartureFollowUp.cancel, cancellation)


# --------------------------------------------------------------------------- CLI


def _model(model: type, **fields: Any) -> Any:
    try:
        return model(**fields)
    except ValidationError as err:
        raise InvalidInput(describe_validation_error(err)) from None


async def run_command(args: argparse.Namespace, settings: Settings) -> str:
    if args.command == "start":
        try:
            raw = Path(args.event).read_bytes()
        except OSError as err:
            raise InvalidInput(f"cannot read {args.event}: {err.strerror}") from None
        event = parse_event(raw)
        policies = PolicyBook.load(settings.policy_file)
        client = await connect(settings)
        return (await start_followup(client, settings, policies, event)).workflow_id

    client = await connect(settings)
    if args.command == "status":
        status = await get_status(client, args.workflow_id)
        return status.model_dump_json(indent=2)
    if args.command == "reply":
        await send_reply(client, args.workflow_id, _model(ClientReply, text=args.text))
        return "reply sent"
    if args.command == "ack":
        ack = _model(Acknowledge, staff_id=args.staff, code=args.code)
        return (await acknowledge(client, args.workflow_id, ack)).message
    if args.command == "resolve":
        resolution = _model(Resolve, staff_id=args.staff, outcome=args.outcome, note=args.note)
        return (await resolve(client, args.workflow_id, resolution)).message
    cancellation = _model(Cancel, staff_id=args.staff, reason=args.reason)
    return (await cancel(client, args.workflow_id, cancellation)).message


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starter.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start the follow-up for a departure event")
    start.add_argument("event", help="path to the departure event JSON")
    for name, help_text in [("status", "state, deadlines and trail"),
                            ("reply", "a client reply, as if texted")]:
        command = commands.add_parser(name, help=help_text)
        command.add_argument("workflow_id")
    commands.choices["reply"].add_argument("text")
    ack = commands.add_parser("ack", help="acknowledge an escalation")
    resolve_cmd = commands.add_parser("resolve", help="resolve with an outcome")
    cancel_cmd = commands.add_parser("cancel", help="close the follow-up")
    for command in (ack, resolve_cmd, cancel_cmd):
        command.add_argument("workflow_id")
        command.add_argument("--staff", required=True, help="staff id")
    ack.add_argument("--code", help="the code from the page")
    resolve_cmd.add_argument(
        "--outcome", required=True,
        help="reached_client | emergency_services_contacted | could_not_reach | other")
    resolve_cmd.add_argument("--note")
    cancel_cmd.add_argument("--reason", required=True)
    commands.add_parser("serve", help="run the HTTP intake service")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from api.app import serve

        return serve()
    try:
        settings = get_settings()
        print(asyncio.run(run_command(args, settings)))
        return 0
    except (InvalidInput, PolicyError, SessionConflict, ActionRefused, FollowUpNotFound,
            TemporalConfigError, EncryptionKeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValidationError as err:
        print(f"error: settings: {describe_validation_error(err)}", file=sys.stderr)
        return 2
    except RPCError as err:
        print(f"error: Temporal refused the request: {err.message}", file=sys.stderr)
        return 1
    except TemporalUnreachable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    exit_without_finalizing(main())
