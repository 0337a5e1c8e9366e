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

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.models import (
        PERMANENT_DELIVERY_FAILURE,
        Acknowledge,
        ActionResult,
        Actor,
        AuditBatch,
        BookingConfirmation,
        BookingRequest,
        Cancel,
        Channel,
        ClientReply,
        Delivery,
        DeliveryFailure,
        EscalationState,
        FollowUpInput,
        FollowUpOutcome,
        FollowUpStatus,
        LinkAction,
        OutboundMessage,
        PageState,
        Phase,
        Resolve,
        ResolutionOutcome,
        RiskLevel,
    )
    from workflows.policy import EscalationLevel, Target
    from workflows.replies import ReplyKind, classify
    from workflows.trail import TrailBuilder


class Reason:
    """Why staff are paged. Safety reasons may reach the emergency contact."""

    IMMINENT_RISK = "imminent risk"
    CRISIS_WORDS = "crisis words in a reply"
    NO_REPLY = "no reply"
    UNREACHABLE = "client unreachable"
    CALL_REQUESTED = "client asked for a call"
    NEEDS_REVIEW = "client reply needs reading"
    OPTED_OUT_AT_HIGH_RISK = "opted out at high risk"

    SAFETY = {IMMINENT_RISK, CRISIS_WORDS, NO_REPLY, UNREACHABLE}
    # Reasons that reach the consenting emergency contact with the very first page.
    CONTACT_AT_ONCE = {IMMINENT_RISK, CRISIS_WORDS}
    # Which reason wins when a second arrives while a page is out.
    URGENCY = [IMMINENT_RISK, CRISIS_WORDS, UNREACHABLE, NO_REPLY, OPTED_OUT_AT_HIGH_RISK,
               CALL_REQUESTED, NEEDS_REVIEW]


ACK_CODE = SearchAttributeKey.for_keyword("AftercareAckCode")
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=[PERMANENT_DELIVERY_FAILURE],
)
SEND_DEADLINE = timedelta(minutes=10)
AUDIT_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
SLOT_LETTERS = "ABCDE"


class FollowUpClosed(Exception):
    """Staff cancelled the follow-up: stop wherever the protocol is."""


