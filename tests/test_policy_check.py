"""``aftercare-policy check``: a policy that would hurt a client at 2 am is refused with one
line naming the clinic and the key, through the real console script and the library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from aftercare.policies import PolicyBook
from aftercare.policy_check import clinic_problems
from aftercare.sms_segments import count_segments
from workflows.templates import DEFAULT_TEMPLATES

ROOT = Path(__file__).parents[1]
CHECK = [str(Path(sys.executable).with_name("aftercare-policy")), "check"]
CLINIC = "clinic-7"

# Accents make it UCS-2 (67 characters a segment): with the crisis line, three segments.
LONG_SPANISH_CHECKIN = ("Hola {first_name}, somos {clinic}. ¿Cómo estás después de hoy? "
                        "Responde OK si estás bien.")


def sound_clinic(**changes: Any) -> dict[str, Any]:
    clinic: dict[str, Any] = {
        "staff": {"t-1": {"name": "Dr. One", "phone": "+15555550142", "channel": "sms"},
                  "t-2": {"name": "Dr. Two", "email": "two@clinic.example", "channel": "email"}},
        "rota": {"on_call": [{"staff_id": "t-1"}], "backup": [{"staff_id": "t-2"}]},
        "clinic_lead": "t-2",
    }
    clinic.update(changes)
    return clinic


def spanish_checkin(text: str) -> dict[str, Any]:
    return {lang: {**t.model_dump(), **({"checkin": text} if lang == "es" else {})}
            for lang, t in DEFAULT_TEMPLATES.items()}


BROKEN = {
    "a gap in the on-call rota": (
        {"rota": {"on_call": [{"staff_id": "t-1", "days": [0, 1, 2, 3, 4]}],
                  "backup": [{"staff_id": "t-2"}]}},
        "rota.on_call: nobody on call Sat 00:00–Mon 00:00 (America/New_York)",
    ),
    "a level that reaches nobody": (
        {"clinic_lead": None},
        "escalation.levels.2: nobody reachable: clinic_lead: clinic_lead is not set",
    ),
    "a three-segment Spanish template": (
        {"templates": spanish_checkin(LONG_SPANISH_CHECKIN)},
        "templates.es.checkin: 3 SMS segments (",
    ),
    "an ack timeout of seconds in a production clinic": (
        {"escalation": {"ack_timeout": "PT5S", "levels": [
            {"targets": ["on_call"]}, {"targets": ["backup"]}, {"targets": ["clinic_lead"]}]}},
        "escalation.ack_timeout: PT5S is shorter than PT2M",
    ),
}


def policy_file(folder: Path, clinic: dict[str, Any]) -> Path:
    path = folder / "policies.yaml"
    path.write_text(yaml.safe_dump({"default": {}, CLINIC: clinic}, allow_unicode=True))
    return path


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHECK, str(path)], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def problems_of(**changes: Any) -> list[str]:
    book = PolicyBook({"default": {}, CLINIC: sound_clinic(**changes)})
    return clinic_problems(book.for_clinic(CLINIC))


def test_the_example_policy_file_passes():
    done = run_check(ROOT / "policies.example.yaml")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{ROOT / 'policies.example.yaml'}: no problems"


def test_a_sound_clinic_has_no_problems():
    assert problems_of() == []


@pytest.mark.parametrize("mistake", BROKEN)
def test_the_console_script_names_the_clinic_and_the_key_and_exits_2(tmp_path, mistake):
    changes, expected = BROKEN[mistake]
    path = policy_file(tmp_path, sound_clinic(**changes))

    done = run_check(path)

    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: {CLINIC}.{expected}")


@pytest.mark.parametrize("mistake", BROKEN)
def test_the_library_finds_the_same_problem(mistake):
    changes, expected = BROKEN[mistake]

    [problem] = problems_of(**changes)

    assert problem.startswith(expected)


def test_a_file_that_does_not_load_is_one_line_and_exit_2(tmp_path):
    path = policy_file(tmp_path, sound_clinic(rota={"on_call": [{"staff_id": "t-9"}]}))

    done = run_check(path)

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {path}: {CLINIC}: rota or clinic_lead names staff not in staff: t-9"]


def test_a_demo_clinic_may_run_in_seconds_but_not_in_zero():
    seconds = {"ack_timeout": "PT5S", "repage_every": "PT30S", "resolve_reminder": "PT1M",
               "levels": [{"targets": ["on_call"]}]}

    assert problems_of(demo=True, escalation=seconds) == []
    assert problems_of(demo=True, escalation={**seconds, "ack_timeout": "PT0S"}) == [
        "escalation.ack_timeout: PT0S: must be longer than zero"]


def test_each_gap_is_named_with_its_hours_in_the_clinics_zone():
    weekdays_from_eight_to_eight = [{"staff_id": "t-1", "days": [0, 1, 2, 3, 4],
                                     "start": "08:00", "end": "20:00"},
                                    {"staff_id": "t-1", "days": [4], "start": "20:00",
                                     "end": "23:00"}]

    problems = problems_of(timezone="Europe/Madrid",
                           rota={"on_call": weekdays_from_eight_to_eight,
                                 "backup": [{"staff_id": "t-2"}]})

    gaps = [p.removeprefix("rota.on_call: nobody on call ").removesuffix(" (Europe/Madrid)")
            for p in problems]
    # Sunday night into Monday morning is one gap, not two.
    assert gaps == ["Mon 20:00–Tue 08:00", "Tue 20:00–Wed 08:00", "Wed 20:00–Thu 08:00",
                    "Thu 20:00–Fri 08:00", "Fri 23:00–Mon 08:00"]


def test_an_overnight_shift_covers_the_morning_after():
    nights_and_days = [{"staff_id": "t-1", "start": "08:00", "end": "20:00"},
                       {"staff_id": "t-1", "start": "20:00", "end": "08:00"}]

    assert problems_of(rota={"on_call": nights_and_days, "backup": [{"staff_id": "t-2"}]}) == []


def test_a_paged_staff_member_without_an_address_on_their_channel_is_named():
    staff = {"t-1": {"name": "Dr. One", "email": "one@clinic.example", "channel": "sms"},
             "t-2": {"name": "Dr. Two", "email": "two@clinic.example", "channel": "email"}}

    assert problems_of(staff=staff) == [
        "staff.t-1.phone: t-1 is paged by sms, their channel, but has no phone"]


def test_a_language_the_clinic_serves_needs_templates():
    assert problems_of(languages=["fr"]) == [
        "templates.fr: missing: the clinic serves 'fr' (languages, crisis_line) but has no "
        "templates in it; its clients would be written to in 'en'"]


@pytest.mark.parametrize(("body", "encoding", "units", "segments"), [
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" + "a" * 159, "GSM-7", 161, 2),        # an extension character counts two
    ("ñé¿¡ü" + "a" * 155, "GSM-7", 160, 1),     # in the GSM-7 alphabet
    ("á" + "a" * 69, "UCS-2", 70, 1),           # one letter outside it: all UCS-2
    ("á" + "a" * 70, "UCS-2", 71, 2),
    ("á" + "a" * 133, "UCS-2", 134, 2),
    ("á" + "a" * 134, "UCS-2", 135, 3),
    ("🙂" + "a" * 68, "UCS-2", 70, 1),          # an emoji takes two UTF-16 units
])
def test_segments_are_counted_as_twilio_counts_them(body, encoding, units, segments):
    count = count_segments(body)

    assert (count.encoding, count.units, count.segments) == (encoding, units, segments)
