"""Reading a follow-up as people see it: the view its workflow stores in the audit store
with each batch of its trail, never its workflow code.

The board, the escalation page, ``GET /v1/followups/{id}``, ``starter.py status`` and the
SMS webhook's staff lookups all read here, so they answer with every worker down (and the
board with Temporal down too). A view is one activity round trip behind its workflow once
the step's sends are settled (at most 30 s while they are in flight), and during an
audit-store outage as old as the outage: ``updated_at`` says how old it is.
"""

from __future__ import annotations

from datetime import datetime

from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from aftercare.followups.errors import FollowUpNotFound
from aftercare.temporal.codec import EncryptionCodec
from aftercare.temporal.search_attributes import CLINIC
from aftercare.trail.store import AuditStore, StoredView
from workflows.followup import ACK_CODE
from workflows.models import (
    CARING_CONTACTS_SUFFIX,
    FollowUpStatus,
    FollowUpView,
    RiskLevel,
    caring_contacts_id,
)

RISK_RANK = {RiskLevel.IMMINENT: 0, RiskLevel.HIGH: 1, RiskLevel.MODERATE: 2, RiskLevel.LOW: 3}


async def read_view(
    store: AuditStore, workflow_id: str, *, clinic_id: str | None = None
) -> FollowUpView:
    """The follow-up's stored view; ``clinic_id`` set, only when it is that clinic's."""
    return (await _stored(store, workflow_id, clinic_id)).view


async def read_status(
    store: AuditStore, codec: EncryptionCodec, workflow_id: str, *, clinic_id: str | None = None
) -> FollowUpStatus:
    """The stored view with the stored trail and the client's reply for review, unsealed:
    for callers already authorised to read the follow-up. A follow-up that a Caring Contacts
    series followed shows the series as the series last stored it."""
    stored = await _stored(store, workflow_id, clinic_id)
    reply = stored.sealed_reply and codec.open(stored.sealed_reply).decode()
    update: dict[str, object] = {"reply_for_review": reply}
    if not workflow_id.endswith(CARING_CONTACTS_SUFFIX):
        series = await store.view(caring_contacts_id(workflow_id))
        if series is not None and series.view.caring_contacts is not None:
            update["caring_contacts"] = series.view.caring_contacts
    return await with_trail(store, stored.view.model_copy(update=update))


async def with_trail(store: AuditStore, view: FollowUpView) -> FollowUpStatus:
    """A view (stored, or the one a staff action returned) with the trail stored so far."""
    trail = await store.entries(view.workflow_id)
    fields = {name: getattr(view, name) for name in FollowUpView.model_fields}
    return FollowUpStatus(**fields, trail=trail,
                          audit_backlog=max(0, view.trail_length - len(trail)))


async def open_followups(store: AuditStore, clinic_id: str) -> list[FollowUpView]:
    """The clinic's open follow-ups, most urgent first: one query, sorted here."""
    return sorted((s.view for s in await store.open_views(clinic_id)), key=urgency)


async def closed_followups(
    store: AuditStore, clinic_id: str, since: datetime
) -> list[FollowUpView]:
    """The clinic's follow-ups closed since ``since``, newest first."""
    return [s.view for s in await store.closed_views(clinic_id, since)]


def urgency(view: FollowUpView) -> tuple[int, int, float]:
    """An escalation nobody has taken first, then one being handled, then by risk, then by
    the nearest deadline."""
    esc = view.escalation
    waiting_for_staff = esc is not None and esc.resolved_by is None
    untaken = waiting_for_staff and esc.acknowledged_by is None
    rank = 0 if untaken else 1 if waiting_for_staff else 2
    deadline = view.next_deadline.timestamp() if view.next_deadline else float("inf")
    return rank, RISK_RANK[view.risk_level], deadline


async def _stored(store: AuditStore, workflow_id: str, clinic_id: str | None) -> StoredView:
    stored = await store.view(workflow_id)
    if stored is None or clinic_id not in (None, stored.view.clinic_id):
        raise FollowUpNotFound(f"no follow-up with id {workflow_id}")
    return stored


async def being_set_up(client: Client, workflow_id: str, clinic_id: str | None = None) -> bool:
    """For a follow-up with no stored view: Temporal runs it (for this clinic), and its first
    view is on its way."""
    found = await _running(client, workflow_id)
    # Follow-ups started before AftercareClinic existed carry none: their id says whose.
    owner = found and found.typed_search_attributes.get(CLINIC)
    return found is not None and (clinic_id is None or owner in (None, clinic_id))


async def escalation_starting(client: Client, workflow_id: str, code: str) -> bool:
    """For a stored view without this escalation: the follow-up has started it (its page
    went out) and the view saying so is on its way."""
    found = await _running(client, workflow_id)
    return found is not None and found.typed_search_attributes.get(ACK_CODE) == code


async def _running(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    """The follow-up as Temporal describes it, while it runs. ``describe()`` runs no
    workflow code: it answers with every worker down."""
    try:
        found = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return None
        raise
    return found if found.status is WorkflowExecutionStatus.RUNNING else None