@workflow.defn
class DepartureFollowUp:
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

    # ------------------------------------------------------------------ the protocol

    @workflow.run
    async def run(self, input: FollowUpInput) -> FollowUpOutcome:
        await self.record("received", detail={"risk_level": self.event.risk_level.value})
        try:
            if self.event.risk_level is RiskLevel.IMMINENT:
                await self.escalate(Reason.IMMINENT_RISK)
            else:
                await self.check_in()
                await self.wait_for_reply()
                if self.pending_reason:
                    await self.escalate(self.pending_reason)
            if self.may_offer_reschedule():
                await self.offer_reschedule()
                if self.pending_reason:
                    await self.escalate(self.pending_reason)
        except FollowUpClosed:
            if self.escalation is not None and self.escalation.resolved_by is None:
                await self.tell_everyone_paged("staff_cancelled")
        return await self.close()

    async def check_in(self) -> None:
        """Wait the policy's delay for this risk, outside quiet hours, then ask."""
        delay = self.policy.checkin_delay.for_risk(self.event.risk_level)
        due = max(workflow.now(), self.event.departed_at + delay)
        self.phase = Phase.WAITING_TO_CHECK_IN
        await self.record("checkin_scheduled", detail={"due": due.isoformat()})
        await self.wait_until(due, "check-in", self.stop_waiting_for_reply)
        due = await self.after_quiet_hours("checkin")
        await self.wait_until(due, "check-in after quiet hours", self.stop_waiting_for_reply)
        if self.stop_waiting_for_reply():
            return
        await self.message_client("checkin", links=self.reply_links())
        if self.unreachable:
            self.pending_reason = Reason.UNREACHABLE

    async def wait_for_reply(self) -> None:
        """Remind until the response window ends; a reply or a reason to page ends it."""
        if self.stop_waiting_for_reply():
            return
        self.phase = Phase.AWAITING_REPLY
        started = workflow.now()
        window_end = started + self.policy.response_window.for_risk(self.event.risk_level)
        for offset in sorted(self.policy.reminders):
            reminder_at = started + offset
            if reminder_at >= window_end:
                break
            await self.wait_until(reminder_at, "reminder", self.stop_waiting_for_reply)
            if self.stop_waiting_for_reply():
                return
            if self.opted_out or self.quiet_hours_now():
                await self.record("reminder_skipped", outcome="opted out" if self.opted_out
                                  else "quiet hours")
                continue
            await self.message_client("reminder", links=self.reply_links())
        await self.wait_until(window_end, "response window ends", self.stop_waiting_for_reply)
        if not self.stop_waiting_for_reply() and not self.client_responded:
            await self.record("no_reply", outcome="response window ended")
            self.pending_reason = Reason.NO_REPLY

    async def escalate(self, reason: str) -> None:
        """Walk the escalation chain until someone acknowledges, then wait for resolution."""
        self.pending_reason = None
        self.phase = Phase.ESCALATING
        esc = self.escalation = EscalationState(reason=reason, code=self.new_code())
        await self.record("escalation_started", outcome=reason, detail={"code": esc.code})
        esc.started_seq = len(self.trail.entries)
        # Staff answer a page by texting "ACK <code>": the code finds this follow-up.
        workflow.upsert_search_attributes([ACK_CODE.value_set(esc.code)])
        if reason in (Reason.IMMINENT_RISK, Reason.CRISIS_WORDS):
            await self.message_client("crisis_resources")
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
        self.phase = Phase.AWAITING_RESOLUTION
        while not self.resolved():
            await self.wait_until(workflow.now() + chain.resolve_reminder, "resolution",
                                  self.resolved)
            if not self.resolved():
                await self.remind_acknowledger()
        await self.tell_everyone_paged("staff_resolved")

    async def offer_reschedule(self) -> None:
        """Offer slots or a booking link; book the chosen slot and confirm it."""
        options = self.policy.reschedule
        self.phase = Phase.OFFERING_RESCHEDULE
        due = await self.after_quiet_hours("reschedule_offer")
        await self.wait_until(due, "reschedule offer after quiet hours", self.offer_over)
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
        self.phase = Phase.CLOSED
        self.next_deadline = self.next_deadline_reason = None
        self.closed_reason = self.closing_reason()
        await self.record("closed", outcome=self.closed_reason)
        return FollowUpOutcome(
            workflow_id=self.trail.workflow_id,
            closed_reason=self.closed_reason,
            client_safe=self.client_safe,
            escalation=self.escalation,
            rescheduled_slot=self.chosen_slot,
            trail=self.trail.entries,
        )

    # ------------------------------------------------------------------ what people send

    @workflow.signal
    def client_reply(self, reply: ClientReply) -> None:
        self.inbox.append(reply)

    @workflow.signal
    def delivery_failed(self, failure: DeliveryFailure) -> None:
        self.failed_deliveries.append(failure)

    @workflow.update
    async def acknowledge(self, ack: Acknowledge) -> ActionResult:
        esc = self.escalation
        assert esc is not None
        esc.acknowledged_by, esc.acknowledged_at = ack.staff_id, workflow.now()
        await self.record("acknowledged", actor=Actor.STAFF, recipient=f"staff:{ack.staff_id}",
                          outcome=f"level {esc.level}")
        return self.action_result(f"acknowledged by {ack.staff_id}")

    @acknowledge.validator
    def validate_acknowledge(self, ack: Acknowledge) -> None:
        self.refuse_if_closed()
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
        return self.action_result(f"resolved by {resolution.staff_id}: {resolution.outcome}")

    @resolve.validator
    def validate_resolve(self, resolution: Resolve) -> None:
        self.refuse_if_closed()
        esc = self.escalation
        if esc is not None and esc.resolved_by is None:
            return
        resolver = self.resolution.staff_id if self.resolution else esc and esc.resolved_by
        if resolver:
            raise ValueError(f"already resolved by {resolver}")

    @workflow.update
    async def cancel(self, cancel: Cancel) -> ActionResult:
        self.cancellation = cancel
        await self.record("cancelled", actor=Actor.STAFF, recipient=f"staff:{cancel.staff_id}",
                          outcome=cancel.reason)
        return self.action_result(f"cancelled by {cancel.staff_id}")

    @cancel.validator
    def validate_cancel(self, cancel: Cancel) -> None:
        self.refuse_if_closed()
        if self.cancellation is not None:
            raise ValueError(f"already cancelled by {self.cancellation.staff_id}")

    @workflow.query
    def status(self) -> FollowUpStatus:
        return FollowUpStatus(
            workflow_id=self.trail.workflow_id,
            clinic_id=self.event.clinic_id,
            risk_level=self.event.risk_level,
            phase=self.phase,
            next_deadline=self.next_deadline,
            next_deadline_reason=self.next_deadline_reason,
            opted_out=self.opted_out,
            client_safe=self.client_safe,
            channel=self.channel,
            escalation=self.escalation,
            reply_for_review=self.reply_for_review,
            closed_reason=self.closed_reason,
            trail=self.trail.entries,
        )

    # ------------------------------------------------------------------ replies

    async def act_on_replies(self) -> None:
        while self.inbox:
            await self.act_on_reply(self.inbox.pop(0))
        while self.failed_deliveries:
            await self.fall_back(self.failed_deliveries.pop(0))

    async def act_on_reply(self, reply: ClientReply) -> None:
        offering = self.phase is Phase.OFFERING_RESCHEDULE and self.chosen_slot is None
        kind, slot = classify(reply.text, self.crisis_words(),
                              SLOT_LETTERS[: len(self.slots)] if offering else "")
        self.client_responded = True
        await self.record("reply_received", actor=Actor.CLIENT, channel=str(reply.channel),
                          provider_message_id=reply.provider_message_id, outcome=kind.value)
        if kind is ReplyKind.CRISIS:
            await self.ask_staff(Reason.CRISIS_WORDS)
        elif kind is ReplyKind.STOP:
            self.opted_out = True
            if self.event.risk_level in (RiskLevel.HIGH, RiskLevel.IMMINENT):
                await self.ask_staff(Reason.OPTED_OUT_AT_HIGH_RISK)
        elif kind is ReplyKind.START:
            self.opted_out = False
            await self.message_client("opted_in", links=self.reply_links())
        elif kind is ReplyKind.SAFE:
            self.client_safe = True
            await self.message_client("glad_you_are_ok")
        elif kind is ReplyKind.CALL:
            await self.message_client("call_requested")
            await self.ask_staff(Reason.CALL_REQUESTED)
        elif kind is ReplyKind.SLOT and slot is not None:
            self.chosen_slot = self.slots[slot]
        elif kind is ReplyKind.DECLINE:
            self.declined = True
        elif kind is ReplyKind.HELP:
            await self.message_client("help", links=self.reply_links())
        else:
            self.reply_for_review = reply.text
            await self.message_client("reply_received")
            await self.ask_staff(Reason.NEEDS_REVIEW)

    async def ask_staff(self, reason: str) -> None:
        """Page for ``reason`` now if a page is already out, else once the current step ends."""
        esc = self.escalation
        if esc is not None and not esc.resolved_by and self.phase in (
            Phase.ESCALATING, Phase.AWAITING_RESOLUTION
        ):
            if Reason.URGENCY.index(reason) < Reason.URGENCY.index(esc.reason):
                esc.reason = reason
                await self.record("escalation_raised", outcome=reason)
                if reason == Reason.CRISIS_WORDS:
                    await self.message_client("crisis_resources")
                await self.page_level(self.policy.escalation.levels[max(esc.level, 1) - 1],
                                      reason)
            return
        if self.pending_reason is None or (
            Reason.URGENCY.index(reason) < Reason.URGENCY.index(self.pending_reason)
        ):
            self.pending_reason = reason

    # ------------------------------------------------------------------ conditions

    def stop_waiting_for_reply(self) -> bool:
        return bool(self.client_safe or self.pending_reason or self.resolution)

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
            return f"cancelled: {self.cancellation.reason}"
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

    # ------------------------------------------------------------------ mechanics

    async def wait_until(
        self, deadline: datetime | None, reason: str, done: Callable[[], bool]
    ) -> None:
        """Sleep until ``deadline`` or ``done()``, acting on replies as they arrive."""
        while True:
            await self.act_on_replies()
            if self.cancellation is not None:
                raise FollowUpClosed
            if done():
                return
            remaining = None if deadline is None else deadline - workflow.now()
            if remaining is not None and remaining <= timedelta(0):
                return
            self.next_deadline, self.next_deadline_reason = deadline, reason
            try:
                await workflow.wait_condition(
                    lambda: bool(self.inbox or self.failed_deliveries)
                    or self.cancellation is not None
                    or done(),
                    timeout=remaining,
                )
            except asyncio.TimeoutError:
                pass

    def quiet_hours_now(self) -> bool:
        quiet = self.policy.quiet_hours
        return quiet is not None and quiet.end_after(workflow.now(), self.client.timezone) is not None

    async def after_quiet_hours(self, kind: str) -> datetime:
        """Now, or when the client's quiet hours end: non-urgent messages wait for it."""
        quiet = self.policy.quiet_hours
        end = quiet.end_after(workflow.now(), self.client.timezone) if quiet else None
        if end is None:
            return workflow.now()
        await self.record(f"{kind}_deferred", outcome="quiet hours",
                          detail={"until": end.isoformat()})
        return end

    async def message_client(
        self, kind: str, *, links: list[LinkAction] | None = None, **extra: str
    ) -> None:
        """Send one templated message to the client, falling back to the other channel.

        Callers decide when: non-urgent kinds wait for quiet hours to end before calling.
        """
        if self.opted_out:
            await self.record(f"{kind}_suppressed", recipient="client", outcome="opted out")
            return
        templates = self.policy.templates[self.language]
        fields = {"first_name": self.client.first_name, "clinic": self.policy.clinic_name,
                  **extra}
        body = getattr(templates, kind).format(**fields)
        body = f"{body}\n{self.policy.crisis_line_for(self.language)}"
        subject = templates.subject_client.format(**fields)
        for channel in (self.channel, self.channel.other):
            to = self.client.address(channel)
            if to is None:
                continue
            delivery = await self.deliver(kind, "client", channel, to, body, subject, links or [])
            if delivery is not None:
                if channel is not self.channel:
                    await self.record("channel_fallback", recipient="client", channel=channel,
                                      outcome=f"{self.channel.value} failed permanently")
                    self.channel = channel
                return
        self.unreachable = True
        await self.record("client_unreachable", recipient="client",
                          outcome="no channel accepted the message", detail={"kind": kind})

    async def deliver(
        self, kind: str, recipient: str, channel: Channel, to: str, body: str,
        subject: str | None, links: list[LinkAction],
    ) -> Delivery | None:
        self.messages_sent += 1
        message = OutboundMessage(
            workflow_id=self.trail.workflow_id, message_key=f"{self.messages_sent}-{kind}",
            channel=channel, to=to, body=body, subject=subject,
            links=links,  # the SMS activity ignores them; kept so a fallback email has them
        )
        try:
            delivery = await workflow.execute_activity(
                f"send_{channel.value}", message, result_type=Delivery,
                schedule_to_close_timeout=SEND_DEADLINE,
                start_to_close_timeout=timedelta(seconds=30), retry_policy=SEND_RETRY,
            )
        except ActivityError as err:
            cause = err.cause
            permanent = isinstance(cause, ApplicationError) and cause.type == PERMANENT_DELIVERY_FAILURE
            await self.record(f"{kind}_failed", channel=channel, recipient=recipient,
                              outcome="permanent failure" if permanent else "gave up retrying")
            return None
        self.sent[delivery.provider_message_id] = (recipient, message)
        await self.record(f"{kind}_sent", channel=channel, recipient=recipient,
                          provider_message_id=delivery.provider_message_id, outcome="accepted")
        return delivery

    async def fall_back(self, failure: DeliveryFailure) -> None:
        """A message the provider accepted never arrived: send it on the other channel."""
        sent = self.sent.get(failure.provider_message_id)
        if sent is None:
            return
        recipient, message = sent
        kind = message.message_key.split("-", 1)[1]
        await self.record(f"{kind}_undelivered", channel=message.channel, recipient=recipient,
                          provider_message_id=failure.provider_message_id,
                          outcome=failure.error_code or "undelivered")
        if recipient != "client":
            return
        other = message.channel.other
        to = self.client.address(other)
        if to is None or self.opted_out:
            return
        if await self.deliver(kind, recipient, other, to, message.body, message.subject,
                              message.links) is not None:
            await self.record("channel_fallback", recipient="client", channel=other,
                              outcome=f"{message.channel.value} undelivered")
            self.channel = other

    async def page_level(self, level: EscalationLevel, reason: str) -> bool:
        """Notify every target of one level; True when anyone was reached."""
        esc = self.escalation
        assert esc is not None
        targets = list(level.targets)
        if reason in Reason.CONTACT_AT_ONCE and Target.EMERGENCY_CONTACT not in targets:
            targets.append(Target.EMERGENCY_CONTACT)
        reached = False
        for target in targets:
            if target is Target.EMERGENCY_CONTACT:
                reached = await self.notify_emergency_contact(reason) or reached
            else:
                reached = await self.page_staff(target, reason) or reached
        return reached

    async def page_staff(self, target: Target, reason: str) -> bool:
        esc = self.escalation
        assert esc is not None
        staff_id = self.policy.staff_for(target, workflow.now())
        if staff_id is None:
            await self.record("no_staff_for_target", outcome=target.value)
            return False
        body = self.staff_text("staff_page", reason=reason,
                               staff_action=f"Reply ACK {esc.code} when you take it.")
        if await self.message_staff("staff_page", staff_id, body):
            esc.paged.append(PageState(level=esc.level, target=staff_id,
                                       channel=self.staff_channel(staff_id), code=esc.code))
            return True
        return False

    async def notify_emergency_contact(self, reason: str) -> bool:
        contact = self.event.emergency_contact
        if contact is None:
            return False
        if reason not in Reason.SAFETY or self.escalation_notified_contact():
            return False
        if not contact.consent:
            await self.record("emergency_contact_skipped", outcome="no consent on file")
            return False
        body = self.policy.templates[self.language].emergency_contact_notice.format(
            contact_name=contact.name, first_name=self.client.first_name,
            clinic=self.policy.clinic_name)
        body = f"{body}\n{self.policy.crisis_line_for(self.language)}"
        for channel in (Channel.SMS, Channel.EMAIL):
            to = contact.phone if channel is Channel.SMS else contact.email
            if to is None:
                continue
            delivery = await self.deliver("emergency_contact_notice", "emergency_contact",
                                          channel, to, body, self.staff_text("subject_staff"), [])
            if delivery is not None:
                await self.record("emergency_contact_notified", channel=channel,
                                  recipient="emergency_contact",
                                  provider_message_id=delivery.provider_message_id,
                                  outcome="disclosed",
                                  detail={"basis": "client consent", "why": reason})
                return True
        return False

    def escalation_notified_contact(self) -> bool:
        """The emergency contact hears from us once per escalation, not at every round."""
        esc = self.escalation
        return esc is not None and any(
            e.step in ("emergency_contact_notified", "emergency_contact_skipped")
            and e.seq > esc.started_seq
            for e in self.trail.entries
        )

    async def message_staff(self, kind: str, staff_id: str, body: str) -> bool:
        member = self.policy.staff.get(staff_id)
        if member is None:
            return False
        first = self.staff_channel(staff_id)
        links = ([LinkAction(label="Acknowledge", action="ack", value=staff_id)]
                 if kind == "staff_page" else [])
        for channel in (first, first.other):
            to = member.phone if channel is Channel.SMS else member.email
            if to and await self.deliver(kind, f"staff:{staff_id}", channel, to, body,
                                         self.staff_text("subject_staff"), links):
                return True
        return False

    async def remind_acknowledger(self) -> None:
        esc = self.escalation
        assert esc is not None and esc.acknowledged_by is not None
        await self.message_staff("staff_reminder", esc.acknowledged_by,
                                 self.staff_text("staff_reminder"))

    async def tell_everyone_paged(self, kind: str) -> None:
        if self.escalation is None:
            return
        for staff_id in dict.fromkeys(p.target for p in self.escalation.paged):
            await self.message_staff(kind, staff_id, self.staff_text(kind))

    async def book(self, slot: datetime) -> None:
        options = self.policy.reschedule
        await self.record("reschedule_chosen", actor=Actor.CLIENT, outcome=slot.isoformat())
        if options.webhook_url is None:
            await self.record("booking_skipped", outcome="clinic has no booking webhook")
            return
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
            await self.ask_staff(Reason.NEEDS_REVIEW)
            return
        await self.record("booking_confirmed", outcome=confirmation.booking_id or "booked")
        await self.message_client("booking_confirmed", slot=self.slot_label(
            self.slots.index(slot)))

    async def record(self, step: str, **fields: object) -> None:
        """Seal the step into the trail and write it to the audit store before going on."""
        entry = self.trail.add(workflow.now(), step, **fields)
        workflow.logger.info("follow-up step", extra={"step": step, "seq": entry.seq})
        await workflow.execute_local_activity(
            "append_audit_entries", AuditBatch(entries=[entry]),
            start_to_close_timeout=timedelta(seconds=15), retry_policy=AUDIT_RETRY,
        )

    # ------------------------------------------------------------------ small helpers

    def crisis_words(self) -> list[str]:
        words = self.policy.crisis_words
        return words.get(self.language, []) + (
            words.get(self.policy.default_language, [])
            if self.language != self.policy.default_language else []
        )

    def reply_links(self) -> list[LinkAction]:
        return [LinkAction(label="I'm OK", action="reply", value="OK"),
                LinkAction(label="Please call me", action="reply", value="CALL")]

    def staff_channel(self, staff_id: str) -> Channel:
        return Channel(self.policy.staff[staff_id].channel)

    def staff_text(self, kind: str, **fields: str) -> str:
        templates = self.policy.templates[self.policy.default_language]
        return getattr(templates, kind).format(
            clinic=self.policy.clinic_name, ref=self.escalation.code if self.escalation else "",
            **fields)

    def new_code(self) -> str:
        return f"{workflow.random().randint(100000, 999999)}"

    def slot_label(self, index: int) -> str:
        local = self.slots[index]
        return local.strftime("%a %d %b %H:%M")

    def describe_slots(self) -> str:
        templates = self.policy.templates[self.language]
        choices = [templates.slot_choice.format(letter=SLOT_LETTERS[i], slot=self.slot_label(i))
                   for i in range(len(self.slots))]
        if self.policy.reschedule.booking_url:
            choices.append(templates.book_online.format(url=self.policy.reschedule.booking_url))
        return " ".join(choices)

    def action_result(self, message: str) -> ActionResult:
        return ActionResult(workflow_id=self.trail.workflow_id, state=self.phase.value,
                            message=message)
