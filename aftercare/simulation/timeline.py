"""The timeline a simulated follow-up's people lived, from its trail and the sinks: each
message with its time in the client's local time and the text as delivered, each page with
who (staff id and role), when and why."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from workflows.models import AuditEntry
from workflows.policy import ClinicPolicy, Target

ROLE_NAMES = {Target.ON_CALL: "on call", Target.BACKUP: "backup",
              Target.CLINIC_LEAD: "clinic lead"}
ESCALATION_OPENED = ("escalation_started", "escalation_raised")


@dataclass(frozen=True)
class Moment:
    at: datetime  # the client's local time
    since_departure: timedelta
    who: str
    what: str
    text: str | None = None  # what the person received, as delivered


def timeline(
    trail: list[AuditEntry], policy: ClinicPolicy, *, departed_at: datetime, weeks_later: int,
    client_timezone: str, delivered: dict[str, str], author: str = "follow-up",
) -> list[Moment]:
    """``trail`` as moments. The follow-up ran from ``departed_at``, ``weeks_later`` whole
    weeks after the departure asked for; each moment is shown at the wall-clock time the
    client lived it, moved back by those weeks (same weekday and time: across a change of
    daylight saving time too, which a year of Caring Contacts always crosses). ``delivered``
    maps a provider's message id to the text the sink received; ``author`` names who acted
    when no person did."""
    zone = ZoneInfo(client_timezone)
    moments = []
    for entry, who, what in _described(trail, policy, author):
        lived = entry.at.astimezone(zone).replace(tzinfo=None) - timedelta(weeks=weeks_later)
        moments.append(Moment(lived.replace(tzinfo=zone), entry.at - departed_at, who, what,
                              delivered.get(entry.provider_message_id or "")
                              if entry.step.endswith("_sent") else None))
    return moments


def _described(trail: list[AuditEntry], policy: ClinicPolicy, author: str
               ) -> Iterator[tuple[AuditEntry, str, str]]:
    reason = ""
    for entry in trail:
        if entry.step in ESCALATION_OPENED:
            reason = entry.outcome or reason
        who = _who(entry, policy, author)
        if entry.step.endswith("_sent"):
            kind = _words(entry.step.removesuffix("_sent"))
            why = f": {reason}" if entry.step == "staff_page_sent" and reason else ""
            yield entry, who, f"{kind} by {entry.channel}{why}"
        else:
            outcome = f": {entry.outcome}" if entry.outcome else ""
            yield entry, who, f"{_words(entry.step)}{outcome}"


def _who(entry: AuditEntry, policy: ClinicPolicy, author: str) -> str:
    recipient = entry.recipient or ""
    if recipient.startswith("staff:"):
        staff_id = recipient.removeprefix("staff:")
        roles = [name for target, name in ROLE_NAMES.items()
                 if policy.staff_for(target, entry.at) == staff_id]
        return f"{staff_id} ({', '.join(roles)})" if roles else staff_id
    if recipient:
        return _words(recipient)
    return "client" if entry.actor == "client" else author


def _words(name: str) -> str:
    return name.replace("_", " ")


def _since(delta: timedelta) -> str:
    days, seconds = delta.days, int(delta.seconds)
    clock = f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"+{days}d {clock}" if days else f"+{clock}"


def render(moments: list[Moment], heading: str) -> list[str]:
    """Plain lines: the heading, then one line a moment (and the text received under it).
    A timeline that runs into another year (a Caring Contacts series) shows each year."""
    lines = [heading]
    years = {m.at.year for m in moments}
    when_format = "%a %d %b %Y %H:%M:%S" if len(years) > 1 else "%a %d %b %H:%M:%S"
    who_width = max((len(m.who) for m in moments), default=0)
    since_width = max((len(_since(m.since_departure)) for m in moments), default=0)
    for moment in moments:
        line = (f"{moment.at.strftime(when_format)}  "
                f"{_since(moment.since_departure):>{max(since_width, 12)}}  ")
        lines.append(f"{line}{moment.who:<{who_width}}  {moment.what}")
        if moment.text:
            lines.append(f"{'':>{len(line) + who_width + 4}}"
                         f"“{moment.text.strip().replace(chr(10), ' / ')}”")
    return lines
