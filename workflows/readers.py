"""What a follow-up and its Caring Contacts series give people to read, built the same way
on each one's view: the status query, for operators and tests, and the follow-up as a staff
action left it, returned by the action."""

from __future__ import annotations

from collections.abc import Callable

from temporalio import workflow

from workflows.models import ActionResult, FollowUpStatus, FollowUpView, Phase
from workflows.trail import TrailWriter


class ReadByPeople:
    """Mixed into a workflow that keeps a ``trail`` and says its ``view`` and ``phase``."""

    trail: TrailWriter
    view: Callable[[], FollowUpView]
    phase: Callable[[], Phase]

    @workflow.query
    def status(self) -> FollowUpStatus:
        """For operators and tests: people read the view the audit store keeps."""
        return FollowUpStatus(**self.view().model_dump(), audit_backlog=self.trail.backlog(),
                              trail=self.trail.entries)

    def action_result(self, message: str) -> ActionResult:
        return ActionResult(workflow_id=self.trail.workflow_id, state=self.phase().value,
                            message=message, view=self.view())
