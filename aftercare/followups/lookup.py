"""Finding a follow-up from an SMS: by the sender's keyed-hash contact key, or by the code
in a staff page. Both are search attributes, so no phone number is stored in Temporal.
And reading a follow-up's start input (its departure event), decrypted."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from temporalio.client import Client

from aftercare.followups.errors import FollowUpNotFound
from aftercare.temporal.search_attributes import CONTACT_KEY
from workflows.followup import ACK_CODE
from workflows.models import CARING_CONTACTS_SUFFIX, CaringContactsInput, FollowUpInput

_OPEN = "ExecutionStatus = 'Running'"
# A run that continued as new is not an end: the follow-up goes on in its next run.
_CLOSED = "ExecutionStatus != 'Running' AND ExecutionStatus != 'ContinuedAsNew'"


def contact_key(secret: str, phone: str) -> str:
    """A keyed hash of a phone number: finds a follow-up by sender without storing the number."""
    return hmac.new(secret.encode(), phone.encode(), hashlib.sha256).hexdigest()[:32]


async def open_followups_newest_first(client: Client, query: str) -> list[str]:
    found = [(wf.start_time, wf.id) async for wf in client.list_workflows(query, limit=20)]
    return [workflow_id for _, workflow_id in sorted(found, reverse=True)]


async def open_followup_of_sender(client: Client, lookup_secret: str, phone: str) -> str | None:
    """The newest open follow-up for the client texting from ``phone``."""
    # contact_key is hex: nothing from the sender reaches the query text.
    key = contact_key(lookup_secret, phone)
    found = await open_followups_newest_first(client, f"{CONTACT_KEY.name} = '{key}' AND {_OPEN}")
    return found[0] if found else None


async def closed_followup_of_sender(
    client: Client, lookup_secret: str, phone: str, closed_since: datetime
) -> str | None:
    """The follow-up for the client texting from ``phone`` that closed last, if it closed
    after ``closed_since`` (the late-text retention): the clinic that last followed them."""
    key = contact_key(lookup_secret, phone)
    since = closed_since.astimezone(UTC).isoformat().replace("+00:00", "Z")
    query = f"{CONTACT_KEY.name} = '{key}' AND {_CLOSED} AND CloseTime > '{since}'"
    found = [(wf.close_time, wf.id) async for wf in client.list_workflows(query, limit=20)
             if wf.close_time is not None]
    return max(found)[1] if found else None


async def followup_input(
    client: Client, workflow_id: str
) -> FollowUpInput | CaringContactsInput:
    """The start input (the departure event and policy) of a follow-up, or of the Caring
    Contacts series that followed one, decrypted."""
    handle = client.get_workflow_handle(workflow_id)
    kind = (CaringContactsInput if workflow_id.endswith(CARING_CONTACTS_SUFFIX)
            else FollowUpInput)
    async for event in handle.fetch_history_events():
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        (started,) = await client.data_converter.decode(payloads, [kind])
        return started
    raise FollowUpNotFound(f"no follow-up with id {workflow_id}")


async def open_escalations_with_code(client: Client, code: str) -> list[str]:
    """Follow-ups whose open escalation carries this code (``code`` is digits only)."""
    if not code.isdigit():
        return []
    return await open_followups_newest_first(client, f"{ACK_CODE.name} = '{code}' AND {_OPEN}")
