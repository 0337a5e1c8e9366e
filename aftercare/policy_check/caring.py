"""A Caring Contacts series a clinic turned on: a schedule that moves forward and ends within
Motto & Bostrom's five years, send hours a client is awake for, and someone who reads the
replies. Its messages' lengths are checked with the others (``messages.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta

from aftercare.policy_check.chain import channel_address
from workflows.policy import ClinicPolicy, day_after

_SOME_DAY = date(2024, 1, 31)  # a month's last day: "P1M" must still move forward from it
LONGEST = "P5Y"
SHORTEST_WINDOW = timedelta(hours=1)


def caring_contacts_problems(policy: ClinicPolicy) -> Iterator[tuple[str, str]]:
    options = policy.caring_contacts
    if not options.enabled:
        return
    days = [day_after(_SOME_DAY, offset) for offset in options.schedule]
    for index in range(1, len(days)):
        if days[index] <= days[index - 1]:
            yield (f"caring_contacts.schedule.{index}",
                   f"{options.schedule[index]} is not after {options.schedule[index - 1]}: "
                   "each message comes later than the one before")
    if days[0] == _SOME_DAY:
        yield "caring_contacts.schedule.0", "P0D: the first message comes a day after at least"
    if days[-1] > day_after(_SOME_DAY, LONGEST):
        yield (f"caring_contacts.schedule.{len(days) - 1}",
               f"{options.schedule[-1]} is longer than {LONGEST}, the longest allowed")
    window = options.send_between
    opens = datetime.combine(_SOME_DAY, window.start)
    if datetime.combine(_SOME_DAY, window.end) - opens < SHORTEST_WINDOW:
        yield ("caring_contacts.send_between",
               f"{window.start:%H:%M} to {window.end:%H:%M} is shorter than an hour: send "
               "times cannot vary")
    quiet = policy.quiet_hours
    if quiet is not None and all(
            quiet.contains((opens + timedelta(minutes=m)).time())
            for m in range(0, int((datetime.combine(_SOME_DAY, window.end) - opens)
                                  / timedelta(minutes=1)), 15)):
        yield ("caring_contacts.send_between",
               "falls wholly in quiet_hours: every message would wait for their end")
    reviewer = options.reviewer_for(policy)
    if reviewer is None:
        yield ("caring_contacts.reviewer",
               "nobody reads replies: set a reviewer or clinic_lead")
    else:
        field, address = channel_address(policy.staff[reviewer])
        if address is None:
            yield ("caring_contacts.reviewer",
                   f"{reviewer} has no {field} for their channel: replies would go unread")
