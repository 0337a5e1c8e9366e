"""Today's follow-up with one decision changed, under the same workflow name: what a replay
must refuse. Its own module because the sandbox re-imports a workflow's module."""

from __future__ import annotations

from temporalio import workflow

from workflows.followup import DepartureFollowUp
from workflows.models import FollowUpInput, FollowUpOutcome


@workflow.defn(name="DepartureFollowUp")
class CheckInWithoutDelay(DepartureFollowUp):
    """Checks in at once instead of waiting the policy's delay."""

    @workflow.run
    async def run(self, input: FollowUpInput) -> FollowUpOutcome:
        return await super().run(input)

    async def triage_and_check_in(self) -> None:
        self.outbox.to_client("checkin", links=self.reply_links())
