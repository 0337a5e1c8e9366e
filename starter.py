"""Turns departure events into follow-ups, and lets staff act on them from a terminal.

    python starter.py start EVENT.json
    python starter.py status ID
    python starter.py reply ID TEXT
    python starter.py ack ID --staff S [--code C]
    python starter.py resolve ID --staff S --outcome O [--note N]
    python starter.py cancel ID --staff S --reason R
    python starter.py serve

The operations themselves are ``aftercare.followups``'s, which the HTTP service calls too;
``serve`` runs that service (``api.app``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from temporalio.service import RPCError

from aftercare.followups import views
from aftercare.followups.actions import acknowledge, cancel, resolve, send_reply
from aftercare.followups.errors import (
    ActionRefused,
    FollowUpNotFound,
    InvalidInput,
    SessionConflict,
)
from aftercare.followups.start import parse_event, start_followup
from aftercare.policies import PolicyBook, PolicyError
from aftercare.process import exit_without_finalizing
from aftercare.settings import Settings, get_settings
from aftercare.temporal.codec import EncryptionCodec, EncryptionKeyError
from aftercare.temporal.connection import TemporalConfigError, TemporalUnreachable, connect
from aftercare.trail.store import AuditStore
from aftercare.validation import describe_validation_error
from api.app import serve
from workflows.models import Acknowledge, Cancel, ClientReply, FollowUpStatus, Resolve


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

    if args.command == "status":
        return (await stored_status(settings, args.workflow_id)).model_dump_json(indent=2)
    client = await connect(settings)
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


class AuditStoreUnreadable(RuntimeError):
    """The audit database did not answer."""


async def stored_status(settings: Settings, workflow_id: str) -> FollowUpStatus:
    """What the audit store holds of the follow-up, as the API reads it: no worker needed,
    and Temporal only to say that one with no stored view yet is being set up."""
    try:
        store = await AuditStore.open(settings.audit_database_url)
    except (SQLAlchemyError, OSError) as err:
        # The driver's message may carry the database URL: name the setting, not the value.
        raise AuditStoreUnreadable("the audit store at AFTERCARE_AUDIT_DATABASE_URL cannot "
                                   f"be read ({type(err).__name__})") from None
    try:
        codec = EncryptionCodec(settings.encryption_keys)
        return await views.read_status(store, codec, workflow_id)
    except FollowUpNotFound:
        if await views.being_set_up(await connect(settings), workflow_id):
            raise FollowUpNotFound(f"follow-up {workflow_id} is being set up: try again in a "
                                   "moment") from None
        raise
    finally:
        await store.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starter.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start the follow-up for a departure event")
    start.add_argument("event", help="path to the departure event JSON")
    for name, help_text in [("status", "state, deadlines and trail, from the audit store"),
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
    except AuditStoreUnreadable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    exit_without_finalizing(main())
