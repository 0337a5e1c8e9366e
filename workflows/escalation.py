"""The escalation chain: who is paged, when, and until what.

One ``Escalation`` walks the clinic's chain level by level, each level on its own ack
timeout, until someone acknowledges; then it reminds the acknowledger until staff resolve
it. A chain nobody answers alerts operators and starts again from level 1 at once (or on the
policy's ``repage_every``), as an on-call policy repeats, for as long as it stays open. A
crisis text restarts it from level 1 at once, whatever it was doing.

The emergency contact hears once per escalation, only with consent, only for a safety
reason, and never after the client answered the silence that was the reason.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from workflows.calendar import wait_until
    from workflows.models import Delivery, EscalationState, LinkAction, PageState, Phase
    from workflows.outbox import (
        EMERGENCY_CONTACT,
        PERSISTENT_DEADLINE,
        SEND_DEADLINE,
        Outbox,
        staff_recipient,
    )
    from workflows.policy import ClinicPolicy, EscalationLevel, Target
    from workflows.trail import TrailWriter
    from workflows.versions import LAST_WORD_AFTER_LAST_PAGE, patched


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
    # Reasons a safe reply from the client takes away: no disclosure follows it.
    ENDED_BY_A_SAFE_REPLY = {NO_REPLY, UNREACHABLE}
    # Which reason wins when a second arrives while a page is out.
    URGENCY = [IMMINENT_RISK, CRISIS_WORDS, UNREACHABLE, NO_REPLY, OPTED_OUT_AT_HIGH_RISK,
               CALL_REQUESTED, NEEDS_REVIEW, BOOKING_FAILED]

    @classmethod
    def more_urgent(cls, reason: str, than: str) -> bool:
        return cls.URGENCY.index(reason) < cls.URGENCY.index(than)


# Staff answer a page by texting "ACK <code>": the code finds the workflow that paged them.
ACK_CODE = SearchAttributeKey.for_keyword("AftercareAckCode")
# Crisis resources no channel accepted are tried again after this, while staff work.
CRISIS_RESOURCES_RETRY = timedelta(minutes=1)


class Escalation:
    def __init__(self, state: EscalationState, policy: ClinicPolicy, outbox: Outbox,
                 trail: TrailWriter) -> None:
        self.state = state
        self.policy = policy
        self.outbox = outbox
        self.trail = trail
        self.restart_requested = False
        self.pages: dict[asyncio.Task[Any], str] = {}  # each page and the staff member it is to
        self.notices: list[asyncio.Task[Any]] = []
        self.walker: asyncio.Task[None] | None = None
        # What everyone paged was told when staff closed it: owed to a late-accepted page too.
        self.last_word: tuple[str, dict[str, str]] | None = None
        # Staff paged before the close with another page to them still on its way then:
        # they hear the last word once that page has settled, after it if it reached them.
        self.owed_last_word: set[str] = set()

    # ------------------------------------------------------------------ what staff see

    @property
    def acknowledged(self) -> bool:
        return self.state.acknowledged_by is not None

    @property
    def resolved(self) -> bool:
        return self.state.resolved_by is not None

    def start(self, *, resume_at: datetime | None = None) -> None:
        self.walker = asyncio.create_task(self.walk_guarded(resume_at))

    async def walk_guarded(self, resume_at: datetime | None) -> None:
        """A defect in the walk stops it, loudly: the escalation stays open on the board and
        holds the follow-up open, and operators are alerted by the error and the metric."""
        try:
            await self.walk(resume_at)
        except Exception:
            workflow.logger.exception("the escalation chain stopped on a defect",
                                      extra={"workflow_id": self.trail.workflow_id})
            workflow.metric_meter().create_counter(
                "aftercare_escalation_defects", "Escalation walks stopped by a defect").add(1)
            self.trail.record("escalation_defect", outcome="the chain stopped on a defect")

    def at_rest(self) -> bool:
        """Waiting on a timer with nothing in flight: it may hand on to a new run."""
        return (self.state.resume_at is not None and not self.restart_requested
                and all(task.done() for task in [*self.pages, *self.notices]))

    async def walk(self, resume_at: datetime | None) -> None:
        if not self.acknowledged:
            await self.page_until_acknowledged(resume_at)
            resume_at = None
        self.outbox.withdraw(list(self.pages))
        await self.remind_until_resolved(resume_at)

    # ------------------------------------------------------------------ the walk

    async def page_until_acknowledged(self, resume_at: datetime | None) -> None:
        """Page level after level; once every round went unanswered, alert operators and
        page the chain again from level 1, until someone acknowledges."""
        chain = self.policy.escalation
        esc = self.state
        rounds_before_alert = chain.repeats + 1
        first_level = esc.level if resume_at is not None else 1
        while not self.acknowledged:
            if self.restart_requested:
                self.restart_requested, esc.round, first_level, resume_at = False, 0, 1, None
            if first_level == 1:
                esc.round += 1
                if esc.round > rounds_before_alert:
                    self.trail.record("escalation_repaged", outcome=f"round {esc.round}")
            for esc.level in range(first_level, len(chain.levels) + 1):
                level = chain.levels[esc.level - 1]
                # A level carried over from the previous run was paged there already.
                sends = None if resume_at is not None else self.page_level(level)
                wait_end = resume_at or workflow.now() + chain.ack_timeout_for(level)
                resume_at, esc.resume_at = None, wait_end
                await wait_until(wait_end, lambda sends=sends: (
                    self.answered_or_restarted() or nobody_reachable(sends)))
                esc.resume_at = None
                if self.answered_or_restarted():
                    break
                if not nobody_reachable(sends):
                    self.trail.record("ack_timeout",
                                      outcome=f"level {esc.level} did not acknowledge")
            first_level = 1
            if self.answered_or_restarted():
                continue
            if esc.round == rounds_before_alert:
                esc.exhausted = True
                self.trail.record("escalation_unacknowledged",
                                  outcome="every level paged; paging again until someone "
                                  "acknowledges")
                # Operators alert on this log line and on aftercare_escalations{event=
                # "exhausted"}, which the worker counts from this trail entry.
                workflow.logger.error("escalation unacknowledged after every level was paged",
                                      extra={"workflow_id": self.trail.workflow_id})
            if esc.round >= rounds_before_alert and chain.repage_every is not None:
                await wait_until(workflow.now() + chain.repage_every,
                                 self.answered_or_restarted)

    def answered_or_restarted(self) -> bool:
        return self.acknowledged or self.restart_requested

    async def remind_until_resolved(self, resume_at: datetime | None) -> None:
        every = self.policy.escalation.resolve_reminder
        while not self.resolved:
            self.state.resume_at = resume_at or workflow.now() + every
            resume_at = None
            if not await wait_until(self.state.resume_at, lambda: self.resolved):
                self.remind_acknowledger()
        self.state.resume_at = None

    # ------------------------------------------------------------------ paging

    def page_level(self, level: EscalationLevel) -> list[asyncio.Task[Any]]:
        """Page every target of one level at once, each on its own clock and channels."""
        sends: list[asyncio.Task[Any]] = []
        targets = list(level.targets)
        if self.state.reason in Reason.CONTACT_AT_ONCE and Target.EMERGENCY_CONTACT not in targets:
            targets.append(Target.EMERGENCY_CONTACT)
        for target in targets:
            if target is Target.EMERGENCY_CONTACT:
                sends.extend(self.notify_emergency_contact())
                continue
            staff_id = self.policy.staff_for(target, workflow.now())
            if staff_id is None:
                self.trail.record("no_staff_for_target", outcome=target.value)
                continue
            sends.append(self.page_member(staff_id))
        return sends

    def page_member(self, staff_id: str) -> asyncio.Task[Any]:
        esc = self.state
        level, code, reason = esc.level, esc.code, esc.reason
        links = [LinkAction(label="Acknowledge", action="ack", value=f"{staff_id} {code}")]

        def paged(delivery: Delivery) -> None:
            esc.paged.append(PageState(level=level, target=staff_id,
                                       channel=delivery.channel, code=code))

        def paged_after_withdrawal(delivery: Delivery) -> None:
            paged(delivery)
            if self.last_word is not None:  # the others already heard how it ended
                self.tell_last_word(staff_id)

        async def page() -> Delivery | None:
            body = self.outbox.staff_text("staff_page", ref=code, reason=reason,
                                          staff_action=f"Reply ACK {code} when you take it.")
            try:
                delivery = await self.outbox.message_staff(
                    "staff_page", staff_id, body, code, links, PERSISTENT_DEADLINE,
                    paged_after_withdrawal)
            finally:
                if staff_id in self.owed_last_word:  # this page never reached them
                    self.tell_last_word(staff_id)
            if delivery is not None:
                paged(delivery)
            return delivery

        task = self.outbox.fire(page(), None, "staff_page", staff_recipient(staff_id))
        self.pages[task] = staff_id
        return task

    def notify_emergency_contact(self) -> list[asyncio.Task[Any]]:
        """At most once per escalation, with consent, for a reason that still stands."""
        esc = self.state
        contact = self.outbox.event.emergency_contact
        if (contact is None or esc.contact_noticed or esc.reason not in Reason.SAFETY
                or (esc.client_answered and esc.reason in Reason.ENDED_BY_A_SAFE_REPLY)):
            return []
        esc.contact_noticed = True
        if not contact.consent:
            self.trail.record("emergency_contact_skipped", outcome="no consent on file")
            return []
        task = self.outbox.fire(self.outbox.notify_emergency_contact(esc.reason, esc.code),
                                None, "emergency_contact_notice", EMERGENCY_CONTACT)
        self.notices.append(task)
        return [task]

    def remind_acknowledger(self) -> None:
        acker = self.state.acknowledged_by
        assert acker is not None
        self.outbox.to_staff("staff_reminder", acker, self.state.code)

    def tell_everyone_paged(self, kind: str, **fields: str) -> None:
        if self.resolved:
            self.last_word = (kind, fields)
        for staff_id in dict.fromkeys(page.target for page in self.state.paged):
            if (self.resolved and self.page_on_its_way(staff_id)
                    and patched(LAST_WORD_AFTER_LAST_PAGE)):
                self.owed_last_word.add(staff_id)
                continue
            self.outbox.to_staff(kind, staff_id, self.state.code, **fields)

    def page_on_its_way(self, staff_id: str) -> bool:
        return any(not task.done() and target == staff_id
                   for task, target in self.pages.items())

    def tell_last_word(self, staff_id: str) -> None:
        assert self.last_word is not None
        kind, fields = self.last_word
        self.owed_last_word.discard(staff_id)
        self.outbox.to_staff(kind, staff_id, self.state.code, **fields)

    # ------------------------------------------------------------------ what changes it

    def raise_to(self, reason: str) -> None:
        """A more urgent reason while the chain is out: everyone at the current level hears
        the new reason at once. A crisis starts the chain again from level 1 at once, and an
        acknowledger hears it too."""
        esc = self.state
        esc.reason = reason
        self.trail.record("escalation_raised", outcome=reason, detail={"code": esc.code})
        if reason in Reason.CONTACT_AT_ONCE:
            esc.client_answered = False  # a crisis after an "OK": the reason stands again
        if reason == Reason.CRISIS_WORDS and not self.acknowledged:
            self.restart_requested = True
            return
        levels = self.policy.escalation.levels
        level = levels[0] if reason == Reason.CRISIS_WORDS else levels[max(esc.level, 1) - 1]
        self.page_level(level)
        acker = esc.acknowledged_by
        if reason == Reason.CRISIS_WORDS and acker and acker not in {
                self.policy.staff_for(t, workflow.now()) for t in level.targets}:
            self.page_member(acker)

    def client_answered(self) -> None:
        """A safe reply: a disclosure whose reason was the silence no longer follows."""
        self.state.client_answered = True
        if self.state.reason in Reason.ENDED_BY_A_SAFE_REPLY:
            self.outbox.withdraw(self.notices)

    def acknowledge(self, staff_id: str) -> None:
        self.state.acknowledged_by, self.state.acknowledged_at = staff_id, workflow.now()

    def close(self, staff_id: str, outcome: Any = None) -> None:
        """Resolved or cancelled by staff: nobody is paged or notified any more."""
        esc = self.state
        if esc.acknowledged_by is None:
            self.acknowledge(staff_id)
        esc.resolved_by, esc.resolved_at, esc.outcome = staff_id, workflow.now(), outcome
        self.outbox.withdraw([*self.pages, *self.notices])


def nobody_reachable(sends: list[asyncio.Task[Any]] | None) -> bool:
    """Every page of a level has failed for good: there is no one there to wait for."""
    return sends is not None and all(task.done() and (task.cancelled() or not task.result())
                                     for task in sends)



class StaffCalls:
    """Who owns the escalations of one workflow (a follow-up, or the Caring Contacts series
    after it): a reason opens one, or raises the one already out; a crisis also keeps the
    client's crisis resources going until a channel takes them."""

    def __init__(self, policy: ClinicPolicy, outbox: Outbox, trail: TrailWriter,
                 carried: EscalationState | None = None) -> None:
        self.policy = policy
        self.outbox = outbox
        self.trail = trail
        self.escalation = carried and Escalation(carried, policy, outbox, trail)
        self.opened = 1 if carried else 0
        self.crisis_resources: asyncio.Task[bool] | None = None

    def is_open(self) -> bool:
        return self.escalation is not None and not self.escalation.resolved

    def phase_or(self, otherwise: Phase) -> Phase:
        """What the board shows: an open escalation's phase, else the workflow's own."""
        if self.escalation is None or self.escalation.resolved:
            return otherwise
        return Phase.AWAITING_RESOLUTION if self.escalation.acknowledged else Phase.ESCALATING

    def ask(self, reason: str) -> None:
        """Page for ``reason`` now. With a chain already out, a more urgent reason is paged
        at its current level; a crisis restarts it from level 1 (or pages level 1 and the
        acknowledger) and re-sends the client crisis resources, whatever else is open."""
        esc = self.escalation
        if esc is not None and self.is_open():
            if reason == Reason.CRISIS_WORDS or Reason.more_urgent(reason, esc.state.reason):
                esc.raise_to(reason)
        else:
            esc = self.escalation = Escalation(
                EscalationState(reason=reason, code=self.new_code(), started_at=workflow.now()),
                self.policy, self.outbox, self.trail)
            self.opened += 1
            self.trail.record("escalation_started", outcome=reason,
                              detail={"code": esc.state.code})
            workflow.upsert_search_attributes([ACK_CODE.value_set(esc.state.code)])
            esc.start()  # pages go out before anything the client is sent
        if reason in Reason.CONTACT_AT_ONCE:
            self.send_crisis_resources(esc)

    def send_crisis_resources(self, esc: Escalation) -> None:
        """Until some channel accepts them, for as long as the escalation is open."""
        if self.crisis_resources is not None and not self.crisis_resources.done():
            return

        async def until_accepted() -> bool:
            while not esc.resolved:
                if await self.outbox.message_client("crisis_resources", [], SEND_DEADLINE,
                                                    None):
                    return True
                await wait_until(workflow.now() + CRISIS_RESOURCES_RETRY, lambda: esc.resolved)
            return False

        self.crisis_resources = self.outbox.fire(until_accepted(), False, "crisis_resources",
                                                 "client")
        self.outbox.client_tasks.append(self.crisis_resources)

    def new_code(self) -> str:
        return f"{workflow.random().randint(100000, 999999)}"
