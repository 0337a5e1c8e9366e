"""Who the escalation chain can reach: every level someone, every hour of the week someone
on call (and backing up, where the chain pages a backup)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from workflows.policy import ClinicPolicy, StaffMember, Target

# A Monday: the week every shift is laid on, in the clinic's local wall-clock time.
_WEEK_START = datetime(2024, 1, 1)
_STEP = timedelta(minutes=1)
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_ROLE_WORDS = {Target.ON_CALL: "on call", Target.BACKUP: "backing up"}


def candidates(policy: ClinicPolicy, target: Target) -> list[str]:
    """Every staff id the target may resolve to at some hour."""
    if target is Target.CLINIC_LEAD:
        return [policy.clinic_lead] if policy.clinic_lead else []
    shifts = policy.rota.on_call if target is Target.ON_CALL else policy.rota.backup
    return list(dict.fromkeys(shift.staff_id for shift in shifts))


def channel_address(member: StaffMember) -> tuple[str, str | None]:
    """The contact field a staff member's own channel uses, and its value."""
    return ("phone", member.phone) if member.channel == "sms" else ("email", member.email)


def _nobody_for(policy: ClinicPolicy, target: Target) -> str:
    if target is Target.CLINIC_LEAD:
        return "clinic_lead is not set"
    return f"nobody in rota.{target.value}"


def chain_problems(policy: ClinicPolicy) -> Iterator[tuple[str, str]]:
    """A level whose targets reach nobody; a staff member the chain pages who has no
    address on their own channel."""
    paged: dict[str, None] = {}
    for i, level in enumerate(policy.escalation.levels):
        reachable, why_not = [], []
        for target in level.targets:
            if target is Target.EMERGENCY_CONTACT:
                why_not.append("emergency_contact is reached only with the client's consent")
                continue
            staff_ids = candidates(policy, target)
            if not staff_ids:
                why_not.append(f"{target.value}: {_nobody_for(policy, target)}")
            for staff_id in staff_ids:
                paged[staff_id] = None
                member = policy.staff[staff_id]
                if member.phone or member.email:
                    reachable.append(staff_id)
                else:
                    why_not.append(f"{target.value} {staff_id} has neither phone nor email")
        if not reachable:
            yield f"escalation.levels.{i}", f"nobody reachable: {'; '.join(why_not)}"
    for staff_id in paged:
        member = policy.staff[staff_id]
        field, address = channel_address(member)
        if address is None:
            yield (f"staff.{staff_id}.{field}",
                   f"{staff_id} is paged by {member.channel}, their channel, but has no {field}")


def _uncovered(policy: ClinicPolicy, target: Target) -> Iterator[tuple[datetime, datetime]]:
    """The stretches of the week, as local wall-clock times, when nobody holds the role."""
    shifts = policy.rota.on_call if target is Target.ON_CALL else policy.rota.backup
    minutes = 7 * 24 * 60
    covered = [any(s.covers(_WEEK_START + n * _STEP) for s in shifts) for n in range(minutes)]
    if all(covered):
        return
    # Start the sweep at a covered minute, so a gap over Sunday midnight stays one gap.
    first = covered.index(True) if any(covered) else 0
    gap_start: int | None = None
    for k in range(first, first + minutes + 1):
        n = k % minutes
        if not covered[n] and gap_start is None:
            gap_start = k
        elif (covered[n] or k == first + minutes) and gap_start is not None:
            yield _WEEK_START + gap_start * _STEP, _WEEK_START + k * _STEP
            gap_start = None


def _local(moment: datetime) -> str:
    return f"{_WEEKDAYS[moment.weekday()]} {moment:%H:%M}"


def rota_gaps(policy: ClinicPolicy) -> Iterator[tuple[str, str]]:
    """One problem per gap in the rota of a role the chain pages, in the clinic's zone."""
    targeted = {t for level in policy.escalation.levels for t in level.targets}
    for target in (Target.ON_CALL, Target.BACKUP):
        if target not in targeted or not candidates(policy, target):
            continue  # nobody at all is chain_problems' to report
        for start, end in _uncovered(policy, target):
            yield (f"rota.{target.value}",
                   f"nobody {_ROLE_WORDS[target]} {_local(start)}–{_local(end)} "
                   f"({policy.timezone})")
