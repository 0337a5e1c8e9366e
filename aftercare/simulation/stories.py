"""The stories a simulated follow-up lives: what the client answers, and when staff answer.

Each story acts at the moment a person would: the client replies once the first message has
reached them; staff acknowledge and resolve an escalation as soon as they are paged, except
in ``no-reply``, where nobody answers until every round of the chain went unanswered. In
``caring`` the client answers OK, says no to the reschedule offer, and the follow-up, ended
without a booking, hands on to the clinic's Caring Contacts series, followed to its last
message.
"""

from __future__ import annotations

from enum import StrEnum


class Story(StrEnum):
    NO_REPLY = "no-reply"
    OK = "ok"
    CALL = "call"
    STOP = "stop"
    CRISIS = "crisis"
    CARING = "caring"

    @property
    def reply(self) -> str | None:
        """What the client texts back after the first message, if anything."""
        return _REPLIES.get(self)

    @property
    def declines_offer(self) -> bool:
        """Whether the client answers the reschedule offer with no."""
        return self is Story.CARING

    @property
    def follows_caring_contacts(self) -> bool:
        """Whether the story goes on into the Caring Contacts series after the follow-up."""
        return self is Story.CARING

    @property
    def staff_wait_for_exhausted_chain(self) -> bool:
        return self is Story.NO_REPLY

    @property
    def resolution(self) -> str:
        return "could_not_reach" if self is Story.NO_REPLY else "reached_client"


DECLINE_OFFER = "no"  # what the client texts back to the reschedule offer

_REPLIES = {
    Story.OK: "OK",
    Story.CARING: "OK",
    Story.CALL: "CALL",
    Story.STOP: "STOP",
    Story.CRISIS: "I want to end my life",
}
