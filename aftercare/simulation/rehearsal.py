"""Runs one follow-up through a story on the stage: starts the real workflow at the chosen
departure, moves its clock from deadline to deadline, and answers as the client and the
staff would; where the story says so, then lets the Caring Contacts series that follows it
run to its end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from aftercare.simulation.stage import Stage
from aftercare.simulation.stories import DECLINE_OFFER, Story
from workflows.caring import CaringContacts
from workflows.followup import DepartureFollowUp
from workflows.models import (
    Acknowledge,
    AuditEntry,
    ClientContact,
    ClientReply,
    DepartureEvent,
    EmergencyContact,
    FollowUpInput,
    FollowUpStatus,
    Phase,
    ResolutionOutcome,
    Resolve,
    caring_contacts_id,
)
from workflows.policy import ClinicPolicy
from workflows.versions import CURRENT

# Who the simulated client is: made up, never a real person.
SAMPLE_CLIENT = {"id": "c-simulated", "first_name": "Dana", "phone": "+15555550123",
                 "email": "dana@example.org"}
SAMPLE_CONTACT = EmergencyContact(name="Sam", phone="+15555550199", consent=True)
LONGEST_STORY = timedelta(days=30)  # of simulated time
LONGEST_STEP = timedelta(hours=1)
PAST_DEADLINE = timedelta(milliseconds=100)
SETTLE_POLL = 0.1  # seconds of real time
LONGEST_SETTLE = 10.0
OVERDUE_GRACE = 2.0


class StoryStuck(RuntimeError):
    """The follow-up did not reach the story's next moment within the simulated time."""


@dataclass
class Rehearsed:
    """The trail the follow-up sealed, the trail of the Caring Contacts series that followed
    it (empty when the story stops at the follow-up), and the departure it started from on
    Temporal's clock: whole weeks after the one asked for, on the same weekday and local
    time."""

    trail: list[AuditEntry]
    series_trail: list[AuditEntry]
    departed_at: datetime
    weeks_later: int


def sample_event(policy: ClinicPolicy, risk: str, departed_at: datetime) -> DepartureEvent:
    return DepartureEvent(
        event_id=f"evt-sim-{uuid.uuid4().hex[:8]}",
        clinic_id=policy.clinic_id,
        session_id=f"sim-{uuid.uuid4().hex[:12]}",
        departed_at=departed_at,
        risk_level=risk,
        client=ClientContact(**SAMPLE_CLIENT, preferred_channel="sms",
                             timezone=policy.timezone, language=policy.default_language),
        emergency_contact=SAMPLE_CONTACT,
        therapist_id="t-simulated",
    )


