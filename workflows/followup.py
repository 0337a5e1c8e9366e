"""DepartureFollowUp: the clinic's protocol for a client who left a session upset.

Read ``run`` top to bottom: triage, check in, wait for a reply, escalate, offer to
reschedule, close. Client replies arrive as a signal and are acted on between steps;
staff acknowledge, resolve and cancel through updates. Every step is sealed into the
hash-chained trail and written to the audit store as it happens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.crisis import mentions_crisis
    from workflows.models import (
        Acknowledge,
        ActionResult,
        Actor,
        BookingConfirmation,
        BookingRequest,
        Cancel,
        CarriedOver,
        Channel,
        ClientReply,
        DeliveryFailure,
        EscalatedFrom,
        EscalationState,
        FollowUpInput,
        FollowUpOutcome,
        FollowUpStatus,
        FollowUpView,
        LinkAction,
        OutboundMessage,
        Phase,
        ResolutionOutcome,
        Resolve,
        RiskLevel,
        StaffNote,
    )
    from workflows.outreach import SEND_DEADLINE, Outreach, Reason
    from workflows.policy import Target
    from workflows.replies import ReplyKind, classify
    from workflows.trail import TrailBuilder


ACK_CODE = SearchAttributeKey.for_keyword("AftercareAckCode")
# Where a running follow-up stands, for operators counting open follow-ups by phase.
PHASE = SearchAttributeKey.for_keyword("AftercarePhase")
ACTION_REFUSED = "ActionRefused"
T = TypeVar("T")
SLOT_LETTERS = "ABCDE"
# How long a follow-up whose history grew long waits for its sends and trail to settle
# before it hands on to a new run; past that it pages on and tries at the next round.
HAND_ON_PATIENCE = timedelta(seconds=10)


def nobody_reachable(sends: list[asyncio.Task]) -> bool:
    """Every page of a level has failed for good: there is no one there to wait for."""
    return all(t.done() and not t.cancelled() and not t.result() for t in sends)


def refuse_unless_allowed(check: Callable[[T], None], action: T) -> None:
    """Refuse a staff action by failing its update, not by a validator: a rejected update
    leaves nothing in the history, and one arriving beside other work made the workflow
    act in a different order on replay than it had live (a nondeterminism error). A failed
    update is in the history, so replay sees exactly what happened."""
    try:
        check(action)
    except ValueError as err:
        raise ApplicationError(str(err), type=ACTION_REFUSED, non_retryable=True) from None


class FollowUpClosed(Exception):
    """Staff cancelled the follow-up: stop wherever the protocol is."""


@workflow.defn
class DepartureFollowUp(Outreach):
    @workflow.init
    def __init__(self, input: FollowUpInput) -> None:
        self.event = input.event
        self.policy = input.policy
        self.client = input.event.client
        self.language = self.policy.language(self.client.language)
        self.trail = TrailBuilder(workflow.info().workflow_id)
        self.phase = Phase.RECEIVED
        self.channel = self.client.preferred_channel
        self.inbox: list[ClientReply] = []
        self.failed_deliveries: list[DeliveryFailure] = []
        self.sent: dict[str, tuple[str, OutboundMessage]] = {}
        self.messages_sent = 0
        self.opted_out = False
        self.client_responded = False
        self.client_safe = False
        self.unreachable = False
        self.pending_reason: str | None = None
        self.reply_for_review: str | None = None
        self.escalation: EscalationState | None = None
        self.resolution: Resolve | None = None
        self.cancellation: Cancel | None = None
        self.slots: list[datetime] = []
        self.chosen_slot: datetime | None = None
        self.declined = False
        self.next_deadline: datetime | None = None
        self.next_deadline_reason: str | None = None
        self.closed_reason: str | None = None
        self.safety_patched = False
        self.in_flight: list[asyncio.Task] = []
        self.pages_in_flight: list[asyncio.Task] = []
        self.contact_noticed: set[str] = set()
        self.last_delivery = {}
        self.acting_on_reply = False
        self.restart_chain = False
        self.client_sends: list[asyncio.Task] = []
        self.trail_by_activity = False
        self.phase_searchable = False
        self.trail_stored = self.trail_refused = 0
        self.pending_notes = []
        self.published_view: FollowUpView | None = None
        self.view_revision = 0
        self.bounded_history = False
        self.escalated_from: EscalatedFrom = "protocol"
        self.carried_clock: datetime | None = None
        if input.carried_over is not None:
            self.take_over(input.carried_over)

    # ------------------------------------------------------------------ the protocol

    @workflow.run
    async def run(self, input: FollowUpInput) -> FollowUpOutcome:
        self.safety_patched = workflow.patched("every-reply-acted-on")
        self.trail_by_activity = workflow.patched("trail-written-from-accepted-tasks")
        self.phase_searchable = workflow.patched("phase-in-search-attributes")
        self.bounded_history = workflow.patched("continue-as-new-when-long")
        if self.trail_by_activity:
            asyncio.create_task(self.keep_trail_written())
        if self.safety_patched:
            # Replies are acted on the moment they arrive, whatever the protocol is doing.
            asyncio.create_task(self.act_on_replies_as_they_come())
        carried = input.carried_over
        if carried is None:
            await self.record("received", detail={"risk_level": self.event.risk_level.value})
        else:
            await self.record("continued", outcome="in a new run: the history had grown long",
                              detail={"entries_carried": str(len(carried.trail))})
        try:
            if carried is None or carried.escalated_from != "listening":
                await self.protocol(carried)
            if self.safety_patched:
                await self.keep_listening(
                    resuming=carried is not None and carried.escalated_from == "listening")
        except FollowUpClosed:
            if self.escalation is not None and self.escalation.resolved_by is None:
                await self.tell_everyone_paged("staff_cancelled")
        return await self.close()

    async def protocol(self, carried: CarriedOver | None) -> None:
        """Check in, wait for a reply, escalate if needed, then offer to reschedule. A run
        that carries an escalation over finishes it and goes on from where it was opened."""
        if carried is not None:
            await self.finish_escalation()
        elif self.event.risk_level is RiskLevel.IMMINENT:
            await self.escalate(Reason.IMMINENT_RISK)
        else:
            await self.check_in()
            await self.wait_for_reply()
            if self.pending_reason:
                await self.escalate(self.pending_reason)
        if self.escalated_from == "reschedule":
            return
        if self.may_offer_reschedule():
            await self.offer_reschedule()
            if self.pending_reason:
                self.escalated_from = "reschedule"
                await self.escalate(self.pending_reason)

    async def check_in(self) -> None:
        """Wait the policy's delay for this risk, outside quiet hours, then ask."""
        delay = self.policy.checkin_delay.for_risk(self.event.risk_level)
        due = max(workflow.now(), self.event.departed_at + delay)
        self.enter(Phase.WAITING_TO_CHECK_IN)
        await self.record("checkin_scheduled", detail={"due": due.isoformat()})
        await self.wait_until(due, "check-in", self.stop_waiting_for_reply)
        if self.quiet_hours_protect_client() or not self.safety_patched:
            due = await self.after_quiet_hours("checkin")
            await self.wait_until(due, "check-in after quiet hours", self.stop_waiting_for_reply)
        if self.stop_waiting_for_reply():
            return
        if self.safety_patched:
            # The window's clock starts now, whether or not a provider is answering.
            await self.say_to_client("checkin", links=self.reply_links(),
                               deadline=self.response_window_end(workflow.now()),
                               page_if_unreachable=True)
            return
        await self.message_client("checkin", links=self.reply_links())
        if self.unreachable:
            self.pending_reason = Reason.UNREACHABLE

    async def wait_for_reply(self) -> None:
        """Remind until the response window ends; a safe reply or a reason to page ends it.

        Only a safe reply means safe: help, opt-in or any other text keeps the clock going.
        """
        if self.stop_waiting_for_reply():
            return
        self.enter(Phase.AWAITING_REPLY)
        started = workflow.now()
        window_end = self.response_window_end(started)
        plain_end = started + self.policy.response_window.for_risk(self.event.risk_level)
        if window_end > plain_end:
            await self.record("response_window_extended", outcome="quiet hours",
                              detail={"until": window_end.isoformat()})
        reminder_times = [self.awake_after(started, offset)
                          for offset in sorted(self.policy.reminders)]
        for number, reminder_at in enumerate(reminder_times):
            if reminder_at >= window_end:
                break
            await self.wait_until(reminder_at, "reminder", self.stop_waiting_for_reply)
            if self.stop_waiting_for_reply():
                return
            if self.opted_out or (not self.safety_patched and self.quiet_hours_now()):
                await self.record("reminder_skipped", outcome="opted out" if self.opted_out
                                  else "quiet hours")
                continue
            # A reminder not accepted before the next one (or the window's end) is dropped.
            next_moment = min([window_end, *reminder_times[number + 1:]])
            await self.say_to_client("reminder", links=self.reply_links(), deadline=next_moment)
        await self.wait_until(window_end, "response window ends", self.stop_waiting_for_reply)
        # A client who opted out at low or moderate risk has answered: STOP is honoured.
        answered = self.opted_out if self.safety_patched else self.client_responded
        if not self.stop_waiting_for_reply() and not answered:
            await self.record("no_reply", outcome="response window ended")
            self.pending_reason = Reason.NO_REPLY

    async def escalate(self, reason: str) -> None:
        """Walk the escalation chain until someone acknowledges, then wait for resolution."""
        self.pending_reason = None
        self.enter(Phase.ESCALATING)
        esc = self.escalation = EscalationState(reason=reason, code=self.new_code())
        await self.record("escalation_started", outcome=reason, detail={"code": esc.code})
        esc.started_seq = len(self.trail.entries)
        # Staff answer a page by texting "ACK <code>": the code finds this follow-up.
        workflow.upsert_search_attributes([ACK_CODE.value_set(esc.code)])
        if reason in (Reason.IMMINENT_RISK, Reason.CRISIS_WORDS):
            await self.say_to_client("crisis_resources")
        await self.finish_escalation()

    async def finish_escalation(self) -> None:
        """Page until someone acknowledges, then wait for the escalation to be resolved."""
        esc = self.escalation
        assert esc is not None
        if self.safety_patched:
            await self.page_until_acknowledged(esc)
        else:
            await self.walk_chain_once_more_at_most(esc)
        self.enter(Phase.AWAITING_RESOLUTION)
        chain = self.policy.escalation
        while not self.resolved():
            since = await self.hand_on_if_long(chain.resolve_reminder)
            await self.wait_until(since + chain.resolve_reminder, "resolution",
                                  self.resolved)
            if not self.resolved():
                if self.safety_patched:
                    self.in_background(self.remind_acknowledger())
                else:
                    await self.remind_acknowledger()
        await self.tell_everyone_paged("staff_resolved")

    async def page_until_acknowledged(self, esc: EscalationState) -> None:
        """Page level after level, each on its own clock; once every round went unanswered,
        alert operators and page the chain again from level 1 on the policy's cadence. A
        crisis text starts the walk again from level 1 at once."""
        chain = self.policy.escalation
        rounds_before_alert = chain.repeats + 1

        def answered_or_restarted() -> bool:
            return self.acknowledged() or self.restart_chain

        while not self.acknowledged():
            if self.restart_chain:
                self.restart_chain, esc.round = False, 0
            if esc.round >= rounds_before_alert:
                since = await self.hand_on_if_long(chain.repage_every)
            esc.round += 1
            if esc.round > rounds_before_alert:
                await self.wait_until(since + chain.repage_every, "paging again",
                                      answered_or_restarted)
                if answered_or_restarted():
                    continue
                await self.record("escalation_repaged", outcome=f"round {esc.round}")
            for esc.level, level in enumerate(chain.levels, start=1):
                paged_at = workflow.now()
                sends = self.start_paging(level, esc.reason)
                # Staff pages are withdrawn once someone acknowledges; a notice to the
                # emergency contact is not.
                self.pages_in_flight.extend(task for target, task in sends.items()
                                            if target is not Target.EMERGENCY_CONTACT)
                level_sends = list(sends.values())
                await self.wait_until(
                    paged_at + chain.ack_timeout_for(level), "acknowledgement",
                    lambda sends=level_sends: answered_or_restarted() or nobody_reachable(sends))
                if answered_or_restarted():
                    break
                if not nobody_reachable(level_sends):
                    await self.record("ack_timeout",
                                      outcome=f"level {esc.level} did not acknowledge")
            if esc.round == rounds_before_alert and not answered_or_restarted():
                esc.exhausted = True
                await self.record("escalation_unacknowledged",
                                  outcome="every level paged; paging again until someone "
                                  "acknowledges")
                # Operators alert on this log line and on aftercare_escalations{event=
                # "exhausted"}, which the worker counts from this trail entry.
                workflow.logger.error("escalation unacknowledged after every level was paged",
                                      extra={"workflow_id": self.trail.workflow_id})

    async def walk_chain_once_more_at_most(self, esc: EscalationState) -> None:
        """The walk follow-ups started before "every-reply-acted-on" keep: a page waits
        for its delivery, and an exhausted chain waits without paging again."""
        chain = self.policy.escalation
        for esc.round in range(1, chain.repeats + 2):
            for esc.level, level in enumerate(chain.levels, start=1):
                if not await self.page_level(level, esc.reason):
                    continue  # nobody reachable at this level: the next one, at once
                await self.wait_until(workflow.now() + chain.ack_timeout_for(level),
                                      "acknowledgement", self.acknowledged)
                if self.acknowledged():
                    break
                await self.record("ack_timeout", outcome=f"level {esc.level} did not acknowledge")
            if self.acknowledged():
                break
        if not self.acknowledged():
            esc.exhausted = True
            await self.record("escalation_unacknowledged",
                              outcome="every level paged; still waiting for an acknowledgement")
            await self.wait_until(None, "acknowledgement", self.acknowledged)

    async def keep_listening(self, *, resuming: bool = False) -> None:
        """The protocol is done, but for a while a text from the client still reaches the
        clinic: a crisis pages, anything else needing a person is paged to be read. A run
        that carries over an escalation opened while listening finishes it first."""
        if resuming:
            await self.finish_escalation()
        else:
            self.enter(Phase.LISTENING)
            until = workflow.now() + self.policy.listen_after_close
            await self.record("listening", outcome=self.closing_reason(),
                              detail={"until": until.isoformat()})
            if not await self.heard_from_client_by(until):
                return
            await self.escalate_while_listening()
        while True:
            self.enter(Phase.LISTENING)
            if not await self.heard_from_client_by(
                    workflow.now() + self.policy.listen_after_close):
                return
            await self.escalate_while_listening()

    async def heard_from_client_by(self, until: datetime) -> bool:
        """Listen until ``until``; True when the client wrote something staff must see."""
        await self.wait_until(until, "listening for the client",
                              lambda: bool(self.pending_reason))
        await self.settle()
        return bool(self.pending_reason)

    async def escalate_while_listening(self) -> None:
        assert self.pending_reason is not None
        self.escalated_from = "listening"
        await self.escalate(self.pending_reason)

    async def offer_reschedule(self) -> None:
        """Offer slots or a booking link; book the chosen slot and confirm it."""
        options = self.policy.reschedule
        self.enter(Phase.OFFERING_RESCHEDULE)
        due = await self.after_quiet_hours("reschedule_offer")
        await self.wait_until(due, "reschedule offer after quiet hours", self.offer_over)
        if self.pending_reason and self.patched("no-reschedule-offer-once-staff-needed"):
            return  # the client wrote something staff must see first: page, don't sell
        if self.safety_patched:
            # The offer follows what the client was just told ("glad you're OK"), not before.
            await workflow.wait_condition(lambda: all(t.done() for t in self.client_sends))
        self.slots = options.slot_times(workflow.now(), self.policy.timezone)
        await self.message_client("reschedule_offer", slots=self.describe_slots(),
                                  links=[LinkAction(label=f"Book {self.slot_label(i)}",
                                                    action="reschedule", value=SLOT_LETTERS[i])
                                         for i in range(len(self.slots))])
        await self.wait_until(workflow.now() + options.offer_window, "reschedule choice",
                              self.offer_over)
        if self.chosen_slot is None:
            await self.record("reschedule_not_chosen",
                              outcome="declined" if self.declined else "no choice in time")
            return
        await self.book(self.chosen_slot)

    async def close(self) -> FollowUpOutcome:
        if self.safety_patched:
            await self.settle()
        self.enter(Phase.CLOSED)
        self.next_deadline = self.next_deadline_reason = None
        self.closed_reason = self.closing_reason()
        await self.record("closed", outcome=self.closed_reason)
        await self.write_trail()
        if self.trail_by_activity:
            await workflow.wait_condition(lambda: self.audit_backlog() == 0)
        if self.safety_patched:
            await workflow.wait_condition(workflow.all_handlers_finished)
        return FollowUpOutcome(
            workflow_id=self.trail.workflow_id,
            closed_reason=self.closed_reason,
            client_safe=self.client_safe,
            escalation=self.escalation,
            rescheduled_slot=self.chosen_slot,
            trail=self.trail.entries,
        )

    async def settle(self) -> None:
        """Let every reply in hand be acted on and every send in flight finish."""
        for task in self.pages_in_flight:
            if self.resolved() or self.cancellation is not None:
                task.cancel()  # nobody needs paging any more
        await workflow.wait_condition(
            lambda: not (self.inbox or self.failed_deliveries or self.acting_on_reply)
            and all(task.done() for task in self.in_flight))
        for task in self.in_flight:
            if not task.cancelled():
                task.result()  # a defect in a send must fail loudly, not vanish with it
        self.in_flight.clear()
        self.pages_in_flight.clear()

    # ------------------------------------------------------------------ what people send

    @workflow.signal
    def client_reply(self, reply: ClientReply) -> None:
        self.inbox.append(reply)

    @workflow.signal
    def delivery_failed(self, failure: DeliveryFailure) -> None:
        self.failed_deliveries.append(failure)

    @workflow.update
    async def acknowledge(self, ack: Acknowledge) -> ActionResult:
        refuse_unless_allowed(self.validate_acknowledge, ack)
        esc = self.escalation
        assert esc is not None
        esc.acknowledged_by, esc.acknowledged_at = ack.staff_id, workflow.now()
        await self.record("acknowledged", actor=Actor.STAFF, recipient=f"staff:{ack.staff_id}",
                          outcome=f"level {esc.level}")
        await self.write_trail()
        return self.action_result(f"acknowledged by {ack.staff_id}")

    def validate_acknowledge(self, ack: Acknowledge) -> None:
        self.refuse_if_closed()
        self.refuse_unless_staff(ack.staff_id)
        esc = self.escalation
        if esc is None or esc.resolved_by:
            raise ValueError("nothing to acknowledge: no escalation is open")
        if esc.acknowledged_by:
            raise ValueError(f"already acknowledged by {esc.acknowledged_by}")
        if ack.code is not None and ack.code != esc.code:
            raise ValueError("that code does not match this follow-up's escalation")

    @workflow.update
    async def resolve(self, resolution: Resolve) -> ActionResult:
        """Resolve the open escalation or, before any, the follow-up itself."""
        refuse_unless_allowed(self.validate_resolve, resolution)
        if resolution.outcome is ResolutionOutcome.REACHED_CLIENT:
            self.client_safe = True
        esc = self.escalation
        if esc is not None and esc.resolved_by is None:
            if not esc.acknowledged_by:
                esc.acknowledged_by, esc.acknowledged_at = resolution.staff_id, workflow.now()
            esc.resolved_by, esc.resolved_at = resolution.staff_id, workflow.now()
            esc.outcome = resolution.outcome
        else:
            self.resolution = resolution
        await self.record("resolved", actor=Actor.STAFF,
                          recipient=f"staff:{resolution.staff_id}",
                          outcome=resolution.outcome.value,
                          detail={"note": "recorded"} if resolution.note else None)
        if resolution.note:
            self.keep_staff_note("resolution_note", resolution.staff_id, resolution.note)
        await self.write_trail()
        return self.action_result(f"resolved by {resolution.staff_id}: {resolution.outcome}")

    def validate_resolve(self, resolution: Resolve) -> None:
        self.refuse_if_closed()
        self.refuse_unless_staff(resolution.staff_id)
        esc = self.escalation
        if esc is not None and esc.resolved_by is None:
            return
        resolver = self.resolution.staff_id if self.resolution else esc and esc.resolved_by
        if resolver:
            raise ValueError(f"already resolved by {resolver}")

    @workflow.update
    async def cancel(self, cancel: Cancel) -> ActionResult:
        refuse_unless_allowed(self.validate_cancel, cancel)
        self.cancellation = cancel
        if self.trail_by_activity:
            # The reason is staff free text: sealed beside the trail, never in it.
            await self.record("cancelled", actor=Actor.STAFF,
                              recipient=f"staff:{cancel.staff_id}", detail={"reason": "recorded"})
            self.keep_staff_note("cancel_reason", cancel.staff_id, cancel.reason)
        else:
            await self.record("cancelled", actor=Actor.STAFF,
                              recipient=f"staff:{cancel.staff_id}", outcome=cancel.reason)
        await self.write_trail()
        return self.action_result(f"cancelled by {cancel.staff_id}")

    def validate_cancel(self, cancel: Cancel) -> None:
        self.refuse_if_closed()
        self.refuse_unless_staff(cancel.staff_id)
        if self.cancellation is not None:
            raise ValueError(f"already cancelled by {self.cancellation.staff_id}")

    def view(self) -> FollowUpView:
        return FollowUpView(
            workflow_id=self.trail.workflow_id,
            clinic_id=self.event.clinic_id,
            risk_level=self.event.risk_level,
            departed_at=self.event.departed_at,
            phase=self.phase,
            next_deadline=self.next_deadline,
            next_deadline_reason=self.next_deadline_reason,
            opted_out=self.opted_out,
            client_safe=self.client_safe,
            channel=self.channel,
            escalation=self.escalation and self.escalation.model_copy(deep=True),
            reply_for_review=self.reply_for_review,
            closed_reason=self.closed_reason,
            trail_length=len(self.trail.entries),
        )

    @workflow.query
    def status(self) -> FollowUpStatus:
        """For operators and tests: people read the view the audit store keeps."""
        return FollowUpStatus(**self.view().model_dump(), audit_backlog=self.audit_backlog(),
                              trail=self.trail.entries)

    # ------------------------------------------------------------------ replies

    async def act_on_replies_as_they_come(self) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self.inbox or self.failed_deliveries))
            self.acting_on_reply = True
            try:
                await self.act_on_replies()
            finally:
                self.acting_on_reply = False

    async def act_on_replies(self) -> None:
        while self.inbox:
            await self.act_on_reply(self.inbox.pop(0))
        while self.failed_deliveries:
            await self.fall_back(self.failed_deliveries.pop(0))

    async def act_on_reply(self, reply: ClientReply) -> None:
        offering = self.phase is Phase.OFFERING_RESCHEDULE and self.chosen_slot is None
        kind, slot = classify(reply.text, self.crisis_words(),
                              SLOT_LETTERS[: len(self.slots)] if offering else "",
                              **({"recognise_crisis": mentions_crisis}
                                 if self.safety_patched else {}))
        self.client_responded = True
        await self.record("reply_received", actor=Actor.CLIENT, channel=str(reply.channel),
                          provider_message_id=reply.provider_message_id, outcome=kind.value)
        if (self.escalation_open() and kind is not ReplyKind.CRISIS
                and self.patched("tell-paged-staff-of-client-replies")):
            # Whoever is trying to reach the client should know they answered; the
            # escalation still waits for staff to close it.
            await self.tell_everyone_paged("staff_client_replied", reply=kind.value)
        if kind is ReplyKind.CRISIS:
            await self.ask_staff(Reason.CRISIS_WORDS)
        elif kind is ReplyKind.STOP:
            self.opted_out = True
            if self.event.risk_level in (RiskLevel.HIGH, RiskLevel.IMMINENT):
                await self.ask_staff(Reason.OPTED_OUT_AT_HIGH_RISK)
        elif kind is ReplyKind.START:
            self.opted_out = False
            if self.answers_keyword(reply):
                await self.say_to_client("opted_in", links=self.reply_links())
        elif kind is ReplyKind.SAFE:
            self.client_safe = True
            await self.say_to_client("glad_you_are_ok")
        elif kind is ReplyKind.CALL:
            await self.ask_staff(Reason.CALL_REQUESTED)
            await self.say_to_client("call_requested")
        elif kind is ReplyKind.SLOT and slot is not None:
            self.chosen_slot = self.slots[slot]
        elif kind is ReplyKind.DECLINE:
            self.declined = True
        elif kind is ReplyKind.HELP:
            if self.answers_keyword(reply):
                await self.say_to_client("help", links=self.reply_links())
        else:
            self.reply_for_review = reply.text
            await self.ask_staff(Reason.NEEDS_REVIEW)
            await self.say_to_client("reply_received")

    def answers_keyword(self, reply: ClientReply) -> bool:
        """HELP and START are answered once: by Twilio's opt-out handling when the text came
        by SMS and the policy says Twilio answers them, otherwise by us."""
        return not (self.safety_patched and reply.channel == Channel.SMS
                    and self.policy.sms_keywords_answered_by_provider)

    async def ask_staff(self, reason: str) -> None:
        """Page for ``reason`` now if a page is already out, else once the current step ends.

        A crisis always pages at once and re-sends the client crisis resources, whatever is
        open: the acknowledger and level 1 hear at once, an unacknowledged chain starts
        again from level 1.
        """
        esc = self.escalation
        if self.safety_patched and reason == Reason.CRISIS_WORDS and (
            self.escalation_open() or self.cancellation is not None
        ):
            await self.page_crisis_now()
            return
        if esc is not None and self.escalation_open():
            if Reason.URGENCY.index(reason) < Reason.URGENCY.index(esc.reason):
                esc.reason = reason
                await self.record("escalation_raised", outcome=reason)
                if reason == Reason.CRISIS_WORDS:
                    await self.message_client("crisis_resources")
                level = self.policy.escalation.levels[max(esc.level, 1) - 1]
                if self.safety_patched:
                    self.pages_in_flight.extend(self.start_paging(level, reason).values())
                else:
                    await self.page_level(level, reason)
            return
        if self.pending_reason is None or (
            Reason.URGENCY.index(reason) < Reason.URGENCY.index(self.pending_reason)
        ):
            self.pending_reason = reason

    async def page_crisis_now(self) -> None:
        esc = self.escalation
        if esc is None:  # cancelled before any escalation: page the first level at once
            esc = self.escalation = EscalationState(reason=Reason.CRISIS_WORDS,
                                                    code=self.new_code(), level=1)
            esc.started_seq = len(self.trail.entries)
        esc.reason = Reason.CRISIS_WORDS
        await self.record("escalation_raised", outcome=Reason.CRISIS_WORDS,
                          detail={"code": esc.code})
        await self.say_to_client("crisis_resources")
        if self.acknowledged() or self.cancellation is not None:
            first = self.policy.escalation.levels[0]
            self.start_paging(first, Reason.CRISIS_WORDS)
            acker = esc.acknowledged_by
            if acker and acker not in {self.policy.staff_for(t, workflow.now())
                                       for t in first.targets}:
                self.in_background(self.page_member(acker, Reason.CRISIS_WORDS))
        else:
            self.restart_chain = True

    async def say_to_client(
        self, kind: str, *, page_if_unreachable: bool = False, **options: object
    ) -> None:
        """Message the client beside the protocol, so no page or timer waits behind it.
        (Follow-ups started before "every-reply-acted-on" wait for each message.)"""
        if not self.safety_patched:
            await self.message_client(kind, **options)
            return

        async def send() -> None:
            if not await self.message_client(kind, **options) and page_if_unreachable:
                await self.ask_staff(Reason.UNREACHABLE)

        self.client_sends.append(self.in_background(send()))

    # ------------------------------------------------------------------ conditions

    def stop_waiting_for_reply(self) -> bool:
        return bool(self.client_safe or self.pending_reason or self.resolution)

    def escalation_open(self) -> bool:
        return self.escalation is not None and self.escalation.resolved_by is None and (
            self.phase in (Phase.ESCALATING, Phase.AWAITING_RESOLUTION))

    def acknowledged(self) -> bool:
        return bool(self.escalation and self.escalation.acknowledged_by)

    def resolved(self) -> bool:
        return bool(self.escalation and self.escalation.resolved_by)

    def offer_over(self) -> bool:
        return self.chosen_slot is not None or self.declined or bool(self.pending_reason)

    def may_offer_reschedule(self) -> bool:
        return (
            self.policy.reschedule.enabled
            and not self.opted_out
            and not self.unreachable
            and (self.client_safe or self.resolved() or self.resolution is not None)
        )

    def closing_reason(self) -> str:
        if self.cancellation:
            return ("cancelled" if self.trail_by_activity
                    else f"cancelled: {self.cancellation.reason}")
        if self.escalation and self.escalation.outcome:
            return f"escalation resolved: {self.escalation.outcome.value}"
        if self.resolution:
            return f"resolved: {self.resolution.outcome.value}"
        if self.client_safe:
            return "client safe"
        if self.opted_out:
            return "client opted out"
        return "client responded"

    def refuse_if_closed(self) -> None:
        if self.phase is Phase.CLOSED or self.cancellation is not None:
            raise ValueError("this follow-up is closed")

    def keep_staff_note(self, kind: str, staff_id: str, text: str) -> None:
        """Staff free text goes to the audit store sealed, under the entry just recorded;
        follow-ups started before "trail-written-from-accepted-tasks" do not keep it."""
        if self.trail_by_activity:
            self.pending_notes.append(StaffNote(audit_seq=len(self.trail.entries), kind=kind,
                                                staff_id=staff_id, text=text))

    def refuse_unless_staff(self, staff_id: str) -> None:
        """An action by someone the clinic does not know would stop the chain for nobody."""
        if staff_id not in self.policy.staff:
            raise ValueError(f"{staff_id} is not a staff member of this clinic")

    def withdraw_pages(self) -> None:
        for task in self.pages_in_flight:
            task.cancel()
        self.pages_in_flight.clear()

    # ------------------------------------------------------------------ continue-as-new

    async def hand_on_if_long(self, next_round_after: timedelta) -> datetime:
        """Between rounds of paging or reminders: when Temporal suggests the history has
        grown long (an escalation paging or waiting for days, a flood of texts), hand on to a
        new run of this follow-up, same workflow id, the trail and the escalation carried
        over. Only once nothing is in flight, so no page, reply or trail entry is left
        behind; if that takes more than a moment (never past the next round), at the next
        round. Returns when the wait before the next round began: the new run keeps that
        clock."""
        since = self.carried_clock or workflow.now()
        self.carried_clock = None
        if not (self.bounded_history and workflow.info().is_continue_as_new_suggested()):
            return since
        try:
            # A crisis text meanwhile must restart the chain at once, not after the patience.
            await workflow.wait_condition(
                lambda: self.nothing_in_flight() or self.restart_chain,
                timeout=min(HAND_ON_PATIENCE, next_round_after))
        except TimeoutError:
            return since
        if not self.nothing_in_flight():
            return since
        assert self.escalation is not None
        workflow.continue_as_new(FollowUpInput(
            event=self.event, policy=self.policy,
            carried_over=CarriedOver(
                escalated_from=self.escalated_from, phase=self.phase, clock=since,
                escalation=self.escalation, trail=self.trail.entries,
                trail_refused=self.trail_refused, channel=self.channel,
                opted_out=self.opted_out, client_responded=self.client_responded,
                client_safe=self.client_safe, unreachable=self.unreachable,
                reply_for_review=self.reply_for_review, messages_sent=self.messages_sent,
                sent=self.sent, last_delivery=self.last_delivery,
                contact_noticed=sorted(self.contact_noticed),
                chosen_slot=self.chosen_slot, declined=self.declined,
            ),
        ))

    def nothing_in_flight(self) -> bool:
        return (not (self.inbox or self.failed_deliveries or self.acting_on_reply
                     or self.pending_reason or self.restart_chain or self.pending_notes)
                and all(task.done() for task in self.in_flight)
                and self.audit_backlog() == 0
                and workflow.all_handlers_finished())

    def take_over(self, carried: CarriedOver) -> None:
        """Start where the previous run of this follow-up handed on."""
        self.escalated_from = carried.escalated_from
        self.carried_clock = carried.clock
        self.phase = carried.phase
        self.escalation = carried.escalation
        self.trail = TrailBuilder(workflow.info().workflow_id, carried.trail)
        self.trail_refused = carried.trail_refused
        self.trail_stored = len(carried.trail) - carried.trail_refused
        self.channel = carried.channel
        self.opted_out = carried.opted_out
        self.client_responded = carried.client_responded
        self.client_safe = carried.client_safe
        self.unreachable = carried.unreachable
        self.reply_for_review = carried.reply_for_review
        self.messages_sent = carried.messages_sent
        self.sent = carried.sent
        self.last_delivery = carried.last_delivery
        self.contact_noticed = set(carried.contact_noticed)
        self.chosen_slot = carried.chosen_slot
        self.declined = carried.declined

    # ------------------------------------------------------------------ mechanics

    def enter(self, phase: Phase) -> None:
        """Move to ``phase``; a running follow-up's phase is searchable (closed ones are
        counted by their execution status instead)."""
        if self.phase_searchable and phase is not Phase.CLOSED:
            workflow.upsert_search_attributes([PHASE.value_set(phase.value)])
        self.phase = phase

    async def wait_until(
        self, deadline: datetime | None, reason: str, done: Callable[[], bool]
    ) -> None:
        """Sleep until ``deadline`` or ``done()``, acting on replies as they arrive."""
        while True:
            if not self.safety_patched:
                await self.act_on_replies()
            if self.cancellation is not None:
                raise FollowUpClosed
            if done():
                return
            remaining = None if deadline is None else deadline - workflow.now()
            if remaining is not None and remaining <= timedelta(0):
                return
            if await self.write_trail():
                continue  # things may have changed while writing: look again before sleeping
            self.next_deadline, self.next_deadline_reason = deadline, reason
            try:
                await workflow.wait_condition(
                    lambda: (not self.safety_patched
                             and bool(self.inbox or self.failed_deliveries))
                    or self.cancellation is not None
                    or done(),
                    timeout=remaining,
                )
            except TimeoutError:
                pass

    def quiet_hours_protect_client(self) -> bool:
        quiet = self.policy.quiet_hours
        return quiet is not None and quiet.protects(self.event.risk_level)

    def awake_after(self, start: datetime, duration: timedelta) -> datetime:
        """``start + duration``, counting only waking hours where quiet hours protect the
        client (follow-ups started before "every-reply-acted-on" count every hour)."""
        quiet = self.policy.quiet_hours
        if not (self.safety_patched and quiet and quiet.protects(self.event.risk_level)):
            return start + duration
        return quiet.awake_deadline(start, duration, self.client.timezone)

    def response_window_end(self, started: datetime) -> datetime:
        return self.awake_after(started,
                                self.policy.response_window.for_risk(self.event.risk_level))

    def quiet_hours_now(self) -> bool:
        quiet = self.policy.quiet_hours
        if quiet is None:
            return False
        return quiet.end_after(workflow.now(), self.client.timezone) is not None

    async def after_quiet_hours(self, kind: str) -> datetime:
        """Now, or when the client's quiet hours end: non-urgent messages wait for it."""
        quiet = self.policy.quiet_hours
        end = quiet.end_after(workflow.now(), self.client.timezone) if quiet else None
        if end is None:
            return workflow.now()
        await self.record(f"{kind}_deferred", outcome="quiet hours",
                          detail={"until": end.isoformat()})
        return end

    async def book(self, slot: datetime) -> None:
        await self.record("reschedule_chosen", actor=Actor.CLIENT, outcome=slot.isoformat())
        if self.policy.reschedule.webhook_url is None:
            await self.record("booking_skipped", outcome="clinic has no booking webhook")
            return
        if not self.safety_patched:
            await self.request_booking(slot)
            return
        # The clinic's webhook may be slow or down: a reply meanwhile still pages at once.
        booking = self.in_background(self.request_booking(slot))
        await self.wait_until(None, "booking", lambda: booking.done() or bool(self.pending_reason))

    async def request_booking(self, slot: datetime) -> None:
        options = self.policy.reschedule
        assert options.webhook_url is not None
        try:
            confirmation = await workflow.execute_activity(
                "request_booking",
                BookingRequest(
                    workflow_id=self.trail.workflow_id, clinic_id=self.event.clinic_id,
                    session_id=self.event.session_id, client_id=self.client.id,
                    slot_start=slot, webhook_url=options.webhook_url,
                ),
                result_type=BookingConfirmation,
                schedule_to_close_timeout=SEND_DEADLINE,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
            )
        except ActivityError:
            await self.record("booking_failed", outcome="clinic booking webhook refused or down")
            await self.ask_staff(Reason.BOOKING_FAILED if self.safety_patched
                                 else Reason.NEEDS_REVIEW)
            return
        await self.record("booking_confirmed", outcome=confirmation.booking_id or "booked")
        await self.say_to_client("booking_confirmed", slot=self.slot_label(
            self.slots.index(slot)))

    # ------------------------------------------------------------------ small helpers

    def crisis_words(self) -> list[str]:
        """The clinic's own crisis phrases: every language's once patched, since a client
        may write in a language other than the one on file."""
        words = self.policy.crisis_words
        if self.safety_patched:
            return [word for phrases in words.values() for word in phrases]
        return words.get(self.language, []) + (
            words.get(self.policy.default_language, [])
            if self.language != self.policy.default_language else []
        )

    def reply_links(self) -> list[LinkAction]:
        return [LinkAction(label="I'm OK", action="reply", value="OK"),
                LinkAction(label="Please call me", action="reply", value="CALL")]

    def new_code(self) -> str:
        return f"{workflow.random().randint(100000, 999999)}"

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

    def action_result(self, message: str) -> ActionResult:
        return ActionResult(workflow_id=self.trail.workflow_id, state=self.phase.value,
                            message=message, view=self.view())
