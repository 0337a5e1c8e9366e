"""What a client's words mean: crisis words win, Twilio's keywords, slot letters."""

from __future__ import annotations

import pytest

from workflows.replies import ReplyKind, classify
from workflows.templates import DEFAULT_CRISIS_WORDS

WORDS = DEFAULT_CRISIS_WORDS["en"] + DEFAULT_CRISIS_WORDS["es"]


@pytest.mark.parametrize(("text", "kind"), [
    ("OK", ReplyKind.SAFE), (" ok! ", ReplyKind.SAFE), ("1", ReplyKind.SAFE),
    ("Estoy bien", ReplyKind.SAFE),
    ("CALL", ReplyKind.CALL), ("2", ReplyKind.CALL), ("llamar", ReplyKind.CALL),
    ("STOP", ReplyKind.STOP), ("unsubscribe", ReplyKind.STOP), ("Quit", ReplyKind.STOP),
    ("START", ReplyKind.START), ("unstop", ReplyKind.START),
    ("help", ReplyKind.HELP),
    ("ok but I want to die", ReplyKind.CRISIS),
    ("thinking about SUICIDE", ReplyKind.CRISIS),
    ("quiero MORIR", ReplyKind.CRISIS),
    ("no quiero vivir", ReplyKind.CRISIS),
    ("Suicídio", ReplyKind.CRISIS),
    ("I'm okay-ish, kind of", ReplyKind.OTHER),
    ("A", ReplyKind.OTHER),
])
def test_reply_kinds(text, kind):
    assert classify(text, WORDS)[0] is kind


def test_crisis_words_match_whole_words_only():
    assert classify("I skilled myself at chess", WORDS)[0] is ReplyKind.OTHER


def test_slot_letters_only_count_while_slots_are_offered():
    assert classify("b", WORDS, slot_letters="AB") == (ReplyKind.SLOT, 1)
    assert classify("C", WORDS, slot_letters="AB")[0] is ReplyKind.OTHER
    assert classify("no thanks", WORDS, slot_letters="AB")[0] is ReplyKind.DECLINE
    assert classify("1", WORDS, slot_letters="AB")[0] is ReplyKind.SAFE
