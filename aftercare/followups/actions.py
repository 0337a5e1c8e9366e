"""Acting on a follow-up that exists: pass it a client's reply, and the staff's actions on
it (acknowledge, resolve, cancel, stop its Caring Contacts series), which the workflow may
refuse.

Each names what went wrong with the errors in ``aftercare.followups.errors``: a follow-up
that is not there, or closed, or that refused the action.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from aftercare.followups.errors import ActionRefused, FollowUpNotFound
from aftercare.followups.priority import put_first
from workflows.caring import CaringContacts
from workflows.followup import DepartureFollowUp
from workflows.models import (
    CARING_CONTACTS_SUFFIX,
    Acknowledge,
    ActionResult,
    Cancel,
    ClientReply,
    Resolve,
    caring_contacts_id,
)
from workflows.replies import may_page


def followup(client: Client, workflow_id: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle_for(DepartureFollowUp.run, workflow_id)


async def send_reply(client: Client, workflow_id: str, reply: ClientReply) -> None:
    """Signal the reply; one that may page someone first puts the follow-up ahead of
    routine work, so the task it makes is not queued behind a storm of check-ins."""
    if may_page(reply.text):
        await put_first(client, workflow_id)
    try:
        await followup(client, workflow_id).signal(DepartureFollowUp.client_reply, reply)
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise FollowUpNotFound(f"no open follow-up with id {workflow_id}") from None
        raise


async def _staff_action(client: Client, workflow_id: str, update: Any, arg: Any) -> ActionResult:
    """Staff wait for the answer (a text back, a page): the follow-up goes first, so a storm
    of check-ins does not hold it past the webhook's patience."""
    await put_first(client, workflow_id)
    try:
        return await followup(client, workflow_id).execute_update(update, arg)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise ActionRefused(getattr(cause, "message", None) or str(cause)) from None
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            await _refuse_if_closed(client, workflow_id)
            raise FollowUpNotFound(f"no follow-up with id {workflow_id}") from None
        raise


async def _refuse_if_closed(client: Client, workflow_id: str) -> None:
    """A closed follow-up answers "closed" to staff, not "not found"."""
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return
    raise ActionRefused("this follow-up is closed")


async def acknowledge(client: Client, workflow_id: str, ack: Acknowledge) -> ActionResult:
    return await _staff_action(client, workflow_id, DepartureFollowUp.acknowledge, ack)


async def resolve(client: Client, workflow_id: str, resolution: Resolve) -> ActionResult:
    return await _staff_action(client, workflow_id, DepartureFollowUp.resolve, resolution)


async def cancel(client: Client, workflow_id: str, cancellation: Cancel) -> ActionResult:
    return await _staff_action(client, workflow_id, DepartureFollowUp.cancel, cancellation)


def series_of(workflow_id: str) -> str:
    """The Caring Contacts series of a follow-up, named by the follow-up's id or its own."""
    return (workflow_id if workflow_id.endswith(CARING_CONTACTS_SUFFIX)
            else caring_contacts_id(workflow_id))


async def stop_caring_contacts(
    client: Client, workflow_id: str, stop: Cancel
) -> ActionResult:
    """Staff stop the series that followed ``workflow_id`` (or the series ``workflow_id``)."""
    return await _staff_action(client, series_of(workflow_id), CaringContacts.stop, stop)
