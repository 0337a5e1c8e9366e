"""How a follow-up reaches people, and records that it did.

The client is written to on their working channel and, when it fails for good, on the
other; staff by the channel they prefer; the emergency contact once per escalation,
only with consent and only for a safety reason, recorded as a disclosure. Every send
and every step is sealed into the trail and written to the audit store at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TimeoutType,
)
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    from workflows.models import (
        PERMANENT_DELIVERY_FAILURE,
        AuditBatch,
        Channel,
        ClientContact,
        Delivery,
        DeliveryFailure,
        DepartureEvent,
        EscalationState,
        FollowUpView,
        LinkAction,
        OutboundMessage,
        PageState,
        StaffNote,
    )
    from workflows.policy import ClinicPolicy, EscalationLevel, Target
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
    BOOKING_FAILED = "clinic booking failed"

    SAFETY = {IMMINENT_RISK, CRISIS_WORDS, NO_REPLY, UNREACHABLE}
    # Reasons that reach the consenting emergency contact with the very first page.
    CONTACT_AT_ONCE = {IMMINENT_RISK, CRISIS_WORDS}
    # Which reason wins when a second arrives while a page is out.
    URGENCY = [IMMINENT_RISK, CRISIS_WORDS, UNREACHABLE, NO_REPLY, OPTED_OUT_AT_HIGH_RISK,
               CALL_REQUESTED, NEEDS_REVIEW, BOOKING_FAILED]



SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=[PERMANENT_DELIVERY_FAILURE],
)
SEND_DEADLINE = timedelta(minutes=10)
# A page keeps retrying through a provider outage until it is delivered, acknowledged or
# this old; meanwhile it also goes out on the other channel.
PAGE_DEADLINE = timedelta(hours=24)
AUDIT_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))


class Outreach:
    """The messaging half of DepartureFollowUp: it holds the state these methods use."""

    event: DepartureEvent
    policy: ClinicPolicy
    client: ClientContact
    language: str
    trail: TrailBuilder
    channel: Channel
    opted_out: bool
    unreachable: bool
    escalation: EscalationState | None
    sent: dict[str, tuple[str, OutboundMessage]]
    messages_sent: int
    # False only for follow-ups started before the patch "every-reply-acted-on": they keep
    # the sequential sends and the waits they were started with.
    safety_patched: bool
    in_flight: list[asyncio.Task[Any]]
    contact_noticed: set[str]
    last_delivery: dict[str, Delivery]
    # False only for follow-ups started before "trail-written-from-accepted-tasks".
    trail_by_activity: bool
    trail_stored: int
    trail_refused: int
    # Staff free text (it may hold PHI) travels beside the trail, sealed by the audit store.
    pending_notes: list[StaffNote]
    # What people read, as last handed to the audit store, and how often it changed.
    published_view: FollowUpView | None
    view_revision: int
    view: Callable[[], FollowUpView]

    def patched(self, patch_id: str) -> bool:
        """``workflow.patched`` for the patches before "every-reply-acted-on". A follow-up
        started under that patch was started by code holding all of them, so it asks no
        more: no marker is recorded halfway through, from whichever task runs first."""
        return self.safety_patched or workflow.patched(patch_id)

    def in_background(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a send beside the protocol, so no timer waits behind a provider."""
        task = asyncio.create_task(work)
        self.in_flight.append(task)
        return task

    async def record(self, step: str, **fields: object) -> None:
        """Seal the step into the trail. It reaches the audit store with the next batch:
        before the follow-up next sleeps, answers staff, or closes."""
        entry = self.trail.add(workflow.now(), step, **fields)
        workflow.logger.info("follow-up step", extra={"step": step, "seq": entry.seq})
        if not self.patched("batch-audit-writes"):
            await self.write_trail()  # follow-ups started before batching wrote each step

    async def write_trail(self) -> bool:
        """Follow-ups started before "trail-written-from-accepted-tasks": write every entry
        not yet in the audit store, in one local activity; True when there were any.
        (Later follow-ups leave it to ``keep_trail_written``.)"""
        if self.trail_by_activity:
            return False
        batch = self.trail.take_unwritten()
        if not batch:
            return False
        await workflow.execute_local_activity(
            "append_audit_entries", AuditBatch(entries=batch),
            start_to_close_timeout=timedelta(seconds=15), retry_policy=AUDIT_RETRY,
        )
        return True

    async def keep_trail_written(self) -> None:
        """Write sealed entries to the audit store, batch after batch, by a regular activity.

        Its command leaves only with a workflow task the server accepted, so every stored
        entry is one the history reproduces: a worker that dies mid-task can never leave a
        sealed entry behind for its successor to contradict. The protocol never waits for
        it: an audit store outage delays the trail (``audit_backlog`` in status), not a page,
        and the trail catches up when the store returns.
        """
        while True:
            await workflow.wait_condition(
                lambda: self.trail.has_unwritten() or self.view_changed())
            batch = self.trail.take_unwritten()
            notes = [n for n in self.pending_notes if batch and n.audit_seq <= batch[-1].seq]
            self.pending_notes = [n for n in self.pending_notes if n not in notes]
            try:
                await workflow.execute_activity(
                    "append_audit_entries",
                    AuditBatch(entries=batch, notes=notes, view=self.publish_view()),
                    start_to_close_timeout=timedelta(seconds=30), retry_policy=AUDIT_RETRY,
                )
            except ActivityError:
                # Only a refused batch ends up here (retries have no deadline): the store
                # holds other entries under these numbers. Operators must see it; the
                # follow-up goes on, and verify/replay will name the difference.
                workflow.logger.error("audit store refused a batch of this follow-up's trail",
                                      extra={"first_seq": batch[0].seq})
                self.trail_refused += len(batch)
                continue
            self.trail_stored += len(batch)

    def view_changed(self) -> bool:
        return self.view() != self.published_view

    def publish_view(self) -> FollowUpView:
        """The view as it stands, numbered, for the audit store to keep with the batch."""
        self.published_view = self.view()
        self.view_revision += 1
        return self.published_view.model_copy(update={
            "revision": self.view_revision, "updated_at": workflow.now()})

    def audit_backlog(self) -> int:
        """Entries sealed but not yet in the audit store."""
        if not self.trail_by_activity:
            return 0
        return len(self.trail.entries) - self.trail_stored - self.trail_refused

    async def message_client(
        self, kind: str, *, links: list[LinkAction] | None = None,
        deadline: datetime | None = None, **extra: str,
    ) -> bool:
        """Send one templated message to the client, falling back to the other channel;
        False when no channel accepted it.

        Callers decide when: non-urgent kinds wait for quiet hours to end before calling.
        A message not accepted by ``deadline`` (its moment passed) is dropped, not sent late.
        """
        if self.opted_out:
            await self.record(f"{kind}_suppressed", recipient="client", outcome="opted out")
            return True
        templates = self.policy.templates[self.language]
        fields = {"first_name": self.client.first_name, "clinic": self.policy.clinic_name,
                  **extra}
        body = getattr(templates, kind).format(**fields)
        body = f"{body}\n{self.policy.crisis_line_for(self.language)}"
        subject = templates.subject_client.format(**fields)
        first = self.channel
        addresses = [(channel, to) for channel in (first, first.other)
                     if (to := self.client.address(channel)) is not None]
        if self.safety_patched:
            reached = await self.reach(kind, "client", addresses, body, subject, links or [],
                                       deadline or workflow.now() + SEND_DEADLINE)
        else:
            reached = None
            for channel, to in addresses:
                if await self.deliver(kind, "client", channel, to, body, subject,
                                      links or []) is not None:
                    reached = channel
                    break
        if reached is not None:
            if reached is not first:
                await self.record("channel_fallback", recipient="client", channel=reached,
                                  outcome=f"{first.value} failed permanently"
                                  if not self.safety_patched else f"{first.value} failed")
                self.channel = reached
            return True
        self.unreachable = True
        await self.record("client_unreachable", recipient="client",
                          outcome="no channel accepted the message", detail={"kind": kind})
        return False

    async def reach(
        self, kind: str, recipient: str, addresses: list[tuple[Channel, str]], body: str,
        subject: str | None, links: list[LinkAction], deadline: datetime,
    ) -> Channel | None:
        """Send on the first address; when it fails for good, or has not been accepted
        within the policy's ``fallback_after``, on the next one too. The first channel to
        accept wins and the sends still trying are withdrawn. None: nobody accepted it."""
        attempts: list[tuple[Channel, asyncio.Task[Delivery | None]]] = []

        def accepted() -> Channel | None:
            return next((channel for channel, task in attempts
                         if task.done() and task.result() is not None), None)

        try:
            for channel, to in addresses:
                attempt = asyncio.create_task(self.deliver(
                    kind, recipient, channel, to, body, subject, links, deadline=deadline))
                attempts.append((channel, attempt))
                try:
                    await workflow.wait_condition(attempt.done,
                                                  timeout=self.policy.fallback_after)
                except TimeoutError:
                    continue  # not accepted yet: it keeps trying, and the next channel starts
                if accepted() is not None:
                    break
            await workflow.wait_condition(
                lambda: accepted() is not None or all(task.done() for _, task in attempts))
            return accepted()
        finally:
            # Withdraw what is still trying, and let it say so in the trail before we go.
            for _, task in attempts:
                if not task.done():
                    task.cancel()
            await workflow.wait_condition(lambda: all(task.done() for _, task in attempts))

    async def deliver(
        self, kind: str, recipient: str, channel: Channel, to: str, body: str,
        subject: str | None, links: list[LinkAction], *, deadline: datetime | None = None,
    ) -> Delivery | None:
        self.messages_sent += 1
        message = OutboundMessage(
            workflow_id=self.trail.workflow_id, message_key=f"{self.messages_sent}-{kind}",
            channel=channel, to=to, body=body, subject=subject,
            links=links,  # the SMS activity ignores them; kept so a fallback email has them
        )
        allowed = SEND_DEADLINE if deadline is None else max(
            deadline - workflow.now(), timedelta(seconds=1))
        try:
            delivery = await workflow.execute_activity(
                f"send_{channel.value}", message, result_type=Delivery,
                schedule_to_close_timeout=allowed,
                start_to_close_timeout=timedelta(seconds=30), retry_policy=SEND_RETRY,
            )
        except (ActivityError, asyncio.CancelledError) as err:
            await self.record(f"{kind}_failed", channel=channel, recipient=recipient,
                              outcome=self.why_not_sent(err))
            if isinstance(err, asyncio.CancelledError):
                raise
            return None
        self.sent[delivery.provider_message_id] = (recipient, message)
        self.last_delivery[recipient] = delivery
        await self.record(f"{kind}_sent", channel=channel, recipient=recipient,
                          provider_message_id=delivery.provider_message_id, outcome="accepted")
        return delivery

    def why_not_sent(self, err: BaseException) -> str:
        cause = err.cause if isinstance(err, ActivityError) else err
        if isinstance(cause, ApplicationError) and cause.type == PERMANENT_DELIVERY_FAILURE:
            return "permanent failure"
        if not self.safety_patched:
            return "gave up retrying"
        if isinstance(cause, (asyncio.CancelledError, CancelledError)):
            return "withdrawn: sent on another channel"
        if isinstance(err, ActivityError) and err.retry_state is RetryState.TIMEOUT or (
            isinstance(cause, ActivityTimeoutError)
            and cause.type is TimeoutType.SCHEDULE_TO_CLOSE
        ):
            return "dropped: not accepted before its moment passed"
        return "gave up retrying"

    async def fall_back(self, failure: DeliveryFailure) -> None:
        """A message the provider accepted never arrived: send it on the other channel,
        once however often the provider repeats its callback."""
        sent = (self.sent.pop if self.safety_patched else self.sent.get)(
            failure.provider_message_id, None)
        if sent is None:
            return
        recipient, message = sent
        kind = message.message_key.split("-", 1)[1]
        await self.record(f"{kind}_undelivered", channel=message.channel, recipient=recipient,
                          provider_message_id=failure.provider_message_id,
                          outcome=failure.error_code or "undelivered")
        other = message.channel.other
        if recipient == "client":
            if self.opted_out:
                return
            to = self.client.address(other)
        elif self.patched("fall-back-for-staff-and-contact"):
            # A page that never arrived is a page nobody read: try their other address.
            to = self.address_of(recipient, other)
        else:
            return
        if to is None:
            return
        if await self.deliver(kind, recipient, other, to, message.body, message.subject,
                              message.links) is not None:
            await self.record("channel_fallback", recipient=recipient, channel=other,
                              outcome=f"{message.channel.value} undelivered")
            if recipient == "client":
                self.channel = other

    def address_of(self, recipient: str, channel: Channel) -> str | None:
        """Where a staff member or the emergency contact receives ``channel``."""
        if recipient == "emergency_contact":
            contact = self.event.emergency_contact
            return contact and (contact.phone if channel is Channel.SMS else contact.email)
        member = self.policy.staff.get(recipient.removeprefix("staff:"))
        return member and (member.phone if channel is Channel.SMS else member.email)

    async def page_level(self, level: EscalationLevel, reason: str) -> bool:
        """Notify every target of one level; True when anyone was reached."""
        reached = False
        for target in self.level_targets(level, reason):
            reached = await self.notify_target(target, reason) or reached
        return reached

    def start_paging(
        self, level: EscalationLevel, reason: str
    ) -> dict[Target, asyncio.Task[bool]]:
        """Page every target of one level at once, each on its own clock and channels."""
        return {target: self.in_background(self.notify_target(target, reason))
                for target in self.level_targets(level, reason)}

    def level_targets(self, level: EscalationLevel, reason: str) -> list[Target]:
        targets = list(level.targets)
        if reason in Reason.CONTACT_AT_ONCE and Target.EMERGENCY_CONTACT not in targets:
            targets.append(Target.EMERGENCY_CONTACT)
        return targets

    async def notify_target(self, target: Target, reason: str) -> bool:
        if target is Target.EMERGENCY_CONTACT:
            return await self.notify_emergency_contact(reason)
        return await self.page_staff(target, reason)

    async def page_staff(self, target: Target, reason: str) -> bool:
        staff_id = self.policy.staff_for(target, workflow.now())
        if staff_id is None:
            await self.record("no_staff_for_target", outcome=target.value)
            return False
        return await self.page_member(staff_id, reason)

    async def page_member(self, staff_id: str, reason: str) -> bool:
        esc = self.escalation
        assert esc is not None
        level, code = esc.level, esc.code
        body = self.staff_text("staff_page", reason=reason,
                               staff_action=f"Reply ACK {code} when you take it.")
        if await self.message_staff("staff_page", staff_id, body):
            esc.paged.append(PageState(level=level, target=staff_id,
                                       channel=self.staff_channel(staff_id), code=code))
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
        subject = self.staff_text("subject_staff")
        addresses = [(channel, to) for channel in (Channel.SMS, Channel.EMAIL)
                     if (to := self.address_of("emergency_contact", channel)) is not None]
        if self.safety_patched:
            assert self.escalation is not None
            self.contact_noticed.add(self.escalation.code)
            channel = await self.reach("emergency_contact_notice", "emergency_contact",
                                       addresses, body, subject, [],
                                       workflow.now() + PAGE_DEADLINE)
            delivery = channel and self.last_delivery.get("emergency_contact")
        else:
            delivery = None
            for channel, to in addresses:
                delivery = await self.deliver("emergency_contact_notice", "emergency_contact",
                                              channel, to, body, subject, [])
                if delivery is not None:
                    break
        if delivery is not None:
            await self.record("emergency_contact_notified", channel=delivery.channel,
                              recipient="emergency_contact",
                              provider_message_id=delivery.provider_message_id,
                              outcome="disclosed",
                              detail={"basis": "client consent", "why": reason})
            return True
        return False

    def escalation_notified_contact(self) -> bool:
        """The emergency contact hears from us once per escalation, not at every round."""
        esc = self.escalation
        if esc is not None and esc.code in self.contact_noticed:
            return True
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
        # The link names the escalation's code, so an old page's link can't take a new one.
        links = ([LinkAction(label="Acknowledge", action="ack",
                             value=f"{staff_id} {self.escalation.code}")]
                 if kind == "staff_page" and self.escalation else [])
        subject = self.staff_text("subject_staff")
        addresses = [(channel, to) for channel in (first, first.other)
                     if (to := self.address_of(f"staff:{staff_id}", channel))]
        if self.safety_patched:
            deadline = PAGE_DEADLINE if kind == "staff_page" else SEND_DEADLINE
            return await self.reach(kind, f"staff:{staff_id}", addresses, body, subject, links,
                                    workflow.now() + deadline) is not None
        for channel, to in addresses:
            if await self.deliver(kind, f"staff:{staff_id}", channel, to, body, subject, links):
                return True
        return False

    async def remind_acknowledger(self) -> None:
        esc = self.escalation
        assert esc is not None and esc.acknowledged_by is not None
        await self.message_staff("staff_reminder", esc.acknowledged_by,
                                 self.staff_text("staff_reminder"))

    async def tell_everyone_paged(self, kind: str, **fields: str) -> None:
        if self.escalation is None:
            return
        for staff_id in dict.fromkeys(p.target for p in self.escalation.paged):
            notice = self.message_staff(kind, staff_id, self.staff_text(kind, **fields))
            if self.safety_patched:
                self.in_background(notice)
            else:
                await notice

    def staff_channel(self, staff_id: str) -> Channel:
        return Channel(self.policy.staff[staff_id].channel)

    def staff_text(self, kind: str, **fields: str) -> str:
        templates = self.policy.templates[self.policy.default_language]
        return getattr(templates, kind).format(
            clinic=self.policy.clinic_name, ref=self.escalation.code if self.escalation else "",
            **fields)
