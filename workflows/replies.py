"""What a client's reply means for the follow-up.

Crisis words win over everything, even inside an "OK": a person who writes "ok but I want
to die" is not safe. Keywords follow Twilio's opt-out conventions for STOP and START.

Two ways to recognise a crisis: `names_a_crisis_word`, the policy's words whole in the
text, which follow-ups started under it must keep when they replay; and
`workflows.crisis.mentions_crisis`, which reads phrasings as clients text them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from enum import StrEnum


class ReplyKind(StrEnum):
    SAFE = "safe"
    CALL = "call_requested"
    STOP = "opted_out"
    START = "opted_in"
    HELP = "help"
    CRISIS = "crisis_words"
    SLOT = "slot_chosen"
    DECLINE = "declined"
    OTHER = "needs_review"


SAFE_WORDS = {"ok", "okay", "1", "fine", "bien", "estoy bien", "im ok", "i'm ok", "i am ok"}
CALL_WORDS = {"call", "2", "call me", "llamar", "llamame", "llamenme"}
# Twilio's standard opt-out and opt-in keywords.
STOP_WORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
START_WORDS = {"start", "yes", "unstop", "subscribe"}
HELP_WORDS = {"help", "info", "ayuda"}
DECLINE_WORDS = {"no", "no thanks", "no gracias"}


def normalize(text: str) -> str:
    """Lower case, accents off, punctuation and repeated spaces squeezed."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = re.sub(r"[^\w' ]+", " ", plain)
    return " ".join(plain.split())


def names_a_crisis_word(text: str, crisis_words: Iterable[str]) -> bool:
    """A policy crisis word, whole, in the reply after `normalize`: nothing more."""
    padded = f" {normalize(text)} "
    return any(f" {normalize(word)} " in padded for word in crisis_words)


CrisisRecogniser = Callable[[str, Iterable[str]], bool]


def classify(
    text: str,
    crisis_words: list[str],
    slot_letters: str = "",
    *,
    recognise_crisis: CrisisRecogniser = names_a_crisis_word,
) -> tuple[ReplyKind, int | None]:
    """The kind of a reply and, for a slot choice, the slot's index.

    `recognise_crisis` is given the reply and `crisis_words`; pass
    `workflows.crisis.mentions_crisis` for phrasings as clients text them."""
    said = normalize(text)
    if recognise_crisis(text, crisis_words):
        return ReplyKind.CRISIS, None
    if said in STOP_WORDS:
        return ReplyKind.STOP, None
    if said in START_WORDS:
        return ReplyKind.START, None
    if said in HELP_WORDS:
        return ReplyKind.HELP, None
    if slot_letters and len(said) == 1 and said.upper() in slot_letters:
        return ReplyKind.SLOT, slot_letters.index(said.upper())
    if slot_letters and said in DECLINE_WORDS:
        return ReplyKind.DECLINE, None
    if said.rstrip("!. ") in SAFE_WORDS:
        return ReplyKind.SAFE, None
    if said in CALL_WORDS:
        return ReplyKind.CALL, None
    return ReplyKind.OTHER, None


# Replies that only answer the protocol: safe, opt out or in, help, a declined offer.
PLAIN_ANSWERS = SAFE_WORDS | STOP_WORDS | START_WORDS | HELP_WORDS | DECLINE_WORDS


def may_page(text: str) -> bool:
    """Whether a reply may have the follow-up page someone (a crisis, a call asked for,
    anything on-call is asked to read): every reply but a plain answer or a slot's letter.
    Crisis words inside an answer ("ok but I want to die") are not a plain answer."""
    said = normalize(text)
    return not (said.rstrip("!. ") in PLAIN_ANSWERS or (len(said) == 1 and said.isalpha()))