def weeks_until(moment: datetime, earliest: datetime) -> int:
    """How many whole weeks to move ``moment`` on so it is no earlier than ``earliest``.
    Temporal's clock only runs forward from now; moved by whole weeks of local time, a
    departure keeps its weekday and wall-clock time, so quiet hours and the rota fall as
    they would have."""
    return max(0, -(-(earliest - moment) // timedelta(weeks=1)))


def weeks_later(moment: datetime, weeks: int, timezone: str) -> datetime:
    """The same local weekday and wall-clock time, ``weeks`` later."""
    local = moment.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)
    return (local + timedelta(weeks=weeks)).replace(tzinfo=ZoneInfo(timezone))


class Rehearsal:
    def __init__(self, stage: Stage, policy: ClinicPolicy, story: Story) -> None:
        self.stage = stage
        self.policy = policy
        self.story = story

    async def run(self, risk: str, departed_at: datetime) -> Rehearsed:
        env = self.stage.env
        earliest = datetime.now(ZoneInfo("UTC")) + timedelta(seconds=5)
        weeks = weeks_until(departed_at, earliest)
        departure = weeks_later(departed_at, weeks, self.policy.timezone)
        if departure < earliest:  # a change of daylight saving time in between
            weeks += 1
            departure = weeks_later(departed_at, weeks, self.policy.timezone)
        event = sample_event(self.policy, risk, departure)
        # The follow-up starts when the client departs: its clock is skipped to that moment.
        until_departure = departure - datetime.now(ZoneInfo("UTC"))
        with env.with_time_skipping_disabled():
            handle = await env.client.start_workflow(
                DepartureFollowUp.run,
                FollowUpInput(event=event, policy=self.policy.for_client(
                    event.client.language), version=CURRENT),
                id=event.workflow_id, task_queue=self.stage.settings.task_queue,
                start_delay=until_departure,
            )
        await env.fast_forward(handle, until_departure)
        await self.play(handle)
        trail = (await handle.result()).trail
        series_trail = (await self.follow_series(handle.id, trail)
                        if self.story.follows_caring_contacts else [])
        return Rehearsed(trail, series_trail, departure, weeks)

    async def follow_series(self, followup_id: str, trail: list[AuditEntry]
                            ) -> list[AuditEntry]:
        """Let the series' clock run freely to its close: it waits for nobody, and the
        time-skipping server jumps from one message's timer to the next."""
        if not any(entry.step == "caring_contacts_started" for entry in trail):
            raise StoryStuck(f"the follow-up closed ({trail[-1].outcome}) without starting "
                             "a Caring Contacts series")
        series = self.stage.env.client.get_workflow_handle_for(
            CaringContacts.run, caring_contacts_id(followup_id))
        await self.stage.env.fast_forward(series)
        return (await series.result()).trail

    async def play(self, handle: WorkflowHandle) -> None:
        if self.story.reply is not None:
            await self.until(handle, lambda s: any(
                e.step.endswith("_sent") and e.recipient == "client" for e in s.trail),
                "the first message to the client")
            await handle.signal(DepartureFollowUp.client_reply,
                                ClientReply(text=self.story.reply, channel="sms"))
        if self.story.declines_offer:
            await self.until(handle, lambda s: any(
                e.step == "reschedule_offer_sent" for e in s.trail), "the reschedule offer")
            await handle.signal(DepartureFollowUp.client_reply,
                                ClientReply(text=DECLINE_OFFER, channel="sms"))
        if self.story.staff_wait_for_exhausted_chain:
            await self.until(handle, lambda s: any(
                e.step == "escalation_unacknowledged" for e in s.trail),
                "every round of the escalation chain unanswered")
        while True:
            status = await self.until(
                handle, lambda s: needs_staff(s) or s.phase in (Phase.LISTENING, Phase.CLOSED),
                "the protocol's end")
            if not needs_staff(status):
                break
            await self.answer_as_staff(handle, status)
        if status.phase is Phase.CLOSED:
            return
        # Nothing is left for anyone to do: let the follow-up's clock run to its close.
        try:
            await self.stage.env.fast_forward(handle)
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise  # otherwise it closed meanwhile

    async def answer_as_staff(self, handle: WorkflowHandle, status: FollowUpStatus) -> None:
        esc = status.escalation
        assert esc is not None
        staff_id = esc.acknowledged_by or esc.paged[0].target
        if esc.acknowledged_by is None and not self.story.staff_wait_for_exhausted_chain:
            await handle.execute_update(DepartureFollowUp.acknowledge,
                                        Acknowledge(staff_id=staff_id))
        await handle.execute_update(DepartureFollowUp.resolve, Resolve(
            staff_id=staff_id, outcome=ResolutionOutcome(self.story.resolution)))

    async def until(self, handle: WorkflowHandle, reached: Callable[[FollowUpStatus], bool],
                    what: str) -> FollowUpStatus:
        """Move the follow-up's clock from deadline to deadline until ``reached``."""
        env = self.stage.env
        started = await env.get_current_time(handle)
        while True:
            status = await self.settled(handle)
            if reached(status):
                return status
            now = await env.get_current_time(handle)
            if now - started > LONGEST_STORY:
                raise StoryStuck(f"{what} did not come within {LONGEST_STORY.days} days of "
                                 "simulated time")
            step = LONGEST_STEP
            if (due := next_moment(status)) is not None:
                # Just past the deadline: a skip fires the timers it crosses.
                step = min(max(due - now, timedelta(0)) + PAST_DEADLINE, LONGEST_STEP)
            await env.fast_forward(handle, step)

    async def settled(self, handle: WorkflowHandle) -> FollowUpStatus:
        """The follow-up's status once nothing is in flight (no workflow task waiting, no send
        or trail write running) and the moment it next acts is still ahead; or, a provider
        retrying, after ``LONGEST_SETTLE``; or a moment passed unanswered, after
        ``OVERDUE_GRACE``."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            described = (await handle.describe()).raw_description
            busy = bool(described.pending_activities) or described.HasField(
                "pending_workflow_task")
            waited = loop.time() - started
            if not busy or waited > LONGEST_SETTLE:
                try:
                    status = await handle.query(DepartureFollowUp.status)
                except RPCError as err:
                    if err.status is not RPCStatusCode.FAILED_PRECONDITION:
                        raise  # otherwise its first task is not scheduled yet
                else:
                    due = next_moment(status)
                    overdue = due is not None and due <= await self.stage.env.get_current_time(
                        handle)
                    if not overdue or status.phase is Phase.CLOSED or waited > OVERDUE_GRACE:
                        return status
            await asyncio.sleep(SETTLE_POLL)


def next_moment(status: FollowUpStatus) -> datetime | None:
    """When the follow-up next acts of itself: the escalation's wait while one is open, or
    else the protocol's next deadline."""
    esc = status.escalation
    if esc is not None and esc.resolved_by is None and esc.resume_at is not None:
        return esc.resume_at
    return status.next_deadline


def needs_staff(status: FollowUpStatus) -> bool:
    esc = status.escalation
    return esc is not None and esc.resolved_by is None and bool(esc.paged)
