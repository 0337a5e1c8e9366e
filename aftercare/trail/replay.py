"""Replays a follow-up's Temporal history against today's workflow code and checks the trail
the replay rebuilds against the chain in the audit store.

The trail is not read from the history's recorded result: the workflow is re-executed by
Temporal's ``Replayer`` and the outcome its code returns this time is what is compared. So
"verified" means today's code, fed the recorded inputs, takes the very steps that were stored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import (
    ContinueAsNewInput,
    ExecuteWorkflowInput,
    Interceptor,
    Replayer,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from aftercare.temporal.codec import KEY_ID_METADATA
from aftercare.trail.verification import first_broken_link
from workflows.models import AuditEntry, FollowUpInput, FollowUpOutcome
from workflows.sandbox import workflow_runner

_KEEP_TRAIL = "aftercare_keep_replayed_trail"


class HistoryFileError(ValueError):
    """A history file that is unreadable or not one ``temporal workflow show`` wrote."""


def read_history_file(path: Path) -> WorkflowHistory:
    """A history exported with ``temporal workflow show --output json`` (or the Web UI)."""
    try:
        document = json.loads(path.read_text())
        history = WorkflowHistory.from_json("", document)
    except OSError as err:
        raise HistoryFileError(f"cannot read {path}: {err.strerror}") from None
    except (ValueError, TypeError, KeyError):
        raise HistoryFileError(f"{path} is not a Temporal history in JSON") from None
    if not history.events or not history.events[0].HasField(
        "workflow_execution_started_event_attributes"
    ):
        raise HistoryFileError(f"{path} does not start with the workflow's start event")
    workflow_id = history.events[0].workflow_execution_started_event_attributes.workflow_id
    if not workflow_id:
        raise HistoryFileError(f"{path} does not name its workflow id in the start event")
    return WorkflowHistory(workflow_id, history.events)


async def fetch_history(client: Client, workflow_id: str) -> WorkflowHistory:
    """The latest run's history, as the server keeps it (encrypted payloads and all)."""
    return await client.get_workflow_handle(workflow_id).fetch_history()


def encryption_key_ids(history: WorkflowHistory) -> set[str]:
    """The ids of the keys that sealed the history's payloads: all must be configured to
    replay it (a missing one fails the replay with no better reason than a task failure)."""
    found: set[str] = set()
    for event in history.events:
        _collect_key_ids(event, found)
    return found


def _collect_key_ids(message: Message, found: set[str]) -> None:
    if isinstance(message, Payload):
        if key_id := message.metadata.get(KEY_ID_METADATA):
            found.add(key_id.decode())
        return
    for descriptor, value in message.ListFields():
        if descriptor.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if isinstance(value, Message):
            children = [value]
        elif descriptor.message_type.GetOptions().map_entry:
            children = [child for child in value.values() if isinstance(child, Message)]
        else:
            children = value
        for child in children:
            _collect_key_ids(child, found)


@dataclass
class ReplayReport:
    workflow_id: str
    replayed_entries: int = 0
    discrepancies: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.discrepancies


async def replay_and_compare(
    history: WorkflowHistory,
    stored: Sequence[AuditEntry],
    converter: DataConverter,
    workflows: Sequence[type],
) -> ReplayReport:
    """Replay ``history`` against ``workflows`` (today's code) with the worker's converter and
    compare the rebuilt trail with ``stored``, the follow-up's stored entries in chain order."""
    report = ReplayReport(history.workflow_id)
    if not stored:
        report.discrepancies.append("no audit trail stored for this follow-up")
    elif (found := first_broken_link(stored)) is not None:
        report.discrepancies.append(f"stored chain broken at entry {found[0]}: {found[1]}")

    trails: list[list[AuditEntry]] = []
    replayer = Replayer(
        workflows=list(workflows),
        workflow_runner=workflow_runner(),
        data_converter=converter,
        interceptors=[_OutcomeKeeper(trails.append)],
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is not None:
        report.discrepancies.append(_describe_failure(result.replay_failure))
        return report
    if not trails:
        report.discrepancies.append(
            "the history does not end with the follow-up closing or handing on to a new run: "
            "no trail to compare"
        )
        return report

    replayed = trails[0]
    report.replayed_entries = len(replayed)
    if stored and replayed:
        # A run that handed on to a new one holds the trail up to then; later runs store more.
        kept = [entry for entry in stored if entry.seq <= replayed[-1].seq]
        report.discrepancies.extend(compare_trails(replayed, kept))
    return report


def compare_trails(replayed: Sequence[AuditEntry], stored: Sequence[AuditEntry]) -> list[str]:
    """Entry by entry: what the store lacks, what it has beyond the history, what differs."""
    stored_by_seq = {entry.seq: entry for entry in stored}
    problems: list[str] = []
    for entry in replayed:
        kept = stored_by_seq.pop(entry.seq, None)
        if kept is None:
            problems.append(f"entry {entry.seq} ({entry.step}) is in the history but not stored")
        elif kept != entry:
            fields = _differing_fields(entry, kept)
            verb = "differs" if len(fields) == 1 else "differ"
            problems.append(
                f"entry {entry.seq} ({entry.step}) was altered: stored {', '.join(fields)} "
                f"{verb} from the history"
            )
    for extra in sorted(stored_by_seq.values(), key=lambda e: e.seq):
        problems.append(f"stored entry {extra.seq} ({extra.step}) is not in the history")
    return problems


def _differing_fields(replayed: AuditEntry, stored: AuditEntry) -> list[str]:
    ours, theirs = replayed.model_dump(), stored.model_dump()
    return [name for name in ours if ours[name] != theirs[name]]


def _describe_failure(failure: Exception) -> str:
    if isinstance(failure, workflow.NondeterminismError):
        return f"nondeterminism: today's workflow code does not match the history: {failure}"
    # Anything else may quote the workflow's input (a validation error names the values),
    # and the input is client data: name the kind of failure only.
    return (
        f"replay failed: the workflow code raised {type(failure).__name__} while replaying "
        "(details withheld: they may quote client data)"
    )


class _OutcomeKeeper(Interceptor):
    """Hands the trail each replayed run ends with (its outcome's, or the one it carries over
    to its next run) out of the sandbox, through an extern function (the sandbox's
    sanctioned way out)."""

    def __init__(self, keep: Any) -> None:
        self._keep = keep

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        input.unsafe_extern_functions[_KEEP_TRAIL] = self._keep
        return _ReturnedTrail


class _ReturnedTrail(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_CarriedTrail(outbound))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        outcome: FollowUpOutcome = await super().execute_workflow(input)
        workflow.extern_functions()[_KEEP_TRAIL](outcome.trail)
        return outcome


class _CarriedTrail(WorkflowOutboundInterceptor):
    def continue_as_new(self, input: ContinueAsNewInput) -> NoReturn:
        carried: FollowUpInput = input.args[0]
        if carried.carried_over is not None:
            workflow.extern_functions()[_KEEP_TRAIL](carried.carried_over.trail)
        super().continue_as_new(input)
