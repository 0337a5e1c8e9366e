"""The sandbox the follow-up workflow runs in, for workers and replayers alike."""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# Validators of the shared models use these libraries, which load data lazily (phone
# metadata per region, IDNA tables). Inside the sandbox a lazy load would re-import the
# library and trip over its module-level lock; passing them through keeps one copy.
PASSED_THROUGH = ("phonenumbers", "email_validator", "idna")


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
    )
