"""The messages a clinic sends: one in every language it serves, and no text to a client
longer than two SMS segments, crisis line included, as Twilio counts them.

Texts are rendered as the follow-up renders them (``workflows/outbox.py``): the template
filled in, then a new line and the crisis line of that language. The client's first name
is ``SAMPLE_FIRST_NAME``, a long name in plain letters: a name with a letter outside the
GSM-7 alphabet (``María``) turns any text into UCS-2, which no template can rule out.
"""

from __future__ import annotations

from collections.abc import Iterator

from aftercare.sms_segments import count_segments
from workflows.policy import ClinicPolicy
from workflows.templates import MessageTemplates

MAX_SEGMENTS = 2
SAMPLE_FIRST_NAME = "Maria Guadalupe"  # 15 letters, a common compound first name
SAMPLE_CONTACT_NAME = "Maximiliano"
SAMPLE_SLOT = {"weekday_index": 2, "day": 25, "month": 11, "time": "14:00"}

# What the follow-up (and its Caring Contacts series) texts a client, each ending with the
# crisis line.
CLIENT_TEXTS = ("checkin", "reminder", "crisis_resources", "glad_you_are_ok", "call_requested",
                "reply_received", "opted_in", "help", "reschedule_offer", "booking_confirmed",
                "caring_first", "caring_contact", "caring_last")
CARING_TEXTS = ("caring_first", "caring_contact", "caring_last")


def served_languages(policy: ClinicPolicy) -> list[str]:
    """The clinic's own language, those it lists, and those it wrote a crisis line in."""
    return list(dict.fromkeys([policy.default_language, *policy.languages, *policy.crisis_line]))


def language_problems(policy: ClinicPolicy) -> Iterator[tuple[str, str]]:
    for language in served_languages(policy):
        if language not in policy.templates:
            yield (f"templates.{language}",
                   f"missing: the clinic serves {language!r} (languages, crisis_line) but has "
                   f"no templates in it; its clients would be written to in "
                   f"{policy.default_language!r}")
        elif language not in policy.crisis_line:
            yield (f"crisis_line.{language}",
                   f"missing: the clinic serves {language!r}; every client message carries "
                   "the crisis line")


def _slot(templates: MessageTemplates) -> str:
    return templates.slot_time.format(
        weekday=templates.weekdays[SAMPLE_SLOT["weekday_index"]], day=SAMPLE_SLOT["day"],
        month=SAMPLE_SLOT["month"], time=SAMPLE_SLOT["time"])


def _slots(policy: ClinicPolicy, templates: MessageTemplates) -> str:
    choices = [templates.slot_choice.format(letter=chr(ord("A") + i), slot=_slot(templates))
               for i in range(len(policy.reschedule.slots))]
    if policy.reschedule.booking_url:
        choices.append(templates.book_online.format(url=policy.reschedule.booking_url))
    return " ".join(choices)


def client_texts(policy: ClinicPolicy, language: str) -> Iterator[tuple[str, str]]:
    """(template name, the text as sent) for every text a client or their emergency
    contact may get in ``language``."""
    templates = policy.templates[language]
    fields = {"first_name": SAMPLE_FIRST_NAME, "clinic": policy.clinic_name,
              "slots": _slots(policy, templates), "slot": _slot(templates)}
    crisis_line = policy.crisis_line_for(language)
    for kind in CLIENT_TEXTS:
        if kind in ("reschedule_offer", "booking_confirmed") and not policy.reschedule.enabled:
            continue
        if kind in CARING_TEXTS and not policy.caring_contacts.enabled:
            continue
        yield kind, f"{getattr(templates, kind).format(**fields)}\n{crisis_line}"
    notice = templates.emergency_contact_notice.format(
        contact_name=SAMPLE_CONTACT_NAME, first_name=SAMPLE_FIRST_NAME, clinic=policy.clinic_name)
    yield "emergency_contact_notice", f"{notice}\n{crisis_line}"


def sms_length_problems(policy: ClinicPolicy) -> Iterator[tuple[str, str]]:
    for language in policy.templates:
        for kind, text in client_texts(policy, language):
            count = count_segments(text)
            if count.segments <= MAX_SEGMENTS:
                continue
            why = (f"UCS-2 because of {', '.join(map(repr, count.outside_gsm7))}"
                   if count.outside_gsm7 else "GSM-7")
            yield (f"templates.{language}.{kind}",
                   f"{count.segments} SMS segments ({count.units} characters, {why}), with the "
                   f"crisis line and the first name {SAMPLE_FIRST_NAME!r}; at most "
                   f"{MAX_SEGMENTS} (306 GSM-7 or 134 UCS-2 characters)")
