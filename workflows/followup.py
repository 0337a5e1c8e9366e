"""DepartureFollowUp: the clinic's protocol for a client who left a session upset.

Read ``run`` top to bottom: triage, check in, wait for a reply, escalate, offer to
reschedule, listen, close. Everything else happens beside it, the moment it is due:
replies are acted on as they arrive (``inbox``), messages and pages go out and fall back
on their own (``outbox``), the chain is walked on its own clocks (``escalation``), and the
trail is sealed step by step and stored in batches (``trail``). Staff acknowledge, resolve
and cancel through updates; people read the follow-up's view, stored with its trail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import TypedSearchAttributes
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from workflows.calendar import ClientCalendar, wait_until
    from workflows.escalation import ACK_CODE, Escalation, Reason, StaffCalls
    from workflows.inbox import Inbox
    from workflows.models import (
        Acknowledge,
        ActionResult,
        Actor,
        BookingConfirmation,
        BookingRequest,
        Cancel,
        CaringContactsInput,
        CaringContactsView,
        CarriedOver,
        ClientReply,
        DeliveryFailure,
        FollowUpInput,
        FollowUpOutcome,
        FollowUpView,
        LinkAction,
        NextStep,
        Phase,
        ResolutionOutcome,
        Resolve,
        RiskLevel,
        caring_contacts_id,
    )
    from workflows.outbox import PERSISTENT_DEADLINE, SEND_DEADLINE, SEND_RETRY, Outbox
    from workflows.policy import one_copy
    from workflows.readers import ReadByPeople
    from workflows.staff_actions import refuse, staff_problem
    from workflows.trail import TrailWriter
    from workflows.versions import CARING_CONTACTS_SERIES, CURRENT, patched


__all__ = ["ACK_CODE", "DepartureFollowUp"]

SLOT_LETTERS = "ABCDE"
# The series that may follow a follow-up (workflows/caring.py), started by name: it imports
# this module, not the other way round.
CARING_CONTACTS = "CaringContacts"
# What a series needs of its follow-up's search attributes: a text from the client's number
# finds the series (the contact key), the console its clinic.
REPLY_ROUTING_ATTRIBUTES = {"AftercareContactKey", "AftercareClinic"}


class FollowUpCancelled(Exception):
    """Staff cancelled the follow-up: stop wherever the protocol is."""


@workflow.defn
class DepartureFollowUp(ReadByPeople):
    outbox_type: type[Outbox] = Outbox  # a test's variant swaps in a defective one

    @workflow.init
    def __init__(self, input: FollowUpInput) -> None:
        self.version = input.version
        self.event = input.event
        # The SDK keeps the input for the run's life: it must hold the shared copy too.
        self.policy = input.policy = one_copy(input.policy)
        self.client = input.event.client
        language = self.policy.language(self.client.language)
        self.language = language
        carried = input.carried_over or CarriedOver()
        self.trail = TrailWriter(workflow.info().workflow_id, self.view,
                                 lambda: self.outbox.idle(), carried.trail,
                                 carried.trail_refused, carried.view_revision)
        self.outbox = self.outbox_type(self.event, self.policy, language, self.trail,
                                       carried.outbox)
        self.calendar = ClientCalendar(self.policy, self.event.risk_level,
                                       self.client.timezone)
        self.inbox = Inbox(self.policy, self.event.risk_level, self.trail, self)
        self.stage = carried.stage
        self.next_step = carried.next_step
        self.staff_calls = StaffCalls(self.policy, self.outbox, self.trail, carried.escalation)
        self.client_safe = carried.client_safe
        self.unreachable = carried.unreachable
        self.reply_for_review = carried.reply_for_review
        self.late_reply_to = input.late_reply_to
        self.caring_contacts_started = carried.caring_contacts_started
        self.chosen_slot: datetime | None = None
        self.declined = False
        self.booked = carried.booked
        self.slots: list[datetime] = []
        self.resolution: Resolve | None = None
        self.cancellation: Cancel | None = None
        self.closed_reason: str | None = None
        self.next_deadline: datetime | None = None
        self.next_deadline_reason: str | None = None
        self.checkin_accepted_at: datetime | None = None
        self.late_checkin: asyncio.Task[bool] | None = None
        if input.carried_over is None:
            detail = {"risk_level": self.event.risk_level.value}
            if input.late_reply_to:
                detail["late_reply_to"] = input.late_reply_to
            self.trail.record("received", detail=detail)
        else:
            self.trail.record("continued", outcome="in a new run: the history had grown long",
                              detail={"entries_carried": str(len(carried.trail))})

    # ------------------------------------------------------------------ the protocol

    @workflow.run
    async def run(self, input: FollowUpInput) -> FollowUpOutcome:
        asyncio.create_task(self.trail.keep_written())
        if input.late_reply_to:
            # A text after an earlier follow-up ended: its reply arrives with this start.
            self.next_step = NextStep.LISTEN
        try:
            if self.escalation is not None:
                # Handed on mid-escalation: finish it, then the step after the one it began in.
                self.escalation.start(resume_at=self.escalation.state.resume_at)
                await self.until_escalation_resolved()
                self.next_step = self.next_step.after()
            if self.next_step is NextStep.CHECK_IN:
                await self.triage_and_check_in()
                await self.until_escalation_resolved()
                self.next_step = NextStep.OFFER
            if self.next_step is NextStep.OFFER:
                if self.may_offer_reschedule():
                    await self.offer_reschedule()
                    await self.until_escalation_resolved()
                self.next_step = NextStep.LISTEN
                self.debrief_therapist()
            await self.listen()
        except FollowUpCancelled:
            pass
        return await self.close()

    async def triage_and_check_in(self) -> None:
        """Imminent risk escalates at once. Otherwise wait the policy's delay for this risk
        (and, where they protect the client, quiet hours), check in, and wait for a reply."""
        if self.event.risk_level is RiskLevel.IMMINENT:
            self.ask_staff(Reason.IMMINENT_RISK)
            return
        due = self.event.departed_at + self.policy.checkin_delay.for_risk(
            self.event.risk_level)
        self.stage = Phase.WAITING_TO_CHECK_IN
        self.trail.record("checkin_scheduled", detail={"due": due.isoformat()})
        if await self.wait_step(due, "check-in", self.heard_enough):
            return
        quiet_until = self.calendar.quiet_hours_end(workflow.now())
        if quiet_until is not None and self.calendar.protects_sleep():
            self.trail.record("checkin_deferred", outcome="quiet hours",
                              detail={"until": quiet_until.isoformat()})
            if await self.wait_step(quiet_until, "check-in after quiet hours",
                                    self.heard_enough):
                return
        self.stage = Phase.AWAITING_REPLY
        checkin = self.outbox.to_client(
            "checkin", links=self.reply_links(), lasting=PERSISTENT_DEADLINE,
            on_accepted=self.checkin_accepted)
        # A late check-in still gets a whole window; one not out by the end of the window
        # it was scheduled for means nobody can reach the client: staff are paged.
        scheduled_end = self.calendar.awake_after(workflow.now(), self.response_window())
        await self.wait_step(scheduled_end, "check-in accepted",
                             lambda: checkin.done() or self.heard_enough())
        if self.heard_enough() or (checkin.done() and checkin.result()
                                   and self.checkin_accepted_at is None):
            self.outbox.withdraw([checkin])  # already escalated or answered (or opted out)
            return
        if self.checkin_accepted_at is None:
            # Staff try to reach the client; the check-in keeps trying beside them, so a
            # client it reaches late can still answer, until staff close the escalation.
            self.late_checkin = checkin
            self.unreachable = True
            self.ask_staff(Reason.UNREACHABLE)
            return
        await self.wait_for_reply(self.checkin_accepted_at)

    def checkin_accepted(self) -> None:
        self.checkin_accepted_at = workflow.now()
        self.unreachable = False

    async def wait_for_reply(self, checked_in_at: datetime) -> None:
        """Remind until the response window ends, counted from the check-in's acceptance.
        Only a safe reply means safe; STOP at low or moderate risk is an answer too."""
        window_end = self.calendar.awake_after(checked_in_at, self.response_window())
        if window_end > checked_in_at + self.response_window():
            self.trail.record("response_window_extended", outcome="quiet hours",
                              detail={"until": window_end.isoformat()})
        reminder_times = [at for offset in sorted(self.policy.reminders)
                          if (at := self.calendar.awake_after(checked_in_at, offset))
                          < window_end]
        for number, reminder_at in enumerate(reminder_times):
            if await self.wait_step(reminder_at, "reminder", self.heard_enough):
                return
            if self.outbox.opted_out:
                self.trail.record("reminder_skipped", outcome="opted out")
                continue
            # A reminder not accepted before the next one (or the window's end) is dropped.
            next_moment = min([window_end, *reminder_times[number + 1:]])
            self.outbox.to_client("reminder", links=self.reply_links(),
                                  lasting=next_moment - workflow.now())
        if await self.wait_step(window_end, "response window ends", self.heard_enough):
            return
        if not self.outbox.opted_out:
            self.trail.record("no_reply", outcome="response window ended")
            self.ask_staff(Reason.NO_REPLY)

    async def until_escalation_resolved(self) -> None:
        """An escalation open now is walked until staff resolve it. When its history grows
        long, the follow-up hands on to a new run of itself at a quiet moment."""
        while self.escalation_open():
            await workflow.wait_condition(
                lambda: not self.escalation_open() or self.cancellation is not None
                or self.may_hand_on())
            if self.cancellation is not None:
                raise FollowUpCancelled
            if self.escalation_open():
                self.hand_on()
        if self.late_checkin is not None:
            self.outbox.withdraw([self.late_checkin])  # staff have closed it: too late now

    async def offer_reschedule(self) -> None:
        """Offer slots or a booking link; book the chosen slot and confirm it. A reply that
        needs staff ends the offer: page, don't sell."""
        options = self.policy.reschedule
        self.stage = Phase.OFFERING_RESCHEDULE
        opened_before = self.escalations_opened

        def offer_over() -> bool:
            return (self.chosen_slot is not None or self.declined
                    or self.escalations_opened > opened_before)

        quiet_until = self.calendar.quiet_hours_end(workflow.now())
        if quiet_until is not None:
            self.trail.record("reschedule_offer_deferred", outcome="quiet hours",
                              detail={"until": quiet_until.isoformat()})
            await self.wait_step(quiet_until, "reschedule offer after quiet hours", offer_over)
        # The offer follows what the client was just told ("glad you're OK"), not before.
        await self.wait_step(None, "message before the offer",
                             lambda: self.outbox.client_idle() or offer_over())
        if offer_over():
            return
        self.slots = options.slot_times(workflow.now(), self.policy.timezone)
        offer = self.outbox.to_client(
            "reschedule_offer", slots=self.describe_slots(),
            links=[LinkAction(label=f"Book {self.slot_label(i)}", action="reschedule",
                              value=SLOT_LETTERS[i]) for i in range(len(self.slots))])
        await self.wait_step(workflow.now() + options.offer_window, "reschedule choice",
                             offer_over)
        if self.escalations_opened > opened_before:
            self.outbox.withdraw([offer])
            return
        if self.chosen_slot is None:
            self.trail.record("reschedule_not_chosen",
                              outcome="declined" if self.declined else "no choice in time")
            return
        await self.book(self.chosen_slot)

    async def book(self, slot: datetime) -> None:
        self.trail.record("reschedule_chosen", actor=Actor.CLIENT, outcome=slot.isoformat())
        options = self.policy.reschedule
        if options.webhook_url is None:
            self.trail.record("booking_skipped", outcome="clinic has no booking webhook")
            return
        request = BookingRequest(
            workflow_id=self.trail.workflow_id, clinic_id=self.event.clinic_id,
            session_id=self.event.session_id, client_id=self.client.id,
            slot_start=slot, webhook_url=options.webhook_url)
        try:
            confirmation = await workflow.execute_activity(
                "request_booking", request, result_type=BookingConfirmation,
                schedule_to_close_timeout=SEND_DEADLINE,
                start_to_close_timeout=timedelta(seconds=30), retry_policy=SEND_RETRY)
        except ActivityError:
            self.trail.record("booking_failed",
                              outcome="clinic booking webhook refused or down")
            self.ask_staff(Reason.BOOKING_FAILED)
            return
        self.trail.record("booking_confirmed", outcome=confirmation.booking_id or "booked")
        self.booked = True
        self.outbox.to_client("booking_confirmed",
                              slot=self.slot_label(self.slots.index(slot)))

    def debrief_therapist(self) -> None:
        """The treating therapist hears how the follow-up ended and whether a session is
        booked: nothing clinical beyond what they already know, in the clinic's language."""
        therapist = self.event.therapist_id
        if not (self.policy.therapist_debrief and therapist in self.policy.staff):
            return
        templates = self.policy.templates[self.policy.default_language]
        booked = (templates.debrief_booked.format(
                      slot=self.slot_label(self.slots.index(self.chosen_slot)))
                  if self.booked else templates.debrief_not_booked)
        outcome = "client unreachable" if self.unreachable else self.closing_reason()
        self.outbox.to_staff("staff_debrief", therapist, self.event.session_id,
                             outcome=outcome, booked=booked)

    async def listen(self) -> None:
        """The protocol is done, but for a while a text from the client still reaches the
        clinic: a crisis pages, anything else needing a person is paged to be read."""
        self.stage = Phase.LISTENING
        until = workflow.now() + self.policy.listen_after_close
        self.trail.record("listening", outcome=self.closing_reason(),
                          detail={"until": until.isoformat()})
        while await self.wait_step(until, "listening for the client", self.escalation_open):
            await self.until_escalation_resolved()
            self.stage = Phase.LISTENING
            until = workflow.now() + self.policy.listen_after_close

    async def close(self) -> FollowUpOutcome:
        """Settle, record the close, store the trail, then look again: a reply that arrives
        meanwhile reopens the follow-up and is acted on before it completes."""
        while True:
            await self.wait_step(None, "settling",
                                 lambda: not self.escalation_open() and self.outbox.idle(),
                                 cancellable=False)
            self.stage = Phase.CLOSED
            self.next_deadline = self.next_deadline_reason = None
            self.closed_reason = self.closing_reason()
            if self.caring_contacts_due():
                await self.start_caring_contacts()
                if self.stage is not Phase.CLOSED:
                    continue  # a reply reopened it while the series started: act on it first
            self.trail.record("closed", outcome=self.closed_reason)
            await workflow.wait_condition(
                lambda: self.stage is not Phase.CLOSED
                or (self.trail.backlog() == 0 and workflow.all_handlers_finished()))
            if self.stage is Phase.CLOSED:
                return FollowUpOutcome(
                    workflow_id=self.trail.workflow_id, closed_reason=self.closed_reason,
                    client_safe=self.client_safe,
                    escalation=self.escalation and self.escalation.state,
                    rescheduled_slot=self.chosen_slot, trail=self.trail.entries)

    def caring_contacts_due(self) -> bool:
        """Caring Contacts follow a follow-up that ended without a booked session, an
        opt-out, a staff cancel or an open escalation, where the clinic turned them on."""
        return (self.policy.caring_contacts.enabled and not self.caring_contacts_started
                and self.late_reply_to is None and not self.booked
                and not self.outbox.opted_out and self.cancellation is None
                and not self.escalation_open()
                # Asked only with the option on: no follow-up had it before this release, so
                # histories with it off replay without a marker. The patch guards the rest.
                and patched(CARING_CONTACTS_SERIES))

    async def start_caring_contacts(self) -> None:
        """Start the series as a child that outlives this follow-up (ABANDON), under this
        follow-up's id plus ``-caring``. A failure to start it never fails the follow-up."""
        series = caring_contacts_id(self.trail.workflow_id)
        routing = TypedSearchAttributes([
            pair for pair in workflow.info().typed_search_attributes
            if pair.key.name in REPLY_ROUTING_ATTRIBUTES])
        self.caring_contacts_started = True
        try:
            await workflow.start_child_workflow(
                CARING_CONTACTS,
                CaringContactsInput(event=self.event, policy=self.policy,
                                    followup_id=self.trail.workflow_id, version=CURRENT),
                id=series, parent_close_policy=ParentClosePolicy.ABANDON,
                search_attributes=routing)
        except WorkflowAlreadyStartedError:
            self.trail.record("caring_contacts_started", outcome="already running",
                              detail={"series": series})
            return
        self.trail.record("caring_contacts_started", detail={"series": series})

    # ------------------------------------------------------------------ what people send

    @workflow.signal
    def client_reply(self, reply: ClientReply) -> None:
        if self.stage is Phase.CLOSED:
            self.trail.record("reopened", outcome="a reply after closing")
            self.stage = Phase.LISTENING
        offering = self.stage is Phase.OFFERING_RESCHEDULE and self.chosen_slot is None
        self.inbox.take(reply, SLOT_LETTERS[: len(self.slots)] if offering else "")

    @workflow.signal
    def delivery_failed(self, failure: DeliveryFailure) -> None:
        self.outbox.undelivered(failure)

    @workflow.update
    def acknowledge(self, ack: Acknowledge) -> ActionResult:
        esc = self.escalation
        refuse(self.staff_problem(ack.staff_id) or (
            "nothing to acknowledge: no escalation is open" if not self.escalation_open()
            else f"already acknowledged by {esc.state.acknowledged_by}" if esc.acknowledged
            else "that code does not match this follow-up's escalation"
            if ack.code is not None and ack.code != esc.state.code else None))
        assert esc is not None
        esc.acknowledge(ack.staff_id)
        self.trail.record("acknowledged", actor=Actor.STAFF,
                          recipient=f"staff:{ack.staff_id}", outcome=f"level {esc.state.level}")
        return self.action_result(f"acknowledged by {ack.staff_id}")

    @workflow.update
    def resolve(self, resolution: Resolve) -> ActionResult:
        """Resolve the open escalation or, before any, the follow-up itself."""
        resolver = self.resolution.staff_id if self.resolution else None
        refuse(self.staff_problem(resolution.staff_id) or (
            None if self.escalation_open()
            else "this follow-up is closed" if self.closed_to_staff()
            else f"already resolved by {resolver}" if resolver else None))
        if resolution.outcome is ResolutionOutcome.REACHED_CLIENT:
            self.client_safe = True
        self.trail.record("resolved", actor=Actor.STAFF,
                          recipient=f"staff:{resolution.staff_id}",
                          outcome=resolution.outcome.value,
                          detail={"note": "recorded"} if resolution.note else None)
        if resolution.note:
            self.trail.keep_note("resolution_note", resolution.staff_id, resolution.note)
        if self.escalation_open():
            assert self.escalation is not None
            self.escalation.close(resolution.staff_id, resolution.outcome)
            self.escalation.tell_everyone_paged("staff_resolved")
        else:
            self.resolution = resolution
        return self.action_result(f"resolved by {resolution.staff_id}: {resolution.outcome}")

    @workflow.update
    def cancel(self, cancel: Cancel) -> ActionResult:
        refuse(self.staff_problem(cancel.staff_id) or (
            "this follow-up is closed" if self.closed_to_staff()
            else f"already cancelled by {self.cancellation.staff_id}" if self.cancellation
            else None))
        self.cancellation = cancel
        # The reason is staff free text: sealed beside the trail, never in it.
        self.trail.record("cancelled", actor=Actor.STAFF, recipient=f"staff:{cancel.staff_id}",
                          detail={"reason": "recorded"})
        self.trail.keep_note("cancel_reason", cancel.staff_id, cancel.reason)
        self.outbox.withdraw(self.outbox.client_tasks)
        if self.escalation_open():
            assert self.escalation is not None
            self.escalation.close(cancel.staff_id)
            self.escalation.tell_everyone_paged("staff_cancelled")
        return self.action_result(f"cancelled by {cancel.staff_id}")

    def staff_problem(self, staff_id: str) -> str | None:
        return staff_problem(self.policy, staff_id)

    def closed_to_staff(self) -> bool:
        return self.stage is Phase.CLOSED or (
            self.cancellation is not None and not self.escalation_open())

    # ------------------------------------------------------------------ what replies do

    def ask_staff(self, reason: str) -> None:
        self.staff_calls.ask(reason)

    @property
    def escalation(self) -> Escalation | None:
        return self.staff_calls.escalation

    @property
    def escalations_opened(self) -> int:
        return self.staff_calls.opened

    def client_is_safe(self) -> None:
        self.client_safe = True
        if self.escalation_open():
            assert self.escalation is not None
            self.escalation.client_answered()

    def set_opted_out(self, opted_out: bool) -> None:
        self.outbox.opted_out = opted_out
        if opted_out:
            self.outbox.withdraw(self.outbox.client_tasks)  # STOP is honoured at once

    def choose_slot(self, index: int) -> None:
        self.chosen_slot = self.slots[index]

    def decline_offer(self) -> None:
        self.declined = True

    def say_to_client(self, kind: str) -> None:
        links = self.reply_links() if kind in ("opted_in", "help") else None
        self.outbox.to_client(kind, links=links)

    def tell_paged_staff_of_reply(self, kind: str) -> None:
        if self.escalation is not None and self.escalation_open():
            self.escalation.tell_everyone_paged("staff_client_replied", reply=kind)

    def keep_reply_for_review(self, text: str) -> None:
        self.reply_for_review = text

    # ------------------------------------------------------------------ conditions

    def heard_enough(self) -> bool:
        """The client's silence is no longer the question: they answered, staff have it, or
        an escalation opened."""
        return self.client_safe or self.resolution is not None or self.escalation is not None

    def escalation_open(self) -> bool:
        return self.escalation is not None and not self.escalation.resolved

    def may_offer_reschedule(self) -> bool:
        return (self.policy.reschedule.enabled and not self.outbox.opted_out
                and not self.unreachable and self.cancellation is None
                and (self.client_safe or self.resolution is not None
                     or (self.escalation is not None and self.escalation.resolved)))

    def closing_reason(self) -> str:
        esc = self.escalation and self.escalation.state
        if self.cancellation:
            return "cancelled"
        if esc and esc.outcome:
            return f"escalation resolved: {esc.outcome.value}"
        if self.resolution:
            return f"resolved: {self.resolution.outcome.value}"
        if self.client_safe:
            return "client safe"
        if self.outbox.opted_out:
            return "client opted out"
        return "client responded"

    def response_window(self) -> timedelta:
        return self.policy.response_window.for_risk(self.event.risk_level)

    async def wait_step(self, deadline: datetime | None, reason: str,
                        done: Callable[[], bool], *, cancellable: bool = True) -> bool:
        """Wait for ``done()`` until ``deadline``; True when ``done()`` ended the wait. A
        staff cancel ends any step of the protocol."""
        self.next_deadline, self.next_deadline_reason = deadline, reason

        def over() -> bool:
            return done() or (cancellable and self.cancellation is not None)

        if deadline is None:
            await workflow.wait_condition(over)
            ended = True
        else:
            ended = await wait_until(deadline, over)
        if cancellable and self.cancellation is not None:
            raise FollowUpCancelled
        return ended and done()

    # ------------------------------------------------------------------ continue-as-new

    def may_hand_on(self) -> bool:
        """Temporal suggests the history has grown long (an escalation paging or waiting for
        days, a flood of texts) and nothing is in flight: no send, page, note or entry."""
        return (workflow.info().is_continue_as_new_suggested()
                and self.escalation is not None and self.escalation.at_rest()
                and self.outbox.idle() and self.trail.backlog() == 0
                and workflow.all_handlers_finished())

    def hand_on(self) -> None:
        """Go on in a new run of this follow-up, same workflow id, carrying the trail, the
        escalation and the clock of its next step: no page later than it would have been."""
        assert self.escalation is not None
        workflow.continue_as_new(FollowUpInput(
            event=self.event, policy=self.policy, version=CURRENT,
            carried_over=CarriedOver(
                next_step=self.next_step, stage=self.stage,
                escalation=self.escalation.state, trail=self.trail.entries,
                trail_refused=self.trail.refused, view_revision=self.trail.view_revision,
                outbox=self.outbox.state(), client_safe=self.client_safe,
                unreachable=self.unreachable, reply_for_review=self.reply_for_review,
                booked=self.booked, caring_contacts_started=self.caring_contacts_started,
            ),
        ))

    # ------------------------------------------------------------------ what people read

    def phase(self) -> Phase:
        return self.staff_calls.phase_or(self.stage)

    def next_deadline_in_view(self) -> dict[str, datetime | str | None]:
        """While a chain is out, its own clock: the next level or reminder is what's due."""
        esc = self.escalation
        if esc is not None and self.escalation_open() and esc.state.resume_at is not None:
            reason = "resolution reminder" if esc.acknowledged else "acknowledgement"
            return {"next_deadline": esc.state.resume_at, "next_deadline_reason": reason}
        return {"next_deadline": self.next_deadline,
                "next_deadline_reason": self.next_deadline_reason}

    def view(self) -> FollowUpView:
        return FollowUpView(
            workflow_id=self.trail.workflow_id,
            clinic_id=self.event.clinic_id,
            risk_level=self.event.risk_level,
            departed_at=self.event.departed_at,
            phase=self.phase(),
            **self.next_deadline_in_view(),
            opted_out=self.outbox.opted_out,
            client_safe=self.client_safe,
            channel=self.outbox.channel,
            escalation=self.escalation and self.escalation.state.model_copy(deep=True),
            reply_for_review=self.reply_for_review,
            closed_reason=self.closed_reason,
            caring_contacts=CaringContactsView(
                series_id=caring_contacts_id(self.trail.workflow_id),
                messages_planned=len(self.policy.caring_contacts.schedule))
            if self.caring_contacts_started else None,
            trail_length=len(self.trail.entries),
        )

    # ------------------------------------------------------------------ small helpers

    def reply_links(self) -> list[LinkAction]:
        return [LinkAction(label="I'm OK", action="reply", value="OK"),
                LinkAction(label="Please call me", action="reply", value="CALL")]

    def slot_label(self, index: int) -> str:
        """A slot in the client's language, at the clinic's local time."""
        slot, templates = self.slots[index], self.policy.templates[self.language]
        return templates.slot_time.format(
            weekday=templates.weekdays[slot.weekday()], day=slot.day, month=slot.month,
            time=f"{slot:%H:%M}")

    def describe_slots(self) -> str:
        templates = self.policy.templates[self.language]
        choices = [templates.slot_choice.format(letter=SLOT_LETTERS[i], slot=self.slot_label(i))
                   for i in range(len(self.slots))]
        if self.policy.reschedule.booking_url:
            choices.append(templates.book_online.format(url=self.policy.reschedule.booking_url))
        return " ".join(choices)
