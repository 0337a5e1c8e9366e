"""The compliance auditor's CLI: export follow-up trails, verify their hash chains, and
replay their Temporal histories against today's workflow code.

    aftercare-auditor export --workflow ID [--format jsonl|csv|fhir]
    aftercare-auditor export --from DATE --to DATE [--clinic C] [--format ...]
    aftercare-auditor verify --workflow ID | --all
    aftercare-auditor notes --workflow ID
    aftercare-auditor disclosures --from DATE --to DATE [--clinic C] [--format text|jsonl|csv]
    aftercare-auditor replay --workflow ID | --history FILE

Every use is written to the audit database's access log (who, what, when) before it runs,
so a failed or refused look is on record too. Each subcommand is one ``Command`` in
``COMMANDS``: a new one (``replay``) is an entry there, not a change to the others.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import make_url
from temporalio.service import RPCError, RPCStatusCode

from aftercare.process import exit_without_finalizing
from aftercare.settings import Settings, get_settings
from aftercare.temporal.codec import (
    EncryptionCodec,
    EncryptionKeyError,
    PayloadDecryptionError,
    data_converter,
)
from aftercare.temporal.connection import TemporalConfigError, TemporalUnreachable, connect
from aftercare.trail.exports import (
    DISCLOSURE_FORMATS,
    EXPORT_FORMATS,
    without_staff_text,
    write_checkpoints,
)
from aftercare.trail.replay import (
    HistoryFileError,
    encryption_key_ids,
    fetch_history,
    read_history_file,
    replay_and_compare,
)
from aftercare.trail.store import AuditStore
from aftercare.trail.verification import verify_chain
from workflows.caring import CaringContacts
from workflows.followup import DepartureFollowUp

EXIT_OK, EXIT_FINDINGS, EXIT_UNUSABLE = 0, 1, 2


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    describe_target: Callable[[argparse.Namespace], str]
    """What the access log records as looked at."""
    run: Callable[[AuditStore, argparse.Namespace, TextIO, Settings], Awaitable[int]]
    problem_with: Callable[[argparse.Namespace], str | None] = lambda args: None
    """What is wrong with a combination of arguments argparse cannot check, if anything."""


# --- export -----------------------------------------------------------------------------


def _moment(text: str, *, end_of_day: bool) -> datetime:
    """An ISO date or date-time; a bare date means the whole day (UTC), a naive time UTC."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not an ISO date (2026-11-21) or date-time (2026-11-21T09:00Z)"
            ) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start + timedelta(days=1) if end_of_day else start


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--workflow", metavar="ID", help="one follow-up's whole trail")
    which.add_argument(
        "--from",
        dest="start",
        metavar="DATE",
        type=lambda text: _moment(text, end_of_day=False),
        help="first day (or moment) of a period, with --to",
    )
    parser.add_argument(
        "--to",
        dest="end",
        metavar="DATE",
        type=lambda text: _moment(text, end_of_day=True),
        help="last day of the period, included (or a moment, excluded)",
    )
    parser.add_argument("--clinic", metavar="C", help="only this clinic's follow-ups (exactly)")
    parser.add_argument("--format", choices=sorted(EXPORT_FORMATS), default="jsonl")
    parser.add_argument(
        "--for-verification",
        action="store_true",
        help="jsonl only: entries exactly as stored (staff free text included, since every "
        "byte is hashed) and each chain's signed checkpoints, one {\"checkpoint\": …} line "
        "each, for scripts/verify_trail.py or an auditor's own",
    )


def _export_target(args: argparse.Namespace) -> str:
    how = f"as {args.format}" + (", exact for verification" if args.for_verification else "")
    if args.workflow:
        return f"workflow {args.workflow} {how}"
    clinic = f" clinic {args.clinic}" if args.clinic else ""
    return f"period {args.start.isoformat()}..{args.end.isoformat()}{clinic} {how}"


async def _export(
    store: AuditStore, args: argparse.Namespace, out: TextIO, _settings: Settings
) -> int:
    if args.workflow:
        entries = await store.entries(args.workflow)
        if not entries:
            _complain(f"no audit trail stored for {args.workflow}")
            return EXIT_FINDINGS
    else:
        entries = await store.entries_between(args.start, args.end, clinic_id=args.clinic)
    if not args.for_verification:
        entries = [without_staff_text(entry) for entry in entries]
    EXPORT_FORMATS[args.format](entries, out)
    if args.for_verification:
        for workflow_id in dict.fromkeys(entry.workflow_id for entry in entries):
            write_checkpoints(await store.checkpoints(workflow_id), out)
    return EXIT_OK


