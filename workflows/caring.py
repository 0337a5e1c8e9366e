"""CaringContacts: brief messages that ask for nothing, over months, to a client whose
follow-up ended without a booked session or an opt-out (Motto & Bostrom 2001, Comtois et
al. 2019).

Read ``run`` top to bottom: for each message of the clinic's schedule, wait for its day and
a waking time of the client's, send it, and every few messages go on in a new run so the
history stays short for a year or more. Replies are acted on the moment they arrive, by the
follow-up's own ``Inbox``: a crisis pages the on-call at once and sends the client the
crisis line (``StaffCalls``, as in the follow-up); STOP ends the series; anything else goes
to a staff member to read by a business-day deadline, and the client is not answered with
the crisis text. Staff stop the series through an update. The trail and the view are kept
as the follow-up keeps them (``TrailWriter``), under the series' own workflow id.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.calendar import ClientCalendar, wait_until
    from workflows.escalation import Reason, StaffCalls
    from workflows.inbox import Inbox
    from workflows.models import (
        Acknowledge,
        ActionResult,
        Actor,
        Cancel,
        CaringContactsInput,
        CaringContactsOutcome,
        CaringContactsView,
        ClientReply,
        DeliveryFailure,
        FollowUpView,
        Phase,
        Resolve,
        SeriesCarriedOver,
        SeriesState,
    )
    from workflows.outbox import Outbox, staff_recipient
    from workflows.policy import local_label, one_copy
    from workflows.readers import ReadByPeople
    from workflows.staff_actions import refuse, staff_problem
    from workflows.trail import TrailWriter
    from workflows.versions import CURRENT

# A new run after this many messages (or sooner, when Temporal suggests it): a run's history
# then holds a few messages and their replies, whatever the length of the series.
MESSAGES_PER_RUN = 3
# A message no channel accepted within this is skipped; the next one is months away.
MESSAGE_LASTING = timedelta(hours=6)


@workflow.defn
class CaringContacts(ReadByPeople):
    @workflow.init
    def __init__(self, input: CaringContactsInput) -> None:
        self.version = input.version
        self.event = input.event
        # The SDK keeps the input for the run's life: it must hold the shared copy too.
        self.policy = input.policy = one_copy(input.policy)
        self.options = self.policy.caring_contacts
        carried = input.carried_over or SeriesCarriedOver(started_at=workflow.now())
        self.started_at = carried.started_at
        self.next_message = carried.next_message
        self.state, self.why = carried.state, carried.why
        self.review_due = carried.review_due
        self.reply_for_review = carried.reply_for_review
        self.trail = TrailWriter(workflow.info().workflow_id, self.view,
                                 lambda: self.outbox.idle(), carried.trail,
                                 carried.trail_refused, carried.view_revision)
        language = self.policy.language(self.event.client.language)
        self.outbox = Outbox(self.event, self.policy, language, self.trail, carried.outbox)
        self.staff_calls = StaffCalls(self.policy, self.outbox, self.trail)
        self.inbox = Inbox(self.policy, self.event.risk_level, self.trail, self)
        self.calendar = ClientCalendar(self.policy, self.event.risk_level,
                                       self.event.client.timezone)
        self.next_send_at: datetime | None = None
        self.sent_in_this_run = 0
        self.replying: ClientReply | None = None
        self.closed = False
        if input.carried_over is None:
            self.trail.record("series_started", detail={
                "after": input.followup_id, "messages": str(len(self.options.schedule))})
        else:
            self.trail.record("continued", outcome="in a new run: the history had grown long",
                              detail={"entries_carried": str(len(carried.trail))})

    # ------------------------------------------------------------------ the series

    @workflow.run
    async def run(self, input: CaringContactsInput) -> CaringContactsOutcome:
        asyncio.create_task(self.trail.keep_written())
        if self.review_due is not None:
            self.watch_review()  # a reply handed on unread keeps its deadline
        schedule = self.options.schedule
        while self.state is SeriesState.ACTIVE and self.next_message < len(schedule):
            if (self.sent_in_this_run >= MESSAGES_PER_RUN
                    or workflow.info().is_continue_as_new_suggested()):
                await self.hand_on(input)
            self.next_send_at = self.send_time(self.next_message)
            if await wait_until(self.next_send_at, self.stopped):
                break
            await self.send(self.next_message)
        self.next_send_at = None
        if self.state is SeriesState.ACTIVE:
            self.state, self.why = SeriesState.ENDED, "its last message went out"
            self.trail.record("series_ended", outcome=self.why)
        if self.state is SeriesState.ENDED:
            # The last message said it was the last; a reply to it is still acted on.
            await wait_until(workflow.now() + self.policy.listen_after_close, lambda: False)
        return await self.close()

    def send_time(self, index: int) -> datetime:
        """The message's day from the schedule, at a time drawn within the client's waking
        hours (``workflow.random``: the same on replay), moved out of quiet hours."""
        opens, minutes = self.options.send_window(self.started_at, index,
                                                  self.event.client.timezone)
        at = max(opens + timedelta(minutes=workflow.random().randrange(max(minutes, 1))),
                 workflow.now())
        return self.calendar.quiet_hours_end(at) or at

    async def send(self, index: int) -> None:
        last = len(self.options.schedule) - 1
        kind = "caring_first" if index == 0 else "caring_last" if index == last else (
            "caring_contact")
        assert self.next_send_at is not None
        self.trail.record("caring_contact_due", outcome=kind, detail={
            "message": str(index + 1), "of": str(last + 1),
            "scheduled": self.next_send_at.isoformat()})
        self.next_message, self.sent_in_this_run = index + 1, self.sent_in_this_run + 1
        message = self.outbox.to_client(kind, lasting=MESSAGE_LASTING)
        await workflow.wait_condition(message.done)

    def stopped(self) -> bool:
        return self.state is not SeriesState.ACTIVE

    async def hand_on(self, input: CaringContactsInput) -> None:
        """Go on in a new run, same workflow id, at a moment nothing is in flight: no open
        escalation, send, trail batch or handler. A reply waiting to be read goes along."""
        await workflow.wait_condition(lambda: self.stopped() or (
            not self.staff_calls.is_open() and self.outbox.idle()
            and self.trail.backlog() == 0 and workflow.all_handlers_finished()))
        if self.stopped():
            return
        carried = SeriesCarriedOver(
            started_at=self.started_at, next_message=self.next_message, state=self.state,
            why=self.why, review_due=self.review_due, reply_for_review=self.reply_for_review,
            trail=self.trail.entries, trail_refused=self.trail.refused,
            view_revision=self.trail.view_revision, outbox=self.outbox.state())
        workflow.continue_as_new(input.model_copy(
            update={"version": CURRENT, "carried_over": carried}))

    async def close(self) -> CaringContactsOutcome:
        """Once nothing is open (a page, a reply to read, a send), record the end and store
        the trail; a reply meanwhile is acted on first."""
        while True:
            await workflow.wait_condition(lambda: not self.staff_calls.is_open()
                                          and self.review_due is None and self.outbox.idle())
            self.closed = True
            self.trail.record("closed", outcome=self.why)
            await workflow.wait_condition(lambda: not self.closed or (
                self.trail.backlog() == 0 and workflow.all_handlers_finished()))
            if self.closed:
                return CaringContactsOutcome(
                    workflow_id=self.trail.workflow_id, state=self.state, why=self.why,
                    messages_sent=self.next_message, trail=self.trail.entries)

    # ------------------------------------------------------------------ replies

    @workflow.signal
    def client_reply(self, reply: ClientReply) -> None:
        """The same signal as the follow-up's: the API passes a text to whichever runs."""
        if self.closed:
            self.trail.record("reopened", outcome="a reply after closing")
            self.closed = False
        self.replying = reply
        self.inbox.take(reply, "")

    @workflow.signal
    def delivery_failed(self, failure: DeliveryFailure) -> None:
        self.outbox.undelivered(failure)

    def ask_staff(self, reason: str) -> None:
        """A crisis runs the crisis protocol; whatever else a reply needs, staff read it."""
        if reason == Reason.CRISIS_WORDS or self.staff_calls.is_open():
            self.staff_calls.ask(reason)
        else:
            self.ask_to_read()

    def client_is_safe(self) -> None:
        self.ask_to_read()  # an "OK" to a message that asked nothing is still read by staff

    def keep_reply_for_review(self, text: str) -> None:
        self.reply_for_review = text

    def set_opted_out(self, opted_out: bool) -> None:
        self.outbox.opted_out = opted_out
        if not opted_out:
            return
        self.outbox.withdraw(self.outbox.client_tasks)  # STOP is honoured at once
        if self.state is SeriesState.ACTIVE:
            self.state, self.why = SeriesState.STOPPED, "client opted out"
            self.trail.record("series_stopped", actor=Actor.CLIENT, outcome=self.why)

    def say_to_client(self, kind: str) -> None:
        """Only what the client asked for (HELP, START): no reply is answered otherwise."""
        if kind in ("help", "opted_in"):
            self.outbox.to_client(kind)

    def tell_paged_staff_of_reply(self, kind: str) -> None:
        if self.staff_calls.is_open():
            assert self.staff_calls.escalation is not None
            self.staff_calls.escalation.tell_everyone_paged("staff_client_replied", reply=kind)

    def choose_slot(self, index: int) -> None:
        """No slots are offered in a series."""

    def decline_offer(self) -> None:
        """No offer is made in a series."""

    def ask_to_read(self) -> None:
        """The reviewer hears at once that a reply waits; unread by the business-day
        deadline, the escalation chain is paged to read it."""
        if self.replying is not None:
            self.reply_for_review = self.replying.text  # the newest reply is the one to read
        if self.review_due is None:
            self.review_due = self.options.business_hours.deadline(
                workflow.now(), self.options.review_within, self.policy.timezone)
            self.watch_review()
        reviewer = self.options.reviewer_for(self.policy)
        self.trail.record("reply_for_review", recipient=reviewer and staff_recipient(reviewer),
                          outcome="staff to read", detail={"due": self.review_due.isoformat()})
        if reviewer is not None:
            self.outbox.to_staff("staff_caring_reply", reviewer, self.trail.workflow_id,
                                 due=local_label(self.review_due, self.policy.timezone))

    def watch_review(self) -> None:
        async def until_read() -> None:
            assert self.review_due is not None
            if await wait_until(self.review_due, lambda: self.review_due is None):
                return
            self.review_due = None
            self.trail.record("review_overdue", outcome="unread by its deadline")
            self.staff_calls.ask(Reason.NEEDS_REVIEW)

        asyncio.create_task(until_read())

    # ------------------------------------------------------------------ staff

    @workflow.update
    def acknowledge(self, ack: Acknowledge) -> ActionResult:
        """Take the open escalation, or, with none open, say the waiting reply was read."""
        esc = self.staff_calls.escalation
        if self.staff_calls.is_open():
            assert esc is not None
            refuse(self.staff_problem(ack.staff_id) or (
                f"already acknowledged by {esc.state.acknowledged_by}" if esc.acknowledged
                else "that code does not match this series' escalation"
                if ack.code is not None and ack.code != esc.state.code else None))
            esc.acknowledge(ack.staff_id)
            self.trail.record("acknowledged", actor=Actor.STAFF,
                              recipient=staff_recipient(ack.staff_id),
                              outcome=f"level {esc.state.level}")
            return self.action_result(f"acknowledged by {ack.staff_id}")
        refuse(self.staff_problem(ack.staff_id) or (
            "nothing to acknowledge: no escalation is open and no reply is waiting"
            if self.review_due is None else None))
        self.review_due = None
        self.trail.record("reply_read", actor=Actor.STAFF,
                          recipient=staff_recipient(ack.staff_id))
        return self.action_result(f"reply read by {ack.staff_id}")

    @workflow.update
    def resolve(self, resolution: Resolve) -> ActionResult:
        refuse(self.staff_problem(resolution.staff_id) or (
            None if self.staff_calls.is_open() else "nothing to resolve: no escalation is open"))
        esc = self.staff_calls.escalation
        assert esc is not None
        self.trail.record("resolved", actor=Actor.STAFF,
                          recipient=staff_recipient(resolution.staff_id),
                          outcome=resolution.outcome.value,
                          detail={"note": "recorded"} if resolution.note else None)
        if resolution.note:
            self.trail.keep_note("resolution_note", resolution.staff_id, resolution.note)
        esc.close(resolution.staff_id, resolution.outcome)
        esc.tell_everyone_paged("staff_resolved")
        return self.action_result(f"resolved by {resolution.staff_id}: {resolution.outcome}")

    @workflow.update
    def stop(self, stop: Cancel) -> ActionResult:
        """No more messages. An open escalation stays open: stopping the messages never
        silences a page; staff resolve it as usual."""
        refuse(self.staff_problem(stop.staff_id) or (
            f"this series has {self.state.value}: {self.why}" if self.stopped() else None))
        self.state, self.why = SeriesState.STOPPED, "stopped by staff"
        # The reason is staff free text: sealed beside the trail, never in it.
        self.trail.record("series_stopped", actor=Actor.STAFF,
                          recipient=staff_recipient(stop.staff_id), outcome=self.why,
                          detail={"reason": "recorded"})
        self.trail.keep_note("cancel_reason", stop.staff_id, stop.reason)
        self.outbox.withdraw(self.outbox.client_tasks)
        return self.action_result(f"stopped by {stop.staff_id}")

    @workflow.update(name="cancel")
    def cancel(self, cancellation: Cancel) -> ActionResult:
        """A follow-up's cancel, sent to its series, stops the series."""
        return self.stop(cancellation)

    def staff_problem(self, staff_id: str) -> str | None:
        return staff_problem(self.policy, staff_id)

    # ------------------------------------------------------------------ what people read

    def phase(self) -> Phase:
        return self.staff_calls.phase_or(Phase.CLOSED if self.closed else Phase.CARING_CONTACTS)

    def view(self) -> FollowUpView:
        esc = self.staff_calls.escalation
        deadline, reason = ((self.next_send_at, "caring contact")
                            if self.next_send_at is not None
                            else (self.review_due, "reply to read") if self.review_due
                            else (None, None))
        return FollowUpView(
            workflow_id=self.trail.workflow_id, clinic_id=self.event.clinic_id,
            risk_level=self.event.risk_level, departed_at=self.event.departed_at,
            phase=self.phase(), next_deadline=deadline, next_deadline_reason=reason,
            opted_out=self.outbox.opted_out, channel=self.outbox.channel,
            escalation=esc and esc.state.model_copy(deep=True),
            reply_for_review=self.reply_for_review,
            closed_reason=self.why if self.closed else None,
            caring_contacts=CaringContactsView(
                series_id=self.trail.workflow_id, state=self.state, why=self.why,
                next_send_at=self.next_send_at, messages_sent=self.next_message,
                messages_planned=len(self.options.schedule), review_due=self.review_due),
            trail_length=len(self.trail.entries),
        )
