"""The sandbox the follow-up workflow runs in, for workers and replayers alike."""

from __future__ import annotations

from typing import Any

from temporalio.converter import SerializationContext, StorageDriverStoreContext
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker._command_aware_visitor import CommandInfo
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.worker.workflow_sandbox._runner import _Instance as SandboxedInstance

# Validators of the shared models use these libraries, which load data lazily (phone
# metadata per region, IDNA tables). Inside the sandbox a lazy load would re-import the
# library and trip over its module-level lock; passing them through keeps one copy.
LAZY_LOADERS = ("phonenumbers", "email_validator", "idna")
# The workflow modules keep no state a run could change (constants, and the registry of
# frozen policies every run shares on purpose, policy.one_copy), so no run needs a fresh
# copy: re-importing the follow-up's module for every run cost a tenth of the worker's CPU,
# and every cached follow-up held its own copy of the module's code (about 100 KB). The calls
# the sandbox would have caught in their code, tests/test_workflow_determinism.py refuses
# for every workflow module, before anything runs.
PASSED_THROUGH = (*LAZY_LOADERS, "workflows")


class _ContextsLookedUpDirectly(SandboxedInstance):
    """A sandboxed run that answers the converter's context lookups without entering the
    sandbox.

    The worker asks for a serialization context for every payload container of every task,
    and for an external-storage context for every command's payloads, and the SDK answers
    each by compiling and ``exec``-ing a snippet under the sandbox's importer: a fifth of a
    replay's CPU, and a sixteenth of the worker's in a storm of check-ins. Each lookup reads
    the run's pending commands and its info, imports nothing and touches nothing the sandbox
    restricts, so calling it directly gives the same context (``tests/test_sandbox.py``
    compares the two)."""

    def get_serialization_context(
        self, command_info: CommandInfo | None,
    ) -> SerializationContext | None:
        return self._in_sandbox().get_serialization_context(command_info)

    def get_external_store_context(
        self, command_info: CommandInfo | None,
    ) -> StorageDriverStoreContext:
        return self._in_sandbox().get_external_store_context(command_info)

    def _in_sandbox(self) -> Any:
        return self.globals_and_locals["__temporal_in_sandbox"]


class AftercareSandboxRunner(SandboxedWorkflowRunner):
    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _ContextsLookedUpDirectly(det, self.runner_class, self.restrictions)


def workflow_runner() -> SandboxedWorkflowRunner:
    return AftercareSandboxRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
    )
