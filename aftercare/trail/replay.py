"""Replays a follow-up's Temporal history against today's workflow code and checks the trail
the replay rebuilds against the chain in the audit store.

The trail is not read from the history's recorded result: the workflow is re-executed by
Temporal's ``Replayer`` and the outcome its code returns this time is what is compared. So
"verified" means today's code, fed the recorded inputs, takes the very steps that were stored.

A Caring Contacts series replays the same way: its runs carry and return their trails as a
follow-up's do. A follow-up or series still running (listening, escalating, between two
caring messages) has no outcome yet. Its trail so far is
what the replayed code handed to the audit store: the batches it passed to
``append_audit_entries`` and those its sends carried, one per activity the history
scheduled, each also checked against the batch the history recorded. The stored chain
must equal that trail as far as it goes; what the history sealed and the store does not
hold yet is the backlog.
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
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import (
    ContinueAsNewInput,
    ExecuteWorkflowInput,
    Interceptor,
    Replayer,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from aftercare.temporal.codec import KEY_ID_METADATA
from aftercare.trail.verification import first_broken_link
from workflows.models import (
    SEND_ACTIVITIES,
    AuditBatch,
    AuditEntry,
    CaringContactsInput,
    CaringContactsOutcome,
    FollowUpInput,
    FollowUpOutcome,
    OutboundMessage,
)
from workflows.sandbox import workflow_runner

_KEEP_TRAIL = "aftercare_keep_replayed_trail"
_KEEP_BATCH = "aftercare_keep_replayed_batch"
_KEEP_CARRIED = "aftercare_keep_carried_trail"
TRAIL_ACTIVITY = "append_audit_entries"
# How a run ended without closing the follow-up (a closed one returns its trail).
_ENDED_UNCLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: "failed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: "timed out",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: "cancelled",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "terminated",
}


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
    # Set for a history that does not close: "open", or how it ended ("terminated").
    unfinished: str | None = None
    # Entries the history sealed that the store does not hold yet (an unfinished history).
    backlog: int = 0

    @property
    def verified(self) -> bool:
        return not self.discrepancies


@dataclass
class _ReplayedTrail:
    """What the replayed code handed out of the sandbox."""

    final: list[list[AuditEntry]] = field(default_factory=list)  # outcome or carried over
    carried_in: list[AuditEntry] = field(default_factory=list)  # from an earlier run
    batches: list[list[AuditEntry]] = field(default_factory=list)  # to append_audit_entries


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

    replayed = _ReplayedTrail()
    replayer = Replayer(
        workflows=list(workflows),
        workflow_runner=workflow_runner(),
        data_converter=converter,
        interceptors=[_TrailKeeper(replayed)],
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is not None:
        report.discrepancies.append(_describe_failure(result.replay_failure))
        return report
    if replayed.final:
        trail = replayed.final[0]
        report.replayed_entries = len(trail)
        if stored and trail:
            # A run that handed on to a new one holds the trail up to then; later runs store
            # more.
            kept = [entry for entry in stored if entry.seq <= trail[-1].seq]
            report.discrepancies.extend(compare_trails(trail, kept))
        return report
    await _compare_unfinished(history, stored, converter, replayed, report)
    return report


async def _compare_unfinished(
    history: WorkflowHistory, stored: Sequence[AuditEntry], converter: DataConverter,
    replayed: _ReplayedTrail, report: ReplayReport,
) -> None:
    """A history that has not closed: the trail its code sealed so far, against the store."""
    last = history.events[-1].event_type if history.events else None
    report.unfinished = _ENDED_UNCLOSED.get(last, "open")
    recorded = await recorded_batches(history, converter)
    if not recorded and not replayed.carried_in:
        report.discrepancies.append(
            f"the history does not end with the follow-up closing or handing on to a new run, "
            f"and schedules no {TRAIL_ACTIVITY}: no trail to compare")
        return
    # The replay may run one task past the history's end: only batches it scheduled count.
    batches = replayed.batches[:len(recorded)]
    for number, (ours, theirs) in enumerate(zip(batches, recorded, strict=False), start=1):
        if ours != theirs:
            seqs = f" (entries {theirs[0].seq} to {theirs[-1].seq})" if theirs else ""
            report.discrepancies.append(
                f"trail batch {number}{seqs} recorded in the history differs from the one "
                "today's code seals")
    # A batch a send could not store is written again by the next: each entry counts once.
    sealed = {entry.seq: entry for batch in reversed(batches) for entry in batch}
    trail = replayed.carried_in + [sealed[seq] for seq in sorted(sealed)]
    report.replayed_entries = len(trail)
    stored_up_to = max((entry.seq for entry in stored), default=0)
    report.backlog = sum(1 for entry in trail if entry.seq > stored_up_to)
    report.discrepancies.extend(
        compare_trails([entry for entry in trail if entry.seq <= stored_up_to], stored))


async def recorded_batches(
    history: WorkflowHistory, converter: DataConverter
) -> list[list[AuditEntry]]:
    """The trail batches the history scheduled for the audit store, on their own or riding
    a send, decrypted, in order."""
    batches = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        scheduled = event.activity_task_scheduled_event_attributes
        if scheduled.activity_type.name == TRAIL_ACTIVITY:
            [batch] = await converter.decode(scheduled.input.payloads, [AuditBatch])
        elif scheduled.activity_type.name in SEND_ACTIVITIES:
            [message] = await converter.decode(scheduled.input.payloads, [OutboundMessage])
            batch = message.trail
        else:
            continue
        if batch is not None:
            batches.append(batch.entries)
    return batches


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


class _TrailKeeper(Interceptor):
    """Hands out of the sandbox, through extern functions (the sandbox's sanctioned way
    out): the trail each replayed run ends with (its outcome's, or the one it carries over to
    its next run), the trail it was started with, and each batch it sends to the store."""

    def __init__(self, replayed: _ReplayedTrail) -> None:
        self._replayed = replayed

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        input.unsafe_extern_functions[_KEEP_TRAIL] = self._replayed.final.append
        input.unsafe_extern_functions[_KEEP_CARRIED] = self._replayed.carried_in.extend
        input.unsafe_extern_functions[_KEEP_BATCH] = self._replayed.batches.append
        return _ReturnedTrail


class _ReturnedTrail(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_SentTrail(outbound))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        # A follow-up and a Caring Contacts series carry and return their trails alike.
        started: FollowUpInput | CaringContactsInput = input.args[0]
        if started.carried_over is not None:
            workflow.extern_functions()[_KEEP_CARRIED](list(started.carried_over.trail))
        outcome: FollowUpOutcome | CaringContactsOutcome = await super().execute_workflow(input)
        workflow.extern_functions()[_KEEP_TRAIL](outcome.trail)
        return outcome


class _SentTrail(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        batch = (input.args[0] if input.activity == TRAIL_ACTIVITY
                 else input.args[0].trail if input.activity in SEND_ACTIVITIES else None)
        if batch is not None:
            workflow.extern_functions()[_KEEP_BATCH](list(batch.entries))
        return super().start_activity(input)

    def continue_as_new(self, input: ContinueAsNewInput) -> NoReturn:
        carried: FollowUpInput | CaringContactsInput = input.args[0]
        if carried.carried_over is not None:
            workflow.extern_functions()[_KEEP_TRAIL](carried.carried_over.trail)
        super().continue_as_new(input)
