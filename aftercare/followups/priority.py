"""Which follow-ups go first when work backs up on the task queue, or a worker dies.

A thousand check-ins falling due in one second (as quiet hours end) queue a thousand
workflow tasks, and a crisis text arriving then used to wait behind all of them before the
follow-up could page anyone. Temporal dispatches a backlog by priority, 1 first (the
default is 3), on the worker's own queue too. So a follow-up started at imminent risk, and
one a client has just texted anything that may page someone, are put first: their workflow
tasks go ahead of routine ones. What a safety escalation sends is first in any follow-up
(``workflows.outbox.SAFETY_PRIORITY``). A server that predates priority ignores it.

A follow-up's next task also goes to the worker that ran its last one, on that worker's own
(sticky) queue. If that worker has just died, the task waits there until the sticky-queue
timeout hands it to the shared queue: 10 s before anyone is paged. So the same texts, and
staff actions, first free the follow-up from that queue: their task goes to the shared
queue, where any live worker takes it at once (and replays the follow-up if it does not
hold it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.common.v1 import Priority as PriorityMessage
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflow.v1 import WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import (
    ResetStickyTaskQueueRequest,
    UpdateWorkflowExecutionOptionsRequest,
)
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
    """From now on the follow-up's tasks go ahead of routine work, and its next one, which
    the text or action about to be passed on makes, goes to any live worker. Best effort: a
    refusal is logged, and the text still goes in."""
    request = UpdateWorkflowExecutionOptionsRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=workflow_id),
        workflow_execution_options=WorkflowExecutionOptions(
            priority=PriorityMessage(priority_key=FIRST.priority_key)),
        update_mask=FieldMask(paths=["priority"]),
    )
    await asyncio.gather(
        _best_effort("put first", client.workflow_service.update_workflow_execution_options(
            request, timeout=PUT_FIRST_TIMEOUT)),
        to_any_worker(client, workflow_id))


async def to_any_worker(client: Client, workflow_id: str) -> None:
    """The follow-up's next task goes to the shared queue, which every live worker polls,
    rather than to the queue of the worker that ran its last one, which may have just died.
    Best effort, as ``put_first``."""
    request = ResetStickyTaskQueueRequest(
        namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id))
    await _best_effort("freed from its worker's queue",
                       client.workflow_service.reset_sticky_task_queue(
                           request, timeout=PUT_FIRST_TIMEOUT))


async def _best_effort(what: str, call: Awaitable[object]) -> None:
    try:
        await call
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:  # closed: the text goes elsewhere
            log.warning(f"follow-up not {what}", status=err.status.name)
