"""Every reply acted on the moment it arrives.

A reply is classified, recorded and acted on in the activation it arrives in, whatever the
protocol is doing: triage, check-in, waiting, escalating, offering, booking, listening,
closing or cancelled. Acting means deciding and starting sends and pages; nothing here
ever waits for one, for the trail, or for the protocol to reach a step.
"""

from __future__ import annotations

from typing import Protocol

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.crisis import mentions_crisis
    from workflows.escalation import Reason
    from workflows.models import Actor, Channel, ClientReply, RiskLevel
    from workflows.policy import ClinicPolicy
    from workflows.replies import ReplyKind, classify
    from workflows.trail import TrailWriter


class ReplyActions(Protocol):
    """What a reply can do to the follow-up that owns the inbox."""

    def ask_staff(self, reason: str) -> None: ...
    def client_is_safe(self) -> None: ...
    def set_opted_out(self, opted_out: bool) -> None: ...
    def choose_slot(self, index: int) -> None: ...
    def decline_offer(self) -> None: ...
    def say_to_client(self, kind: str) -> None: ...
    def tell_paged_staff_of_reply(self, kind: str) -> None: ...
    def keep_reply_for_review(self, text: str) -> None: ...


class Inbox:
    def __init__(self, policy: ClinicPolicy, risk: RiskLevel, trail: TrailWriter,
                 actions: ReplyActions) -> None:
        self.policy = policy
        self.risk = risk
        self.trail = trail
        self.actions = actions
        # The clinic's own crisis phrases in every language: a client may write in a
        # language other than the one on file.
        self.crisis_words = [word for phrases in policy.crisis_words.values()
                             for word in phrases]

    def take(self, reply: ClientReply, slot_letters: str) -> ReplyKind:
        kind, slot = classify(reply.text, self.crisis_words, slot_letters,
                              recognise_crisis=mentions_crisis)
        self.trail.record("reply_received", actor=Actor.CLIENT, channel=str(reply.channel),
                          provider_message_id=reply.provider_message_id, outcome=kind.value)
        if kind is not ReplyKind.CRISIS:
            # Whoever is trying to reach the client should know they answered; the
            # escalation still waits for staff to close it.
            self.actions.tell_paged_staff_of_reply(kind.value)
        act = self.actions
        if kind is ReplyKind.CRISIS:
            act.ask_staff(Reason.CRISIS_WORDS)
        elif kind is ReplyKind.STOP:
            act.set_opted_out(True)
            if self.risk in (RiskLevel.HIGH, RiskLevel.IMMINENT):
                act.ask_staff(Reason.OPTED_OUT_AT_HIGH_RISK)
        elif kind is ReplyKind.START:
            act.set_opted_out(False)
            if self.answers_keyword(reply):
                act.say_to_client("opted_in")
        elif kind is ReplyKind.SAFE:
            act.client_is_safe()
            act.say_to_client("glad_you_are_ok")
        elif kind is ReplyKind.CALL:
            act.ask_staff(Reason.CALL_REQUESTED)
            act.say_to_client("call_requested")
        elif kind is ReplyKind.SLOT and slot is not None:
            act.choose_slot(slot)
        elif kind is ReplyKind.DECLINE:
            act.decline_offer()
        elif kind is ReplyKind.HELP:
            if self.answers_keyword(reply):
                act.say_to_client("help")
        else:
            act.keep_reply_for_review(reply.text)
            act.ask_staff(Reason.NEEDS_REVIEW)
            act.say_to_client("reply_received")
        return kind

    def answers_keyword(self, reply: ClientReply) -> bool:
        """HELP and START are answered once: by Twilio's opt-out handling when the text came
        by SMS and the policy says Twilio answers them, otherwise by us."""
        return not (reply.channel == Channel.SMS
                    and self.policy.sms_keywords_answered_by_provider)
