"""``aftercare-policy simulate``: a clinic's policy lived through before a client lives it.

The real follow-up workflow runs on a private time-skipping Temporal server with the real
worker, its sends caught by sinks that only record; a story plays the client and the staff.
The result is the timeline they would live, in the client's local time. In the ``caring``
story the Caring Contacts series that follows the follow-up runs too (turned on for the
simulation where the clinic has it off), and the timeline ends with its last message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    notes: list[str] = field(default_factory=list)  # what the simulation changed, and why

    def lines(self) -> list[str]:
        heading = (f"{self.policy.clinic_id} ({self.policy.clinic_name}), {self.risk} risk, "
                   f"story {self.story}: the client left at "
                   f"{self.departed_at:%a %d %b %Y %H:%M:%S} ({self.policy.timezone}); "
                   "times are the client's")
        return render(self.moments, "\n".join([heading, *self.notes]))


def simulation_policy(book: PolicyBook, clinic: str) -> ClinicPolicy:
    """The clinic's policy as the simulation runs it: its booking webhook left out, so a
    simulation never calls the clinic's system (no story chooses a slot)."""
    if clinic not in book.clinics:
        raise SimulationError(f"{book.source}: no clinic {clinic!r} (it has "
                              f"{', '.join(book.clinics) or 'none'})")
    policy = book.for_clinic(clinic)
    return policy.model_copy(update={
        "reschedule": policy.reschedule.model_copy(update={"webhook_url": None})})


def with_caring_contacts(policy: ClinicPolicy) -> tuple[ClinicPolicy, list[str]]:
    """The policy with its Caring Contacts series on, and a note when the clinic has it off."""
    if policy.caring_contacts.enabled:
        return policy, []
    return policy.model_copy(update={"caring_contacts": policy.caring_contacts.model_copy(
        update={"enabled": True})}), [
        "caring_contacts is off for this clinic: turned on for this simulation, with the "
        "clinic's schedule and send times"]


async def simulate(policy: ClinicPolicy, risk: str, story: Story,
                   departed_at: datetime) -> Simulated:
    notes: list[str] = []
    if story.follows_caring_contacts:
        policy, notes = with_caring_contacts(policy)
    try:
        async with simulation_stage() as stage:
            rehearsed = await Rehearsal(stage, policy, story).run(risk, departed_at)
            delivered = {sms.sid: sms.body for sms in stage.sms.messages}
            delivered |= {str(mail.message["Message-ID"]): mail.text
                          for mail in stage.mail.messages}
    except (StoryStuck, TemporalBinaryMissing) as err:
        raise SimulationError(str(err)) from None
    shown = {"departed_at": rehearsed.departed_at, "weeks_later": rehearsed.weeks_later,
             "client_timezone": policy.timezone, "delivered": delivered}
    moments = timeline(rehearsed.trail, policy, **shown)
    moments += through_last_message(timeline(rehearsed.series_trail, policy, **shown,
                                             author="caring contacts"))
    if rehearsed.weeks_later and rehearsed.series_trail:
        notes.append(f"the series ran {rehearsed.weeks_later} weeks after the departure asked "
                     "for: its months are counted from the day it ran, so a date can differ "
                     "by a day or two from a month after the day shown")
    return Simulated(policy, risk, story, departed_at.astimezone(ZoneInfo(policy.timezone)),
                     moments, notes)


def through_last_message(moments: list[Moment]) -> list[Moment]:
    """A series' moments up to its last message: after it, the series only listens."""
    last = [i for i, moment in enumerate(moments) if moment.what.startswith("caring last")]
    return moments[:last[-1] + 1] if last else moments
