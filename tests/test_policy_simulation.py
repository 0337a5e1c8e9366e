"""``aftercare-policy simulate``: the real follow-up on a private time-skipping server, played
through a story; the timeline's times follow the clinic's policy from the departure."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from aftercare.policies import PolicyBook
from aftercare.simulation import SimulationError, Story, simulate, simulation_policy
from aftercare.simulation.rehearsal import weeks_later, weeks_until

ROOT = Path(__file__).parents[1]
POLICY = Path(__file__).parents[1] / "policies.example.yaml"
SIMULATE = [str(Path(sys.executable).with_name("aftercare-policy")), "simulate"]
DEPARTED = "2026-11-21T01:50:00-05:00"
# Each step of the timeline may come this late: the worker's real time to act on a timer,
# added up along the chain (the demo clinic's timings are seconds).
LATENESS = timedelta(seconds=6)
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
