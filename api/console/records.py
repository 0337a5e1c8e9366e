"""What the console reads from Temporal: a clinic's follow-ups from visibility, a
follow-up's state from its query, and the client's contact details from its start input.

Contact details exist only in the follow-up's input, which Temporal stores encrypted; they
are decrypted here, in the API process, with the service's own data converter, rendered
into one page and never written anywhere else.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.client import Client, WorkflowExecutionStatus

from aftercare.followups import actions
from aftercare.followups.errors import FollowUpNotFound
from workflows.models import FollowUpInput, FollowUpStatus, RiskLevel

BOARD_LIMIT = 200
STATUS_TIMEOUT_SECONDS = 5.0
CLOSED_WINDOW = timedelta(days=7)
RISK_RANK = {RiskLevel.IMMINENT: 0, RiskLevel.HIGH: 1, RiskLevel.MODERATE: 2, RiskLevel.LOW: 3}


@dataclass(frozen=True)
class ClosedFollowUp:
    workflow_id: str
    closed_at: datetime | None
    status: str


async def followup_input(client: Client, workflow_id: str) -> FollowUpInput:
    """The follow-up's start input (the departure event and policy), decrypted."""
    handle = client.get_workflow_handle(workflow_id)
    async for event in handle.fetch_history_events():
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        (started,) = await client.data_converter.decode(payloads, [FollowUpInput])
        return started
    raise FollowUpNotFound(f"no follow-up with id {workflow_id}")


def _clinic_filter(clinic_id: str) -> str:
    if "'" in clinic_id or "\\" in clinic_id:
        raise ValueError("clinic ids are opaque identifiers without quotes")
    return f"AftercareClinic = '{clinic_id}'"


async def open_followups(client: Client, clinic_id: str) -> tuple[list[FollowUpStatus], list[str]]:
    """The clinic's running follow-ups, most urgent first (an escalation nobody has taken,
    then by risk, then by the nearest deadline), and the ids of those whose state did not
    come back in time: a board must not hide a follow-up because its worker is slow."""
    query = f"{_clinic_filter(clinic_id)} AND ExecutionStatus = 'Running'"
    ids = [wf.id async for wf in client.list_workflows(query, limit=BOARD_LIMIT)]
    found = await asyncio.gather(
        *(asyncio.wait_for(actions.get_status(client, i), STATUS_TIMEOUT_SECONDS) for i in ids),
        return_exceptions=True)
    statuses = [s for s in found if isinstance(s, FollowUpStatus) and s.clinic_id == clinic_id]
    unanswered = [i for i, s in zip(ids, found, strict=True) if isinstance(s, BaseException)]
    return sorted(statuses, key=urgency), unanswered


def urgency(status: FollowUpStatus) -> tuple[int, int, float]:
    esc = status.escalation
    waiting_for_staff = esc is not None and esc.resolved_by is None
    untaken = waiting_for_staff and esc.acknowledged_by is None
    rank = 0 if untaken else 1 if waiting_for_staff else 2
    deadline = status.next_deadline.timestamp() if status.next_deadline else float("inf")
    return rank, RISK_RANK[status.risk_level], deadline


async def closed_followups(client: Client, clinic_id: str, now: datetime) -> list[ClosedFollowUp]:
    since = (now - CLOSED_WINDOW).isoformat()
    query = (f"{_clinic_filter(clinic_id)} AND ExecutionStatus != 'Running' "
             f"AND CloseTime > '{since}'")
    closed = [
        ClosedFollowUp(workflow_id=wf.id, closed_at=wf.close_time,
                       status=(wf.status or WorkflowExecutionStatus.COMPLETED).name.lower())
        async for wf in client.list_workflows(query, limit=BOARD_LIMIT)
    ]
    return sorted(closed, key=lambda c: c.closed_at or now, reverse=True)
