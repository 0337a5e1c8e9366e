"""``aftercare-policy simulate``: the real follow-up on a private time-skipping server, played
through a story; the timeline's times follow the clinic's policy from the departure."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from aftercare.policies import PolicyBook
from aftercare.simulation import SimulationError, Story, simulate, simulation_policy
from aftercare.simulation.rehearsal import weeks_later, weeks_until
from workflows.policy import day_after

ROOT = Path(__file__).parents[1]
POLICY = Path(__file__).parents[1] / "policies.example.yaml"
SIMULATE = [str(Path(sys.executable).with_name("aftercare-policy")), "simulate"]
DEPARTED = "2026-11-21T01:50:00-05:00"
# Each step of the timeline may come this late: the worker's real time to act on a timer,
# added up along the chain (the demo clinic's timings are seconds).
LATENESS = timedelta(seconds=6)
# A timeline that runs into another year shows the year in each line.
DATED_LINE = re.compile(r"^(\w{3} \d\d \w{3}(?: \d{4})? \d\d:\d\d:\d\d) +\+\S+(?: \S+)?"
                        r"  (\S.*?) {2,}(\S.*)$")
LINE = re.compile(r"^(\w{3} \d\d \w{3} \d\d:\d\d:\d\d) +\+(?:(\d+)d )?(\d+):(\d\d):(\d\d)"
                  r"  (\S.*?) {2,}(\S.*)$")


def moments(output: str) -> list[tuple[timedelta, str, str]]:
    """(time since departure, who, what) of each timeline line."""
    found = []
    for line in output.splitlines()[1:]:
        if match := LINE.match(line):
            _, days, hours, minutes, seconds, who, what = match.groups()
            since = timedelta(days=int(days or 0), hours=int(hours), minutes=int(minutes),
                              seconds=int(seconds))
            found.append((since, who, what))
    return found


def first(found: list[tuple[timedelta, str, str]], who: str, what: str) -> timedelta:
    return next(since for since, w, text in found if w == who and text.startswith(what))


def test_no_reply_pages_the_chain_at_the_demo_clinics_timings():
    demo = PolicyBook.load(POLICY).for_clinic("demo")
    done = subprocess.run([*SIMULATE, "--clinic", "demo", "--risk", "moderate",
                           "--story", "no-reply", "--departed-at", DEPARTED,
                           "--policy", str(POLICY)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("demo (Demo Clinic), moderate risk, story no-reply: the client "
                               "left at Sat 21 Nov 2026 01:50:00 (America/New_York)")
    found = moments(done.stdout)
    checkin = demo.checkin_delay.moderate
    window_end = checkin + demo.response_window.moderate
    ack = demo.escalation.ack_timeout
    expected = {
        ("client", "checkin by sms"): checkin,
        ("client", "reminder by sms"): checkin + demo.reminders[0],
        ("oncall-demo (on call)", "staff page by sms: no reply"): window_end,
        ("backup-demo (backup)", "staff page by email: no reply"): window_end + ack,
        ("emergency contact", "emergency contact notice by sms"): window_end + ack,
        ("lead-demo (clinic lead)", "staff page by email: no reply"): window_end + 2 * ack,
    }
    for (who, what), due in expected.items():
        assert due <= first(found, who, what) <= due + LATENESS, (who, what, done.stdout)
    # The clock the client lives: 01:50 plus the check-in delay, in New York.
    assert any(line.startswith("Sat 21 Nov 01:50:0") and "checkin by sms" in line
               for line in lines)
    # Nobody acknowledged: the chain was walked twice (repeats: 1), then a staff resolve.
    exhausted = first(found, "follow-up", "escalation unacknowledged")
    pages = [since for since, who, what in found
             if what.startswith("staff page") and since < exhausted]
    assert len(pages) == 2 * len(demo.escalation.levels)
    assert any(who == "oncall-demo (on call)" and what == "resolved: could_not_reach"
               for _, who, what in found)
    assert found[-1][2].startswith("closed")
    # What the client read is shown under the message, crisis line and all.
    assert "“Hi Dana, this is Demo Clinic checking in" in done.stdout
    assert "988" in done.stdout


async def test_a_crisis_text_after_the_check_in_pages_at_once():
    policy = simulation_policy(PolicyBook.load(POLICY), "demo")

    simulated = await simulate(policy, "moderate", Story.CRISIS,
                               datetime.fromisoformat(DEPARTED))

    steps = [(m.who, m.what) for m in simulated.moments]
    reply = next(m for m in simulated.moments if m.what.startswith("reply received"))
    page = next(m for m in simulated.moments if m.what.startswith("staff page"))
    assert page.what == "staff page by sms: crisis words in a reply"
    assert page.who == "oncall-demo (on call)"
    assert page.since_departure - reply.since_departure < timedelta(seconds=2)
    assert ("client", "crisis resources by sms") in steps


def test_an_unknown_clinic_is_one_line_and_exit_2():
    done = subprocess.run([*SIMULATE, "--clinic", "nowhere", "--risk", "low", "--story", "ok",
                           "--policy", str(POLICY)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {POLICY}: no clinic 'nowhere' (it has clinic-42, demo)"]


def test_a_departure_without_its_utc_offset_is_refused():
    done = subprocess.run([*SIMULATE, "--clinic", "demo", "--risk", "low", "--story", "ok",
                           "--departed-at", "2026-11-21T01:50:00"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: argument --departed-at: '2026-11-21T01:50:00' has no UTC offset: write it as "
        "e.g. 2026-11-21T01:50:00-05:00"]


def test_a_clinic_missing_from_the_book_is_named_by_the_library():
    with pytest.raises(SimulationError, match="no clinic 'nowhere'"):
        simulation_policy(PolicyBook.load(POLICY), "nowhere")


def test_a_past_departure_runs_weeks_later_on_the_same_local_weekday_and_time():
    # Before New York's clocks went back (1 November 2026), run after it: wall time holds.
    departed = datetime.fromisoformat("2026-10-31T01:50:00-04:00")
    now = datetime.fromisoformat("2026-11-20T12:00:00+00:00")

    weeks = weeks_until(departed, now)
    moved = weeks_later(departed, weeks, "America/New_York")

    assert weeks == 3
    assert moved >= now
    assert (moved.weekday(), moved.hour, moved.minute) == (departed.weekday(), 1, 50)
    assert moved.utcoffset() == timedelta(hours=-5)


def local_moments(output: str) -> list[tuple[datetime, str, str]]:
    """(the client's local time, who, what) of each timeline line that shows its year."""
    found = []
    for line in output.splitlines()[1:]:
        if match := DATED_LINE.match(line):
            when, who, what = match.groups()
            found.append((datetime.strptime(when, "%a %d %b %Y %H:%M:%S"), who, what))
    return found


def in_hours(moment: time, start: time, end: time) -> bool:
    """Whether ``moment`` falls in local hours that may run past midnight (quiet hours)."""
    return start <= moment < end if start < end else moment >= start or moment < end


def test_caring_story_prints_each_series_message_on_its_day_in_waking_hours_through_the_last():
    clinic = PolicyBook.load(POLICY).for_clinic("clinic-42")
    assert not clinic.caring_contacts.enabled, "the simulation turns it on and says so"
    # A departure ahead of now: the run needs no shift of whole weeks, so every month of the
    # series falls on the calendar day the clinic would see.
    zone = ZoneInfo(clinic.timezone)
    departed = (datetime.now(zone) + timedelta(days=2)).replace(
        hour=14, minute=50, second=0, microsecond=0)
    done = subprocess.run([*SIMULATE, "--clinic", "clinic-42", "--risk", "moderate",
                           "--story", "caring", "--departed-at", departed.isoformat(),
                           "--policy", str(POLICY)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("clinic-42 (Riverside Counseling), moderate risk, story caring")
    assert lines[1] == ("caring_contacts is off for this clinic: turned on for this "
                        "simulation, with the clinic's schedule and send times")
    found = local_moments(done.stdout)
    steps = [what for _, _, what in found]
    # The follow-up ends unbooked: OK, then no to the offer.
    assert "reply received: safe" in steps and "reply received: declined" in steps
    assert "reschedule not chosen: declined" in steps
    assert not [what for what in steps if what.startswith("booking")]
    (series_start,) = [at for at, who, what in found
                       if (who, what) == ("caring contacts", "series started")]
    sends = [(at, what) for at, who, what in found
             if who == "client" and what.startswith("caring ")]
    schedule = clinic.caring_contacts.schedule
    assert [what for _, what in sends] == (["caring first by sms"]
                                           + ["caring contact by sms"] * (len(schedule) - 2)
                                           + ["caring last by sms"])
    window = clinic.caring_contacts.send_between
    quiet = clinic.quiet_hours
    assert quiet is not None
    for (at, _), offset in zip(sends, schedule, strict=True):
        assert at.date() == day_after(series_start.date(), offset), (offset, at)
        assert window.start <= at.time() < window.end, (offset, at)
        assert not in_hours(at.time(), quiet.start, quiet.end), (offset, at)
    # The timeline ends with the last message and the text the client received.
    last_at, last_who, last_what = DATED_LINE.match(lines[-2]).groups()
    assert (last_who.strip(), last_what) == ("client", "caring last by sms")
    assert "This is the last of our messages" in lines[-1]
