"""The console's one read of a follow-up's data from Temporal: the client's contact
details, from its start input. Everything else it shows is the follow-up's view in the
audit store (``aftercare.followups.views``).

Contact details exist only in the follow-up's input, which Temporal stores encrypted; they
are decrypted here, in the API process, with the service's own data converter, rendered
into one page and never written anywhere else. Reading them runs no workflow code.
"""

from __future__ import annotations

from temporalio.client import Client

from aftercare.followups.errors import FollowUpNotFound
from workflows.models import FollowUpInput


async def followup_input(client: Client, workflow_id: str) -> FollowUpInput:
    """The follow-up's start input (the departure event and policy), decrypted."""
    handle = client.get_workflow_handle(workflow_id)
    async for event in handle.fetch_history_events():
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        (started,) = await client.data_converter.decode(payloads, [FollowUpInput])
        return started
    raise FollowUpNotFound(f"no follow-up with id {workflow_id}")
