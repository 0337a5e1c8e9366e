"""The follow-up's sandbox answers the converter's context lookups directly
(``workflows/sandbox.py``): each answer, of a serialization context and of an
external-storage context, must be the one the SDK's own lookup, through the sandbox, gives."""

from __future__ import annotations

import uuid

from temporalio.converter import (
    ActivitySerializationContext,
    SerializationContext,
    StorageDriverStoreContext,
    WorkflowSerializationContext,
)
from temporalio.worker import Worker, WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker._command_aware_visitor import CommandInfo
from temporalio.worker.workflow_sandbox._runner import _Instance as SandboxedInstance

from tests import context_probe as probe
from workflows.sandbox import AftercareSandboxRunner, _ContextsLookedUpDirectly, workflow_runner

lookups: list[tuple[object, object]] = []
store_lookups: list[tuple[StorageDriverStoreContext, StorageDriverStoreContext]] = []


class _BothLookups(_ContextsLookedUpDirectly):
    def get_serialization_context(
        self, command_info: CommandInfo | None,
    ) -> SerializationContext | None:
        direct = super().get_serialization_context(command_info)
        lookups.append((direct, SandboxedInstance.get_serialization_context(self, command_info)))
        return direct

    def get_external_store_context(
        self, command_info: CommandInfo | None,
    ) -> StorageDriverStoreContext:
        direct = super().get_external_store_context(command_info)
        store_lookups.append(
            (direct, SandboxedInstance.get_external_store_context(self, command_info)))
        return direct


class _ComparingRunner(AftercareSandboxRunner):
    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _BothLookups(det, self.runner_class, self.restrictions)


async def test_direct_context_lookups_give_what_the_sandboxed_lookup_gives(temporal_env):
    lookups.clear()
    store_lookups.clear()
    runner = _ComparingRunner(restrictions=workflow_runner().restrictions)
    task_queue = f"contexts-{uuid.uuid4()}"
    async with Worker(temporal_env.client, task_queue=task_queue,
                      workflows=[probe.Parent, probe.Child], activities=[probe.echo],
                      workflow_runner=runner):
        result = await temporal_env.client.execute_workflow(
            probe.Parent.run, "hello", id=f"contexts-{uuid.uuid4()}", task_queue=task_queue)

    assert result == "child got hello"
    assert [direct for direct, _ in lookups] == [through for _, through in lookups]
    kinds = {type(direct) for direct, _ in lookups}
    assert {WorkflowSerializationContext, ActivitySerializationContext} <= kinds
    child_ids = {direct.workflow_id for direct, _ in lookups
                 if isinstance(direct, WorkflowSerializationContext)}
    assert any(workflow_id.endswith("-child") for workflow_id in child_ids)
    assert store_lookups
    assert [direct for direct, _ in store_lookups] == [through for _, through in store_lookups]
    targets = {direct.target.id for direct, _ in store_lookups if direct.target is not None}
    assert any(target.endswith("-child") for target in targets)
