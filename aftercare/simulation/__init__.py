"""``aftercare-policy simulate``: a clinic's policy lived through before a client lives it.

The real follow-up workflow runs on a private time-skipping Temporal server with the real
worker, its sends caught by sinks that only record; a story plays the client and the staff.
The result is the timeline they would live, in the client's local time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from aftercare.policies import PolicyBook
from aftercare.simulation.rehearsal import Rehearsal, StoryStuck
from aftercare.simulation.stage import TemporalBinaryMissing, simulation_stage
from aftercare.simulation.stories import Story
from aftercare.simulation.timeline import Moment, render, timeline
from workflows.policy import ClinicPolicy

__all__ = ["SimulationError", "Simulated", "Story", "simulate", "simulation_policy"]


class SimulationError(ValueError):
    """The simulation cannot run as asked; the message names why."""


@dataclass(frozen=True)
class Simulated:
    policy: ClinicPolicy
    risk: str
    story: Story
    departed_at: datetime
    moments: list[Moment]

    def lines(self) -> list[str]:
        heading = (f"{self.policy.clinic_id} ({self.policy.clinic_name}), {self.risk} risk, "
                   f"story {self.story}: the client left at "
                   f"{self.departed_at:%a %d %b %Y %H:%M:%S} ({self.policy.timezone}); "
                   "times are the client's")
        return render(self.moments, heading)


def simulation_policy(book: PolicyBook, clinic: str) -> ClinicPolicy:
    """The clinic's policy as the simulation runs it: its booking webhook left out, so a
    simulation never calls the clinic's system (no story chooses a slot)."""
    if clinic not in book.clinics:
        raise SimulationError(f"{book.source}: no clinic {clinic!r} (it has "
                              f"{', '.join(book.clinics) or 'none'})")
    policy = book.for_clinic(clinic)
    return policy.model_copy(update={
        "reschedule": policy.reschedule.model_copy(update={"webhook_url": None})})


async def simulate(policy: ClinicPolicy, risk: str, story: Story,
                   departed_at: datetime) -> Simulated:
    try:
        async with simulation_stage() as stage:
            rehearsed = await Rehearsal(stage, policy, story).run(risk, departed_at)
            delivered = {sms.sid: sms.body for sms in stage.sms.messages}
            delivered |= {str(mail.message["Message-ID"]): mail.text
                          for mail in stage.mail.messages}
    except (StoryStuck, TemporalBinaryMissing) as err:
        raise SimulationError(str(err)) from None
    moments = timeline(rehearsed.trail, policy, departed_at=rehearsed.departed_at,
                       shown_departure=departed_at, client_timezone=policy.timezone,
                       delivered=delivered)
    return Simulated(policy, risk, story, departed_at.astimezone(ZoneInfo(policy.timezone)),
                     moments)
