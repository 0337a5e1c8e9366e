"""The stories a simulated follow-up lives: what the client answers, and when staff answer.

Each story acts at the moment a person would: the client replies once the first message has
reached them; staff acknowledge and resolve an escalation as soon as they are paged, except
in ``no-reply``, where nobody answers until every round of the chain went unanswered.
"""

from __future__ import annotations

from enum import StrEnum


class Story(StrEnum):
    NO_REPLY = "no-reply"
    OK = "ok"
    CALL = "call"
    STOP = "stop"
    CRISIS = "crisis"

    @property
    def reply(self) -> str | None:
        """What the client texts back after the first message, if anything."""
        return _REPLIES.get(self)

    @property
    def staff_wait_for_exhausted_chain(self) -> bool:
        return self is Story.NO_REPLY

    @property
    def resolution(self) -> str:
        return "could_not_reach" if self is Story.NO_REPLY else "reached_client"


_REPLIES = {
    Story.OK: "OK",
    Story.CALL: "CALL",
    Story.STOP: "STOP",
    Story.CRISIS: "I want to end my life",
}
