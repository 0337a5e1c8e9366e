"""Which follow-ups go first when work backs up on the task queue.

A thousand check-ins falling due in one second (as quiet hours end) queue a thousand
workflow tasks, and a crisis text arriving then used to wait behind all of them before the
follow-up could page anyone. Temporal dispatches a backlog by priority, 1 first (the
default is 3), on the worker's own queue too. So a follow-up started at imminent risk, and
one a client has just texted anything that may page someone, are put first: their workflow
tasks go ahead of routine ones. What a safety escalation sends is first in any follow-up
(``workflows.outbox.SAFETY_PRIORITY``). A server that predates priority ignores it.
"""

from __future__ import annotations

from datetime import timedelta

from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.common.v1 import Priority as PriorityMessage
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflow.v1 import WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import UpdateWorkflowExecutionOptionsRequest
from temporalio.client import Client
from temporalio.common import Priority
from temporalio.service import RPCError, RPCStatusCode

from aftercare.logs import get_logger
from workflows.models import DepartureEvent, RiskLevel

FIRST = Priority(priority_key=1)
# The text goes on to the follow-up whatever this answers; a server this slow to answer
# would be as slow to take the text.
PUT_FIRST_TIMEOUT = timedelta(seconds=2)

log = get_logger(__name__)


def priority_at_start(event: DepartureEvent) -> Priority:
    """Imminent risk pages in the follow-up's first task: it goes first."""
    return FIRST if event.risk_level is RiskLevel.IMMINENT else Priority.default


async def put_first(client: Client, workflow_id: str) -> None:
    """From now on the follow-up's tasks go ahead of routine work, the one the text about
    to be signalled makes included. Best effort: a refusal is logged, and the text still goes
    in."""
    request = UpdateWorkflowExecutionOptionsRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=workflow_id),
        workflow_execution_options=WorkflowExecutionOptions(
            priority=PriorityMessage(priority_key=FIRST.priority_key)),
        update_mask=FieldMask(paths=["priority"]),
    )
    try:
        await client.workflow_service.update_workflow_execution_options(
            request, timeout=PUT_FIRST_TIMEOUT)
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:  # closed: the text goes elsewhere
            log.warning("follow-up not put first", status=err.status.name)
