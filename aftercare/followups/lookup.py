"""Finding a follow-up from an SMS: by the sender's keyed-hash contact key, or by the code
in a staff page. Both are search attributes, so no phone number is stored in Temporal."""

from __future__ import annotations

import hashlib
import hmac

from temporalio.client import Client

from aftercare.temporal.search_attributes import CONTACT_KEY
from workflows.followup import ACK_CODE

_OPEN = "ExecutionStatus = 'Running'"


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


async def open_escalations_with_code(client: Client, code: str) -> list[str]:
    """Follow-ups whose open escalation carries this code (``code`` is digits only)."""
    if not code.isdigit():
        return []
    return await open_followups_newest_first(client, f"{ACK_CODE.name} = '{code}' AND {_OPEN}")
