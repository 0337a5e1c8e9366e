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
    trail: list[AuditEntry], policy: ClinicPolicy, *, departed_at: datetime,
    shown_departure: datetime, client_timezone: str, delivered: dict[str, str],
) -> list[Moment]:
    """``trail`` as moments. The follow-up ran from ``departed_at``; its times are shown as
    from ``shown_departure`` (the same local time, the week asked for). ``delivered`` maps a
    provider's message id to the text the sink received."""
    zone = ZoneInfo(client_timezone)
    moments = []
    for entry, who, what in _described(trail, policy):
        since = entry.at - departed_at
        local = shown_departure.astimezone(zone).replace(tzinfo=None) + since
        moments.append(Moment(local.replace(tzinfo=zone), since, who, what,
                              delivered.get(entry.provider_message_id or "")
                              if entry.step.endswith("_sent") else None))
    return moments


def _described(trail: list[AuditEntry], policy: ClinicPolicy
               ) -> Iterator[tuple[AuditEntry, str, str]]:
    reason = ""
    for entry in trail:
        if entry.step in ESCALATION_OPENED:
            reason = entry.outcome or reason
        who = _who(entry, policy)
        if entry.step.endswith("_sent"):
            kind = _words(entry.step.removesuffix("_sent"))
            why = f": {reason}" if entry.step == "staff_page_sent" and reason else ""
            yield entry, who, f"{kind} by {entry.channel}{why}"
        else:
            outcome = f": {entry.outcome}" if entry.outcome else ""
            yield entry, who, f"{_words(entry.step)}{outcome}"


def _who(entry: AuditEntry, policy: ClinicPolicy) -> str:
    recipient = entry.recipient or ""
    if recipient.startswith("staff:"):
        staff_id = recipient.removeprefix("staff:")
        roles = [name for target, name in ROLE_NAMES.items()
                 if policy.staff_for(target, entry.at) == staff_id]
        return f"{staff_id} ({', '.join(roles)})" if roles else staff_id
    if recipient:
        return _words(recipient)
    return "client" if entry.actor == "client" else "follow-up"


def _words(name: str) -> str:
    return name.replace("_", " ")


def _since(delta: timedelta) -> str:
    days, seconds = delta.days, int(delta.seconds)
    clock = f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"+{days}d {clock}" if days else f"+{clock}"


def render(moments: list[Moment], heading: str) -> list[str]:
    """Plain lines: the heading, then one line a moment (and the text received under it)."""
    lines = [heading]
    width = max((len(m.who) for m in moments), default=0)
    for moment in moments:
        lines.append(f"{moment.at:%a %d %b %H:%M:%S}  {_since(moment.since_departure):>12}  "
                     f"{moment.who:<{width}}  {moment.what}")
        if moment.text:
            lines.append(f"{'':>{39 + width}}“{moment.text.strip().replace(chr(10), ' / ')}”")
    return lines
