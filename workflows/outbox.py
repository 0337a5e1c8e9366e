"""Sends fired and tracked: every message goes out beside the protocol, never in its way.

A send is a task: the caller gets it back and may look at it, never has to wait for it.
Each message tries its person's first channel and, when that fails for good or is not
accepted within the policy's ``fallback_after``, the other one too; the first acceptance
wins and the rest are withdrawn. Each attempt has its own message key, so a retried
activity never reaches a provider twice. A defect in our own send code is logged, counted
and treated as that channel's send failing, so the other channel is tried: it never stalls
the protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TimeoutType,
)
from temporalio.exceptions import TimeoutError as ActivityTimeoutError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from workflows.models import (
        PERMANENT_DELIVERY_FAILURE,
        AuditBatch,
        Channel,
        Delivery,
        DeliveryFailure,
        DepartureEvent,
        LinkAction,
        OutboundMessage,
        OutboxState,
    )
    from workflows.policy import ClinicPolicy
    from workflows.trail import TrailWriter
    from workflows.versions import (
        DEFECT_FAILS_ONE_CHANNEL,
        WITHDRAWN_SEND_SETTLES,
        WITHDRAWN_TRY_REFUSED,
        patched,
    )

T = TypeVar("T")

SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=[PERMANENT_DELIVERY_FAILURE],
)
# How long an ordinary message keeps trying before its moment has passed.
SEND_DEADLINE = timedelta(minutes=10)
# A page, a notice or a check-in keeps retrying through a provider outage until it is
# delivered, withdrawn or this old; meanwhile it also goes out on the other channel.
PERSISTENT_DEADLINE = timedelta(hours=24)
DEFECT = "a defect in the send, treated as a failed send"

# What a safety escalation sends goes ahead of every routine send waiting on the task queue
# (a thousand check-ins falling due as quiet hours end): Temporal dispatches a backlog by
# priority, 1 first. Other sends take the follow-up's own: the default 3, or 1 once the
# intake has put it first. Servers before priority ignore it.
SAFETY_SENDS = frozenset({"staff_page", "emergency_contact_notice", "crisis_resources"})
SAFETY_PRIORITY = Priority(priority_key=1)

CLIENT = "client"
EMERGENCY_CONTACT = "emergency_contact"


def staff_recipient(staff_id: str) -> str:
    return f"staff:{staff_id}"


class Outbox:
    def __init__(self, event: DepartureEvent, policy: ClinicPolicy, language: str,
                 trail: TrailWriter, carried: OutboxState | None = None) -> None:
        self.event = event
        self.policy = policy
        self.language = language
        self.trail = trail
        state = carried or OutboxState(channel=event.client.preferred_channel)
        # The client's working channel: the one that last accepted a message.
        self.channel = state.channel
        self.opted_out = state.opted_out
        self.messages_sent = state.messages_sent
        # What each provider message id was, so an undelivered receipt can fall back once.
        self.sent = state.sent
        self.tasks: list[asyncio.Task[Any]] = []
        self.client_tasks: list[asyncio.Task[Any]] = []

    def state(self) -> OutboxState:
        return OutboxState(channel=self.channel, opted_out=self.opted_out,
                           messages_sent=self.messages_sent, sent=self.sent)

    def idle(self) -> bool:
        self.tasks = [task for task in self.tasks if not task.done()]
        return not self.tasks

    def client_idle(self) -> bool:
        self.client_tasks = [task for task in self.client_tasks if not task.done()]
        return not self.client_tasks

    # ------------------------------------------------------------------ firing

    def fire(self, work: Coroutine[Any, Any, T], failed: T, kind: str = "send",
             recipient: str | None = None) -> asyncio.Task[T]:
        """Run ``work`` beside the protocol; a defect in it is recorded as a failed send of
        ``kind`` and yields ``failed``."""

        async def guarded() -> T:
            try:
                return await work
            except (ActivityError, asyncio.CancelledError):
                raise
            except Exception:
                self.defect(kind, recipient)
                return failed

        task = asyncio.create_task(guarded())
        self.tasks.append(task)
        return task

    def defect(self, kind: str, recipient: str | None, channel: Channel | None = None) -> None:
        """Our own send code raised (call it from the ``except``): logged at error level with
        the traceback, counted, and recorded as that send failing."""
        workflow.logger.exception(DEFECT)
        workflow.metric_meter().create_counter(
            "aftercare_send_defects", "Sends that failed by a defect in our own code"
        ).add(1)
        self.trail.record(f"{kind}_failed", channel=channel, recipient=recipient, outcome=DEFECT)

    def to_client(self, kind: str, *, links: list[LinkAction] | None = None,
                  lasting: timedelta = SEND_DEADLINE,
                  on_accepted: Callable[[], None] | None = None,
                  **fields: str) -> asyncio.Task[bool]:
        """Message the client; the task is True once a channel accepted it (or the client
        opted out, when nothing is sent), False when none did within ``lasting``."""
        task = self.fire(self.message_client(kind, links or [], lasting, on_accepted,
                                             **fields), False, kind, CLIENT)
        self.client_tasks.append(task)
        return task

    def to_staff(self, kind: str, staff_id: str, ref: str,
                 **fields: str) -> asyncio.Task[Delivery | None]:
        """Tell a staff member something (the ``kind`` template, in the clinic's language)."""

        async def send() -> Delivery | None:
            body = self.staff_text(kind, ref=ref, **fields)
            return await self.message_staff(kind, staff_id, body, ref, [], SEND_DEADLINE)

        return self.fire(send(), None, kind, staff_recipient(staff_id))

    def withdraw(self, tasks: list[asyncio.Task[Any]]) -> None:
        # Once: a second withdrawal would cut short the first one's wait for its try.
        settles = patched(WITHDRAWN_SEND_SETTLES)
        for task in tasks:
            if not task.done() and not (settles and task.cancelling()):
                task.cancel()

    # ------------------------------------------------------------------ the people

    async def message_client(self, kind: str, links: list[LinkAction], lasting: timedelta,
                             on_accepted: Callable[[], None] | None, **extra: str) -> bool:
        if self.opted_out:
            self.trail.record(f"{kind}_suppressed", recipient=CLIENT, outcome="opted out")
            return True
        client = self.event.client
        templates = self.policy.templates[self.language]
        fields = {"first_name": client.first_name, "clinic": self.policy.clinic_name, **extra}
        body = (f"{getattr(templates, kind).format(**fields)}\n"
                f"{self.policy.crisis_line_for(self.language)}")
        subject = templates.subject_client.format(**fields)
        first = self.channel
        addresses = [(channel, to) for channel in (first, first.other)
                     if (to := client.address(channel)) is not None]
        delivery = await self.reach(kind, CLIENT, addresses, body, subject, links,
                                    workflow.now() + lasting)
        if delivery is None:
            self.trail.record("client_unreachable", recipient=CLIENT,
                              outcome="no channel accepted the message", detail={"kind": kind})
            return False
        if delivery.channel is not first:
            self.trail.record("channel_fallback", recipient=CLIENT, channel=delivery.channel,
                              outcome=f"{first.value} failed")
            self.channel = delivery.channel
        if on_accepted is not None:
            on_accepted()
        return True

    async def message_staff(
        self, kind: str, staff_id: str, body: str, ref: str, links: list[LinkAction],
        lasting: timedelta, after_withdrawal: Callable[[Delivery], None] | None = None,
    ) -> Delivery | None:
        """``after_withdrawal``: called with the delivery when a channel accepted the message
        although it had been withdrawn (its try was already with the provider)."""
        member = self.policy.staff.get(staff_id)
        if member is None:
            return None
        first = Channel(member.channel)
        recipient = staff_recipient(staff_id)
        addresses = [(channel, to) for channel in (first, first.other)
                     if (to := self.address_of(recipient, channel))]
        subject = self.staff_text(f"subject_{kind}" if kind in SUBJECTS else "subject_staff",
                                  ref=ref)
        return await self.reach(kind, recipient, addresses, body, subject, links,
                                workflow.now() + lasting, after_withdrawal)

    async def notify_emergency_contact(self, reason: str, ref: str) -> Delivery | None:
        contact = self.event.emergency_contact
        assert contact is not None
        body = self.policy.templates[self.language].emergency_contact_notice.format(
            contact_name=contact.name, first_name=self.event.client.first_name,
            clinic=self.policy.clinic_name)
        body = f"{body}\n{self.policy.crisis_line_for(self.language)}"
        addresses = [(channel, to) for channel in (Channel.SMS, Channel.EMAIL)
                     if (to := self.address_of(EMERGENCY_CONTACT, channel)) is not None]
        delivery = await self.reach("emergency_contact_notice", EMERGENCY_CONTACT, addresses,
                                    body, self.staff_text("subject_staff", ref=ref), [],
                                    workflow.now() + PERSISTENT_DEADLINE)
        if delivery is not None:
            self.trail.record("emergency_contact_notified", channel=delivery.channel,
                              recipient=EMERGENCY_CONTACT,
                              provider_message_id=delivery.provider_message_id,
                              outcome="disclosed",
                              detail={"basis": "client consent", "why": reason})
        return delivery

    def address_of(self, recipient: str, channel: Channel) -> str | None:
        """Where the client, a staff member or the emergency contact receives ``channel``."""
        if recipient == CLIENT:
            return self.event.client.address(channel)
        if recipient == EMERGENCY_CONTACT:
            contact = self.event.emergency_contact
            return contact and (contact.phone if channel is Channel.SMS else contact.email)
        member = self.policy.staff.get(recipient.removeprefix("staff:"))
        return member and (member.phone if channel is Channel.SMS else member.email)

    def staff_text(self, kind: str, ref: str = "", **fields: str) -> str:
        templates = self.policy.templates[self.policy.default_language]
        return getattr(templates, kind).format(clinic=self.policy.clinic_name, ref=ref,
                                               **fields)

    # ------------------------------------------------------------------ the channels

    async def reach(
        self, kind: str, recipient: str, addresses: list[tuple[Channel, str]], body: str,
        subject: str | None, links: list[LinkAction], deadline: datetime,
        after_withdrawal: Callable[[Delivery], None] | None = None,
    ) -> Delivery | None:
        """Send on the first address; when it fails for good, or has not been accepted
        within ``fallback_after``, on the next one too. The first channel to accept wins and
        the sends still trying are withdrawn. None: nobody accepted it by ``deadline``."""
        attempts: list[asyncio.Task[Delivery | None]] = []
        withdrawn = False

        def accepted() -> Delivery | None:
            return next((task.result() for task in attempts
                         if task.done() and not task.cancelled() and task.result()), None)

        try:
            for number, (channel, to) in enumerate(addresses, start=1):
                attempts.append(asyncio.create_task(self.attempt(
                    kind, recipient, channel, to, body, subject, links, deadline)))
                if number == len(addresses):
                    break  # no other channel to start: wait for this one below
                try:
                    await workflow.wait_condition(attempts[-1].done,
                                                  timeout=self.policy.fallback_after)
                except TimeoutError:
                    continue  # not accepted yet: it keeps trying, and the next channel starts
                if accepted() is not None:
                    break
            await workflow.wait_condition(
                lambda: accepted() is not None or all(task.done() for task in attempts))
            return accepted()
        except asyncio.CancelledError:
            withdrawn = True
            raise
        finally:
            # Withdraw what is still trying, and let it say so in the trail before we go.
            for task in attempts:
                if not task.done():
                    task.cancel()
            withdrawn_meanwhile = False
            while True:
                try:
                    await workflow.wait_condition(lambda: all(t.done() for t in attempts))
                    break
                except asyncio.CancelledError:
                    if not patched(WITHDRAWN_SEND_SETTLES):
                        raise
                    withdrawn_meanwhile = True  # while the other channel's try settled
            if ((withdrawn or withdrawn_meanwhile) and after_withdrawal is not None
                    and (late := accepted()) is not None
                    and patched(WITHDRAWN_SEND_SETTLES)):
                after_withdrawal(late)
            if withdrawn_meanwhile:
                raise asyncio.CancelledError  # noqa: B012 - withdrawn: no result to return

    async def attempt(
        self, kind: str, recipient: str, channel: Channel, to: str, body: str,
        subject: str | None, links: list[LinkAction], deadline: datetime,
    ) -> Delivery | None:
        """One channel's try. A defect in our own code on the way is that channel failing, as
        a provider's refusal is: the next channel is tried, and the protocol never sees it."""
        try:
            return await self.deliver(kind, recipient, channel, to, body, subject, links,
                                      deadline)
        except (ActivityError, asyncio.CancelledError):
            raise
        except Exception:
            if not patched(DEFECT_FAILS_ONE_CHANNEL):
                raise
            self.defect(kind, recipient, channel)
            return None

    async def deliver(
        self, kind: str, recipient: str, channel: Channel, to: str, body: str,
        subject: str | None, links: list[LinkAction], deadline: datetime,
    ) -> Delivery | None:
        self.messages_sent += 1
        ride = self.trail.ride()
        message = OutboundMessage(
            workflow_id=self.trail.workflow_id, message_key=f"{self.messages_sent}-{kind}",
            channel=channel, to=to, body=body, subject=subject,
            links=links,  # the SMS activity ignores them; kept so a fallback email has them
            trail=ride,
        )
        try:
            delivery = await self.carrying(ride, workflow.execute_activity(
                channel.send_activity, message, result_type=Delivery,
                schedule_to_close_timeout=max(deadline - workflow.now(), timedelta(seconds=1)),
                start_to_close_timeout=timedelta(seconds=30), retry_policy=SEND_RETRY,
                priority=SAFETY_PRIORITY if kind in SAFETY_SENDS else Priority.default,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
                if patched(WITHDRAWN_SEND_SETTLES)
                else ActivityCancellationType.TRY_CANCEL,
            ))
        except (ActivityError, asyncio.CancelledError) as err:
            self.trail.record(f"{kind}_failed", channel=channel, recipient=recipient,
                              outcome=why_not_sent(err))
            if isinstance(err, asyncio.CancelledError):
                raise
            return None
        except Exception:
            # Our side broke (an answer it cannot read): this channel failed, try the next.
            self.defect(kind, recipient, channel)
            return None
        self.sent[delivery.provider_message_id] = (recipient, message)
        self.trail.record(f"{kind}_sent", channel=channel, recipient=recipient,
                          provider_message_id=delivery.provider_message_id, outcome="accepted")
        return delivery

    async def carrying(self, ride: AuditBatch | None,
                       send: Awaitable[Delivery]) -> Delivery:
        """The send, and the trail it carried settled with the writer whatever its end."""
        stored = False
        try:
            delivery = await send
            stored = delivery.trail_stored
        finally:
            if ride is not None:
                self.trail.ride_over(ride, stored)
        return delivery

    def undelivered(self, failure: DeliveryFailure) -> None:
        """A message the provider accepted never arrived: send it on the other channel at
        once, beside everything else, once however often the provider repeats its callback."""
        sent = self.sent.pop(failure.provider_message_id, None)
        if sent is None:
            return
        recipient, message = sent
        kind = message.message_key.split("-", 1)[1]
        self.trail.record(f"{kind}_undelivered", channel=message.channel, recipient=recipient,
                          provider_message_id=failure.provider_message_id,
                          outcome=failure.error_code or "undelivered")
        if recipient == CLIENT and self.opted_out:
            return
        other = message.channel.other
        to = self.address_of(recipient, other)
        if to is None:
            return

        async def fall_back() -> None:
            if await self.deliver(kind, recipient, other, to, message.body, message.subject,
                                  message.links, workflow.now() + SEND_DEADLINE) is None:
                return
            self.trail.record("channel_fallback", recipient=recipient, channel=other,
                              outcome=f"{message.channel.value} undelivered")
            if recipient == CLIENT:
                self.channel = other

        task = self.fire(fall_back(), None, kind, recipient)
        if recipient == CLIENT:
            self.client_tasks.append(task)


# Staff messages whose subject says what they are; any other kind needs the reader.
SUBJECTS = {"staff_resolved", "staff_cancelled", "staff_reminder", "staff_debrief",
            "staff_caring_reply"}


def why_not_sent(err: BaseException) -> str:
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type == PERMANENT_DELIVERY_FAILURE:
        return "permanent failure"
    if isinstance(cause, (asyncio.CancelledError, CancelledError)):
        return "withdrawn"
    if (isinstance(err, ActivityError) and err.retry_state is RetryState.CANCEL_REQUESTED
            and patched(WITHDRAWN_TRY_REFUSED)):
        return "withdrawn"
    if isinstance(err, ActivityError) and err.retry_state is RetryState.TIMEOUT or (
        isinstance(cause, ActivityTimeoutError) and cause.type is TimeoutType.SCHEDULE_TO_CLOSE
    ):
        return "dropped: not accepted before its moment passed"
    return "gave up retrying"
