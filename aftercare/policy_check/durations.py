"""Timings a production clinic would not mean: an ack timeout of seconds pages the whole
chain before anyone can read the first page.

A clinic whose timings are seconds on purpose (a demonstration, a test) says ``demo: true``;
its durations need only be positive and not longer than production's longest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from pydantic import TypeAdapter

from workflows.policy import ClinicPolicy

_DURATION = TypeAdapter(timedelta)


@dataclass(frozen=True)
class SaneRange:
    shortest: timedelta
    longest: timedelta
    why: str  # what goes wrong below the shortest


def _minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


CHECKIN_DELAY = SaneRange(timedelta(0), timedelta(days=1), "")
RESPONSE_WINDOW = SaneRange(_minutes(10), timedelta(days=3),
                            "too short for a client to read and answer")
REMINDER = SaneRange(_minutes(5), timedelta(days=1), "a reminder on the heels of the check-in")
FALLBACK_AFTER = SaneRange(timedelta(seconds=30), _minutes(15),
                           "a provider's ordinary delay would send everything twice")
LISTEN_AFTER_CLOSE = SaneRange(timedelta(0), timedelta(days=30), "")
ACK_TIMEOUT = SaneRange(_minutes(2), timedelta(hours=1),
                        "too short for anyone to take a page before the next level is paged")
RESOLVE_REMINDER = SaneRange(_minutes(10), timedelta(days=1),
                             "reminds the acknowledger before they can have called")
REPAGE_EVERY = SaneRange(_minutes(5), timedelta(hours=2),
                         "re-pages the whole chain before anyone can answer")
OFFER_WINDOW = SaneRange(timedelta(hours=1), timedelta(days=14),
                         "too short for a client to choose a slot")


def iso(duration: timedelta) -> str:
    return _DURATION.dump_python(duration, mode="json")


def _durations(policy: ClinicPolicy) -> Iterator[tuple[str, timedelta, SaneRange]]:
    for risk in ("low", "moderate", "high", "imminent"):
        yield f"checkin_delay.{risk}", policy.checkin_delay.for_risk(risk), CHECKIN_DELAY
        yield f"response_window.{risk}", policy.response_window.for_risk(risk), RESPONSE_WINDOW
    for i, reminder in enumerate(policy.reminders):
        yield f"reminders.{i}", reminder, REMINDER
    yield "fallback_after", policy.fallback_after, FALLBACK_AFTER
    yield "listen_after_close", policy.listen_after_close, LISTEN_AFTER_CLOSE
    chain = policy.escalation
    yield "escalation.ack_timeout", chain.ack_timeout, ACK_TIMEOUT
    for i, level in enumerate(chain.levels):
        if level.ack_timeout is not None:
            yield f"escalation.levels.{i}.ack_timeout", level.ack_timeout, ACK_TIMEOUT
    yield "escalation.resolve_reminder", chain.resolve_reminder, RESOLVE_REMINDER
    if chain.repage_every is not None:  # None: at once, after the last level's ack timeout
        yield "escalation.repage_every", chain.repage_every, REPAGE_EVERY
    if policy.reschedule.enabled:
        yield "reschedule.offer_window", policy.reschedule.offer_window, OFFER_WINDOW


def duration_problems(policy: ClinicPolicy) -> Iterator[tuple[str, str]]:
    for key, value, sane in _durations(policy):
        if value < timedelta(0):
            yield key, f"{iso(value)} is negative"
        elif value > sane.longest:
            yield key, f"{iso(value)} is longer than {iso(sane.longest)}, the longest allowed"
        elif policy.demo:
            if value == timedelta(0) and sane.shortest > timedelta(0):
                yield key, f"{iso(value)}: must be longer than zero"
        elif value < sane.shortest:
            yield key, (f"{iso(value)} is shorter than {iso(sane.shortest)}: {sane.why} "
                        "(a demo or test clinic whose timings are seconds sets demo: true)")