def _export_problem(args: argparse.Namespace) -> str | None:
    if args.start is not None and args.end is None:
        return "--from needs --to"
    if args.workflow and (args.end is not None or args.clinic):
        return "--to and --clinic select a period: use them with --from, not --workflow"
    if args.start is not None and args.end <= args.start:
        return "--to must be after --from"
    if args.for_verification and args.format != "jsonl":
        return "--for-verification goes with --format jsonl"
    return None


# --- verify -----------------------------------------------------------------------------


def _add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--workflow", metavar="ID", help="check one follow-up's chain")
    which.add_argument("--all", action="store_true", help="check every stored chain")


def _verify_target(args: argparse.Namespace) -> str:
    return "all chains" if args.all else f"workflow {args.workflow}"


async def _verify(
    store: AuditStore, args: argparse.Namespace, out: TextIO, settings: Settings
) -> int:
    if not settings.audit_signing_keys:
        _complain("AFTERCARE_AUDIT_SIGNING_KEYS is not set: the chains' signed checkpoints "
                  "cannot be checked without it")
        return EXIT_UNUSABLE
    workflow_ids = await store.workflow_ids() if args.all else [args.workflow]
    failed = 0
    for workflow_id in workflow_ids:
        entries = await store.entries(workflow_id)
        checkpoints = await store.checkpoints(workflow_id)
        if not entries and not checkpoints:
            out.write(f"{workflow_id}: no audit trail stored\n")
            failed += 1
            continue
        report = verify_chain(entries, checkpoints, settings.audit_signing_keys)
        for finding in report.findings:
            out.write(f"{workflow_id}: {finding}\n")
        if report.findings:
            failed += 1
        else:
            out.write(f"{workflow_id}: {report.summary}\n")
    if args.all:
        out.write(f"{len(workflow_ids) - failed} of {len(workflow_ids)} chains verified\n")
    return EXIT_FINDINGS if failed else EXIT_OK


# --- disclosures -----------------------------------------------------------------------


def _add_disclosures_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", metavar="DATE", required=True,
                        type=lambda text: _moment(text, end_of_day=False),
                        help="first day (or moment) of the period")
    parser.add_argument("--to", dest="end", metavar="DATE", required=True,
                        type=lambda text: _moment(text, end_of_day=True),
                        help="last day of the period, included (or a moment, excluded)")
    parser.add_argument("--clinic", metavar="C", help="only this clinic's follow-ups (exactly)")
    parser.add_argument("--workflow", metavar="ID", help="only this follow-up (one client's)")
    parser.add_argument("--format", choices=sorted(DISCLOSURE_FORMATS), default="text")


def _disclosures_target(args: argparse.Namespace) -> str:
    which = "".join(f" {name} {value}" for name, value in
                    (("clinic", args.clinic), ("workflow", args.workflow)) if value)
    return (f"disclosures {args.start.isoformat()}..{args.end.isoformat()}{which} "
            f"as {args.format}")


async def _disclosures(
    store: AuditStore, args: argparse.Namespace, out: TextIO, _settings: Settings
) -> int:
    disclosures = await store.disclosures(
        workflow_id=args.workflow, start=args.start, end=args.end, clinic_id=args.clinic)
    DISCLOSURE_FORMATS[args.format](disclosures, out)
    return EXIT_OK


def _disclosures_problem(args: argparse.Namespace) -> str | None:
    return "--to must be after --from" if args.end <= args.start else None


# --- notes ----------------------------------------------------------------------------


def _add_notes_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workflow", metavar="ID", required=True, help="the follow-up")


def _notes_target(args: argparse.Namespace) -> str:
    return f"staff notes of workflow {args.workflow}"


async def _notes(
    store: AuditStore, args: argparse.Namespace, out: TextIO, settings: Settings
) -> int:
    try:
        codec = EncryptionCodec(settings.encryption_keys)
        notes = [(note, codec.open(note.sealed_text).decode())
                 for note in await store.notes(args.workflow)]
    except (EncryptionKeyError, PayloadDecryptionError) as err:
        _complain(str(err))
        return EXIT_UNUSABLE
    for note, text in notes:
        out.write(json.dumps({"workflow_id": note.workflow_id, "audit_seq": note.audit_seq,
                              "kind": note.kind, "staff_id": note.staff_id, "text": text,
                              "recorded_at": note.recorded_at.isoformat()},
                             ensure_ascii=False) + "\n")
    return EXIT_OK


# --- replay -----------------------------------------------------------------------------

REPLAYED_WORKFLOWS: tuple[type, ...] = (DepartureFollowUp, CaringContacts)
"""Today's workflow code, which every replayed history must still fit."""


def _add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--workflow", metavar="ID", help="fetch the history from Temporal")
    which.add_argument(
        "--history",
        metavar="FILE",
        type=Path,
        help="a history written by `temporal workflow show --output json`",
    )


def _replay_target(args: argparse.Namespace) -> str:
    return f"history file {args.history}" if args.history else f"workflow {args.workflow}"


