"""Starting a session's follow-up from its departure event, once: a repeat of the same event
finds the follow-up it started, a different event for the same session is refused.

An invalid event starts nothing: it is validated before Temporal hears of it.

A text after a follow-up has closed starts (or joins) its late follow-up: one per earlier
follow-up, under the earlier id plus ``-late``, started with the text as its first signal.
A text after the Caring Contacts series that followed it goes to the same late follow-up.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from aftercare.followups.errors import FollowUpNotFound, InvalidInput, SessionConflict
from aftercare.followups.lookup import contact_key, followup_input
from aftercare.followups.priority import FIRST, priority_at_start, put_first
from aftercare.policies import PolicyBook
from aftercare.settings import Settings
from aftercare.temporal.search_attributes import CLINIC, CONTACT_KEY
from aftercare.validation import describe_validation_error
from workflows.followup import DepartureFollowUp
from workflows.models import (
    CARING_CONTACTS_SUFFIX,
    ClientReply,
    DepartureEvent,
    FollowUpInput,
    legacy_followup_workflow_id,
)
from workflows.policy import ClinicPolicy
from workflows.replies import may_page
from workflows.versions import CURRENT

FINGERPRINT_MEMO = "event_fingerprint"
LATE_SUFFIX = "-late"
CLIENT_REPLY_SIGNAL = "client_reply"  # DepartureFollowUp.client_reply


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
    try:
        await client.start_workflow(
            DepartureFollowUp.run,
            FollowUpInput(event=event, policy=policy_for(policies, event), version=CURRENT),
            id=event.workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo={FINGERPRINT_MEMO: fingerprint},
            search_attributes=search_attributes_for(settings, event),
            priority=priority_at_start(event),
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


async def start_late_followup(
    client: Client, settings: Settings, policies: PolicyBook, closed_id: str, reply: ClientReply
) -> str:
    """Hand a client's text to the late follow-up of the closed follow-up ``closed_id``:
    start it with the text as its first signal, or, while it runs, only signal it. A late
    follow-up that has closed itself starts a new run under the same id."""
    earlier_id = closed_id.removesuffix(LATE_SUFFIX).removesuffix(CARING_CONTACTS_SUFFIX)
    event = await departure_of(client, closed_id)
    late_id = earlier_id + LATE_SUFFIX
    urgent = may_page(reply.text)
    if urgent:
        await put_first(client, late_id)  # a late follow-up still running takes the text
    await client.start_workflow(
        DepartureFollowUp.run,
        FollowUpInput(event=event, policy=policy_for(policies, event), late_reply_to=earlier_id,
                      version=CURRENT),
        id=late_id,
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=search_attributes_for(settings, event),
        start_signal=CLIENT_REPLY_SIGNAL,
        start_signal_args=[reply],
        priority=FIRST if urgent else Priority.default,
    )
    return late_id


async def departure_of(client: Client, workflow_id: str) -> DepartureEvent:
    """The departure event a follow-up (or its Caring Contacts series) was started with;
    FollowUpNotFound once Temporal has deleted its history (past the namespace's
    retention). A series carries the event itself: its follow-up's history may be long gone."""
    try:
        return (await followup_input(client, workflow_id)).event
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise FollowUpNotFound(f"no follow-up with id {workflow_id}") from None
        raise


def policy_for(policies: PolicyBook, event: DepartureEvent) -> ClinicPolicy:
    """The clinic's policy as it is now, in the client's language."""
    return policies.for_clinic(event.clinic_id).for_client(event.client.language)


def search_attributes_for(settings: Settings, event: DepartureEvent) -> TypedSearchAttributes:
    """The clinic, and the keyed hash that finds the follow-up from the client's number."""
    pairs: list[SearchAttributePair] = [SearchAttributePair(CLINIC, event.clinic_id)]
    if settings.lookup_secret and event.client.phone:
        key = contact_key(settings.lookup_secret, event.client.phone)
        pairs.append(SearchAttributePair(CONTACT_KEY, [key]))
    return TypedSearchAttributes(pairs)


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
