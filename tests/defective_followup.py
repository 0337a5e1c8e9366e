"""Today's follow-up with a bug in its own send code, under the same workflow name: what
``tests/test_send_defects.py`` runs to show a defect never stalls the protocol. Its own module
because the sandbox re-imports a workflow's module."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

from workflows.followup import DepartureFollowUp
from workflows.models import Channel, Delivery, FollowUpInput, FollowUpOutcome, LinkAction
from workflows.outbox import Outbox

BUG = "no sender configured for texts to staff"


class TextsToStaffBreak(Outbox):
    """Composing a text to a staff member raises in the workflow, before any provider is
    called: an ordinary bug (a lookup that misses) on one channel of the send path. Email,
    and texts to the client and the emergency contact, are untouched."""

    async def deliver(
        self, kind: str, recipient: str, channel: Channel, to: str, body: str,
        subject: str | None, links: list[LinkAction], deadline: datetime,
    ) -> Delivery | None:
        if channel is Channel.SMS and recipient.startswith("staff:"):
            raise LookupError(BUG)
        return await super().deliver(kind, recipient, channel, to, body, subject, links,
                                     deadline)


@workflow.defn(name="DepartureFollowUp")
class FollowUpWithASendDefect(DepartureFollowUp):
    outbox_type = TextsToStaffBreak

    @workflow.run
    async def run(self, input: FollowUpInput) -> FollowUpOutcome:
        return await super().run(input)