async def _replay(
    store: AuditStore, args: argparse.Namespace, out: TextIO, settings: Settings
) -> int:
    try:
        converter = data_converter(settings)
        history = (
            read_history_file(args.history)
            if args.history
            else await fetch_history(await connect(settings), args.workflow)
        )
    except (EncryptionKeyError, HistoryFileError) as err:
        _complain(str(err))
        return EXIT_UNUSABLE
    except (TemporalConfigError, TemporalUnreachable) as err:
        _complain(str(err))
        return EXIT_UNUSABLE
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise
        _complain(
            f"Temporal has no history for {args.workflow}: past the namespace's retention "
            "period, replay an exported history with --history"
        )
        return EXIT_FINDINGS
    missing = encryption_key_ids(history) - settings.encryption_keys.keys()
    if missing:
        _complain(
            f"the history was encrypted with key {', '.join(sorted(missing))}, which is not "
            "configured: add it to AFTERCARE_ENCRYPTION_KEYS (after the current key)"
        )
        return EXIT_UNUSABLE
    stored = await store.entries(history.workflow_id)
    report = await replay_and_compare(history, stored, converter, REPLAYED_WORKFLOWS)
    for discrepancy in report.discrepancies:
        out.write(f"{report.workflow_id}: {discrepancy}\n")
    if report.verified and report.unfinished:
        out.write(
            f"{report.workflow_id}: verified so far ({report.unfinished}): "
            f"{report.replayed_entries} entries replayed, the stored chain matching them as "
            f"far as it goes; {report.backlog} in the backlog (sealed in the history, not yet "
            "stored)\n"
        )
    elif report.verified:
        out.write(
            f"{report.workflow_id}: verified ({report.replayed_entries} entries replayed, "
            "matching the stored chain)\n"
        )
    return EXIT_OK if report.verified else EXIT_FINDINGS


COMMANDS: tuple[Command, ...] = (
    Command(
        "export",
        "write a follow-up's or a period's trail as JSON lines, CSV or a FHIR R4 Bundle",
        _add_export_arguments,
        _export_target,
        _export,
        _export_problem,
    ),
    Command(
        "verify",
        "check hash chains and their signed checkpoints: an edited, missing, reordered, "
        "truncated or re-sealed chain, or a missing close (exit 1 if any)",
        _add_verify_arguments,
        _verify_target,
        _verify,
    ),
    Command(
        "disclosures",
        "account for the notices given to emergency contacts in a period: to whom (role), "
        "when, why, on what basis (HIPAA 164.528)",
        _add_disclosures_arguments,
        _disclosures_target,
        _disclosures,
        _disclosures_problem,
    ),
    Command(
        "notes",
        "read a follow-up's staff free text (cancel reasons, resolution notes), decrypted: "
        "needs AFTERCARE_ENCRYPTION_KEYS",
        _add_notes_arguments,
        _notes_target,
        _notes,
    ),
    Command(
        "replay",
        "replay a Temporal history against today's code and check it against the stored "
        "chain (exit 1 on any discrepancy)",
        _add_replay_arguments,
        _replay_target,
        _replay,
    ),
)

# --- the program --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aftercare-auditor",
        description="Export, verify and replay Aftercare audit trails.",
    )
    parser.add_argument(
        "--database-url",
        help="audit database (default: AFTERCARE_AUDIT_DATABASE_URL or its default)",
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_arguments(subcommands.add_parser(command.name, help=command.help))
    return parser


async def run(
    argv: Sequence[str] | None = None,
    out: TextIO | None = None,
    settings: Settings | None = None,
) -> int:
    """The CLI without the event loop, for callers that already run one."""
    out = out or sys.stdout
    settings = settings or get_settings()
    parser = build_parser()
    args = parser.parse_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    problem = command.problem_with(args)
    if problem is not None:
        parser.error(f"{command.name}: {problem}")
    url = args.database_url or settings.audit_database_url
    try:
        store = await AuditStore.open(url)
    except Exception as err:  # noqa: BLE001 - any failure to open is reported the same way
        shown = make_url(url).render_as_string(hide_password=True)
        _complain(f"cannot open the audit database {shown}: {type(err).__name__}")
        return EXIT_UNUSABLE
    try:
        await store.record_access(
            actor=await store.connected_identity(),
            action=command.name,
            target=command.describe_target(args),
            at=datetime.now(UTC),
        )
        return await command.run(store, args, out, settings)
    finally:
        await store.close()


def _complain(problem: str) -> None:
    print(f"aftercare-auditor: {problem}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        code = asyncio.run(run(argv))
    except BrokenPipeError:
        # The reader stopped early (`export ... | head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    exit_without_finalizing(code)


if __name__ == "__main__":
    main()
