"""What a client's words mean: crisis words win, Twilio's keywords, slot letters."""

from __future__ import annotations

import pytest

from workflows.crisis import mentions_crisis
from workflows.replies import ReplyKind, classify, may_page
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


@pytest.mark.parametrize("text", [
    "i wanna die", "I took all my pills", "cutting myself again", "kill my self",
    "me quiero matar", "me voy a matar", "ya no aguanto más", "ok but i want to dieee",
])
def test_crisis_phrasings_as_texted_escalate_with_the_new_recogniser(text):
    assert classify(text, WORDS, recognise_crisis=mentions_crisis)[0] is ReplyKind.CRISIS


@pytest.mark.parametrize(("text", "kind"), [
    ("OK", ReplyKind.SAFE), ("1", ReplyKind.SAFE), ("Estoy bien", ReplyKind.SAFE),
    ("CALL", ReplyKind.CALL), ("STOP", ReplyKind.STOP), ("help", ReplyKind.HELP),
    ("this traffic is killing me", ReplyKind.OTHER), ("I'm okay-ish, kind of", ReplyKind.OTHER),
])
def test_ordinary_replies_keep_their_kind_with_the_new_recogniser(text, kind):
    assert classify(text, WORDS, recognise_crisis=mentions_crisis)[0] is kind


def test_slot_letters_and_no_stay_choices_with_the_new_recogniser():
    assert classify("b", WORDS, "AB", recognise_crisis=mentions_crisis) == (ReplyKind.SLOT, 1)
    assert classify("no", WORDS, "AB", recognise_crisis=mentions_crisis)[0] is ReplyKind.DECLINE


def test_the_first_recogniser_stays_the_default_so_running_follow_ups_replay_alike():
    assert classify("i wanna die", WORDS)[0] is ReplyKind.OTHER
    assert classify("me quiero matar", WORDS)[0] is ReplyKind.OTHER
    assert classify("quiero MORIR", WORDS)[0] is ReplyKind.CRISIS


@pytest.mark.parametrize(("text", "pages"), [
    ("OK", False), ("ok!", False), ("Estoy bien", False), ("STOP", False), ("yes", False),
    ("help", False), ("no thanks", False), ("B", False), ("1", False),
    ("2", True), ("call me", True), ("ok but I want to die", True), ("took the pills", True),
    ("can we talk later?", True),
])
def test_only_a_plain_answer_cannot_page_anyone(text, pages):
    """The intake puts a follow-up ahead of routine work for every other text."""
    assert may_page(text) is pages
