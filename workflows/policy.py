"""A clinic's follow-up policy: timings, channels, quiet hours, escalation, messages.

The policy in force is resolved when the departure event arrives and travels inside the
workflow's input, so a later edit of the policy file never changes a running follow-up.
Everything here is pure computation on that data: the workflow calls it freely.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from ipaddress import ip_address
from threading import Lock
from typing import Annotated, Literal
from urllib.parse import urlsplit
from weakref import WeakValueDictionary
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, model_validator

from workflows.fields import OpaqueId, PhoneNumber, TimeZoneName
from workflows.templates import DEFAULT_CRISIS_WORDS, DEFAULT_TEMPLATES, MessageTemplates


class PolicyModel(BaseModel):
    # Frozen: every cached follow-up of a clinic shares one copy of its policy (one_copy).
    model_config = ConfigDict(extra="forbid", frozen=True)


class PerRisk(PolicyModel):
    low: timedelta
    moderate: timedelta
    high: timedelta
    imminent: timedelta = timedelta(0)

    def for_risk(self, risk: str) -> timedelta:
        return getattr(self, risk)


class QuietHours(PolicyModel):
    """Local hours in the client's time zone that protect sleep, never safety.

    For the risks in ``protect``, the check-in waits for quiet hours to end, and the
    response window and its reminders count only waking time: a client asleep is not
    escalated for silence. Pages, crisis resources and other risks are never deferred.
    """

    start: time = time(21, 0)
    end: time = time(8, 0)
    protect: list[str] = Field(
        default_factory=lambda: ["low", "moderate"],
        description="Risk levels whose check-in and response window respect quiet hours",
    )

    def protects(self, risk: str) -> bool:
        return risk in self.protect

    def awake_deadline(self, start: datetime, awake: timedelta, tz: str) -> datetime:
        """When ``awake`` of waking time (outside quiet hours) has passed since ``start``."""
        now, left = start, awake
        while True:
            end = self.end_after(now, tz)
            if end is not None:
                now = end
                continue
            quiet_from = self.next_start_after(now, tz)
            if now + left <= quiet_from:
                return now + left
            left -= quiet_from - now
            now = quiet_from

    def next_start_after(self, now: datetime, tz: str) -> datetime:
        local = now.astimezone(ZoneInfo(tz))
        start = local.replace(hour=self.start.hour, minute=self.start.minute, second=0,
                              microsecond=0)
        if start <= local:
            start += timedelta(days=1)
        return start.astimezone(now.tzinfo)

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def end_after(self, now: datetime, tz: str) -> datetime | None:
        """When quiet hours end, if ``now`` falls inside them; otherwise None."""
        local = now.astimezone(ZoneInfo(tz))
        if not self.contains(local.time().replace(tzinfo=None)):
            return None
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(now.tzinfo)


class Target(StrEnum):
    """Who an escalation level notifies."""

    ON_CALL = "on_call"
    BACKUP = "backup"
    EMERGENCY_CONTACT = "emergency_contact"
    CLINIC_LEAD = "clinic_lead"


class EscalationLevel(PolicyModel):
    targets: list[Target] = Field(min_length=1)
    ack_timeout: timedelta | None = Field(
        default=None, description="Overrides the chain's ack_timeout for this level"
    )


class EscalationChain(PolicyModel):
    """Escalation is data: the workflow walks these levels in order until someone acks."""

    levels: list[EscalationLevel] = Field(min_length=1)
    ack_timeout: timedelta = timedelta(minutes=10)
    repeats: int = Field(default=1, ge=0, le=10)
    resolve_reminder: timedelta = timedelta(hours=1)
    repage_every: timedelta | None = Field(
        default=None,
        description="Once every level was paged and nobody acknowledged, the chain is "
        "paged again from level 1 after this pause; by default at once, right after the "
        "last level's ack timeout, until someone acknowledges",
    )

    def ack_timeout_for(self, level: EscalationLevel) -> timedelta:
        return level.ack_timeout or self.ack_timeout


class StaffRole(StrEnum):
    """What a staff member may see in the staff console beyond escalations and the board."""

    LEAD = "lead"  # reads trails and exports them; the policy's clinic_lead has it too
    AUDITOR = "auditor"  # the same, for compliance auditors


class StaffMember(PolicyModel):
    name: str
    phone: PhoneNumber | None = None
    email: EmailStr | None = None
    channel: Literal["sms", "email"] = "sms"
    language: str = Field(default="en", description="The staff console's language: en or es")
    roles: list[StaffRole] = Field(default_factory=list)


class Shift(PolicyModel):
    staff_id: str
    days: list[Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=lambda: list(range(7)), description="0 = Monday … 6 = Sunday"
    )
    start: time = time(0, 0)
    end: time = time(0, 0)

    def covers(self, local: datetime) -> bool:
        t = local.time().replace(tzinfo=None)
        if self.start == self.end:
            return local.weekday() in self.days
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= t < self.end
        # An overnight shift belongs to the day it starts on.
        if t >= self.start:
            return local.weekday() in self.days
        return (local.weekday() - 1) % 7 in self.days and t < self.end


class Rota(PolicyModel):
    """Who is on call, and who backs them up, at a given time (clinic time zone)."""

    on_call: list[Shift] = Field(default_factory=list)
    backup: list[Shift] = Field(default_factory=list)

    def staff_for(self, role: Target, at: datetime, tz: str) -> str | None:
        local = at.astimezone(ZoneInfo(tz))
        shifts = self.on_call if role is Target.ON_CALL else self.backup
        return next((s.staff_id for s in shifts if s.covers(local)), None)


class SlotRule(PolicyModel):
    """A reschedule slot relative to the offer: ``after`` days, at a local time."""

    after: timedelta = timedelta(days=1)
    at: time = time(10, 0)


class RescheduleOptions(PolicyModel):
    slots: list[SlotRule] = Field(default_factory=list, max_length=5)
    booking_url: str | None = None
    offer_window: timedelta = timedelta(hours=24)
    webhook_url: str | None = None
    webhook_private_network: bool = Field(
        default=False,
        description="The booking webhook may be on a loopback or private address (the dev "
        "stack, an on-premises system); without it only public https URLs are called",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.slots or self.booking_url)

    def webhook_url_problem(self) -> str | None:
        """Why the service must not call ``webhook_url``, or None when it may.

        The worker POSTs to this URL from inside the clinic's network position: an
        internal address would let a policy reach services never meant to be called
        (metadata endpoints, databases' HTTP ports). Checked when the policy file loads,
        not on every replay of a follow-up that carries an older policy.
        """
        if self.webhook_url is None:
            return None
        url = urlsplit(self.webhook_url)
        host = url.hostname
        if url.scheme not in ("https", "http") or not host:
            return "must be an absolute https:// URL"
        if _is_internal_host(host) and not self.webhook_private_network:
            return (f"{host} is a loopback or private address: set "
                    "webhook_private_network: true if the clinic's system really is there")
        if url.scheme == "http" and not _is_loopback_host(host):
            return "must use https (plain http only for a loopback address in development)"
        return None

    def slot_times(self, now: datetime, tz: str) -> list[datetime]:
        local = now.astimezone(ZoneInfo(tz))
        slots = []
        for rule in self.slots:
            day = (local + rule.after).date()
            slots.append(datetime.combine(day, rule.at, tzinfo=ZoneInfo(tz)))
        return slots


_CALENDAR_OFFSET = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?")


def _calendar_offset(value: str) -> str:
    if value == "P" or not _CALENDAR_OFFSET.fullmatch(value):
        raise ValueError(f"{value!r} is not a whole-day ISO 8601 duration such as P1D, P2W, "
                         "P1M or P1Y (the time of day is chosen within send_between)")
    return value


CalendarOffset = Annotated[str, AfterValidator(_calendar_offset)]


def day_after(start: date, offset: str) -> date:
    """``start`` plus a calendar offset: months and years as on a calendar (31 January plus
    P1M is the last day of February), weeks and days as days."""
    years, months, weeks, days = (int(n or 0) for n in _CALENDAR_OFFSET.fullmatch(
        offset).groups())  # type: ignore[union-attr]
    month_index = start.month - 1 + months + 12 * years
    year, month = start.year + month_index // 12, month_index % 12 + 1
    last_day = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(start.day, last_day)) + timedelta(weeks=weeks, days=days)


class LocalHours(PolicyModel):
    start: time
    end: time

    def contains(self, local: time) -> bool:
        return self.start <= local < self.end


class BusinessHours(PolicyModel):
    """When the clinic's staff read what is not urgent, in the clinic's time zone."""

    days: list[Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4], min_length=1,
        description="0 = Monday … 6 = Sunday")
    end: time = time(17, 0)

    def deadline(self, at: datetime, business_days: int, tz: str) -> datetime:
        """The end of the ``business_days``-th business day after ``at``'s own day."""
        day, left = at.astimezone(ZoneInfo(tz)).date(), business_days
        while left > 0:
            day += timedelta(days=1)
            left -= day.weekday() in self.days
        return datetime.combine(day, self.end, tzinfo=ZoneInfo(tz)).astimezone(at.tzinfo)


# Comtois et al. 2019: day 1, week 1, months 1 to 4, then every other month to 12 months.
COMTOIS_SCHEDULE = ["P1D", "P7D", "P1M", "P2M", "P3M", "P4M", "P6M", "P8M", "P10M", "P12M"]


class CaringContacts(PolicyModel):
    """Brief messages that ask for nothing, over months, to a client whose follow-up ended
    without a booked session or an opt-out. Off unless a clinic turns it on."""

    enabled: bool = False
    schedule: list[CalendarOffset] = Field(
        default_factory=lambda: list(COMTOIS_SCHEDULE), min_length=2,
        description="When each message is due, counted in calendar days, weeks, months and "
        "years from the day the follow-up closed; the last one says it is the last")
    send_between: LocalHours = Field(
        default_factory=lambda: LocalHours(start=time(10, 0), end=time(19, 0)),
        description="Waking hours in the client's time zone; each message goes out at a "
        "different time within them, never in quiet hours")
    reviewer: OpaqueId | None = Field(
        default=None, description="The staff member who reads replies that are not a "
        "crisis; the clinic lead when unset")
    review_within: int = Field(
        default=1, ge=1, le=5, description="Business days staff have to read such a reply "
        "before the escalation chain is paged to read it")
    business_hours: BusinessHours = BusinessHours()

    def reviewer_for(self, policy: ClinicPolicy) -> str | None:
        return self.reviewer or policy.clinic_lead

    def send_window(self, started_at: datetime, index: int, tz: str) -> tuple[datetime, int]:
        """When message ``index``'s waking window opens in the client's zone ``tz``, on its
        day of the schedule counted from ``started_at``, and how many minutes it lasts."""
        zone = ZoneInfo(tz)
        day = day_after(started_at.astimezone(zone).date(), self.schedule[index])
        opens = datetime.combine(day, self.send_between.start, tzinfo=zone)
        closes = datetime.combine(day, self.send_between.end, tzinfo=zone)
        return opens.astimezone(started_at.tzinfo), int((closes - opens) / timedelta(minutes=1))


def local_label(at: datetime, tz: str) -> str:
    """A moment as staff read it in the clinic's zone: ``2026-11-23 17:00``."""
    return f"{at.astimezone(ZoneInfo(tz)):%Y-%m-%d %H:%M}"


def _is_loopback_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _is_internal_host(host: str) -> bool:
    """Loopback, private, link-local (cloud metadata), reserved or unspecified addresses."""
    if _is_loopback_host(host):
        return True
    try:
        address = ip_address(host)
    except ValueError:
        return False  # a name: whoever owns the policy file vouches for where it points
    return (address.is_private or address.is_link_local or address.is_reserved
            or address.is_multicast or address.is_unspecified)


class ClinicPolicy(PolicyModel):
    clinic_id: str
    clinic_name: str = "your care team"
    clinic_phone: str | None = Field(
        default=None,
        description="The clinic's number for clients, offered when an answer could not be "
        "passed on",
    )
    timezone: TimeZoneName = "America/New_York"
    checkin_delay: PerRisk = PerRisk(
        low=timedelta(hours=2), moderate=timedelta(hours=1), high=timedelta(minutes=15)
    )
    response_window: PerRisk = PerRisk(
        low=timedelta(hours=24),
        moderate=timedelta(hours=4),
        high=timedelta(hours=1),
        imminent=timedelta(minutes=30),
    )
    reminders: list[timedelta] = Field(
        default_factory=lambda: [timedelta(hours=1)],
        description="Offsets after the check-in at which to remind, inside the window",
    )
    fallback_after: timedelta = Field(
        default=timedelta(minutes=1),
        description="A message its channel has not accepted by then also goes out on the "
        "person's other channel: an outage never holds a page back",
    )
    listen_after_close: timedelta = Field(
        default=timedelta(days=3),
        description="How long a closed follow-up still acts on the client's texts",
    )
    therapist_debrief: bool = Field(
        default=True,
        description="When the protocol ends, tell the treating therapist (the event's "
        "therapist_id, a staff member of this policy) how it ended and whether a session "
        "is booked",
    )
    caring_contacts: CaringContacts = CaringContacts()
    sms_keywords_answered_by_provider: bool = Field(
        default=True,
        description="Twilio's (Advanced) Opt-Out answers HELP, START and STOP texts itself; "
        "the follow-up then only acts on them. Set false where it does not",
    )
    quiet_hours: QuietHours | None = QuietHours()
    escalation: EscalationChain = EscalationChain(
        levels=[
            EscalationLevel(targets=[Target.ON_CALL]),
            EscalationLevel(targets=[Target.BACKUP, Target.EMERGENCY_CONTACT]),
            EscalationLevel(targets=[Target.CLINIC_LEAD]),
        ]
    )
    staff: dict[OpaqueId, StaffMember] = Field(default_factory=dict)
    rota: Rota = Rota()
    clinic_lead: str | None = None
    reschedule: RescheduleOptions = RescheduleOptions()
    crisis_line: dict[str, Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: {
            "en": "If you are in crisis, call or text 988 (Suicide & Crisis Lifeline) any time.",
            "es": "Si estas en crisis, llama o envia un mensaje de texto al 988 en cualquier "
            "momento.",
        }
    )
    crisis_words: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_CRISIS_WORDS))
    templates: dict[str, MessageTemplates] = Field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    default_language: str = "en"
    languages: list[str] = Field(
        default_factory=list,
        description="Languages the clinic's clients are written to in, besides "
        "default_language: each needs templates and a crisis line (checked at start-up)",
    )
    demo: bool = Field(
        default=False,
        description="A demonstration or test clinic, never real clients: its timings may be "
        "seconds, which the start-up check refuses for any other clinic",
    )

    @model_validator(mode="after")
    def _references_are_known(self) -> ClinicPolicy:
        named = [s.staff_id for s in self.rota.on_call + self.rota.backup]
        if self.clinic_lead:
            named.append(self.clinic_lead)
        unknown = sorted({n for n in named if n not in self.staff})
        if unknown:
            raise ValueError(f"rota or clinic_lead names staff not in staff: {', '.join(unknown)}")
        reviewer = self.caring_contacts.reviewer
        if reviewer and reviewer not in self.staff:
            raise ValueError(f"caring_contacts.reviewer names staff not in staff: {reviewer}")
        if self.default_language not in self.templates:
            raise ValueError(f"templates has no {self.default_language!r} entry")
        # Every client message carries the crisis line of the language it is written in.
        without_line = sorted(set(self.templates) - set(self.crisis_line))
        if without_line:
            raise ValueError(
                f"crisis_line has no entry for {', '.join(map(repr, without_line))}, "
                "a language with templates: every client message carries the crisis line"
            )
        return self

    def for_client(self, requested_language: str) -> ClinicPolicy:
        """This policy with only the languages a follow-up can use: the client's and the
        clinic's own. It travels in every follow-up's history, so it should carry no more."""
        keep = {self.language(requested_language), self.default_language}
        # Crisis phrases stay in every language: a client recorded as English may write
        # in Spanish when it matters most.
        return self.model_copy(update={
            "templates": {k: v for k, v in self.templates.items() if k in keep},
            "crisis_line": {k: v for k, v in self.crisis_line.items() if k in keep},
        })

    def language(self, requested: str) -> str:
        base = requested.split("-")[0].lower()
        return base if base in self.templates else self.default_language

    def crisis_line_for(self, language: str) -> str:
        return self.crisis_line.get(language) or self.crisis_line[self.default_language]

    def reads_trails(self, staff_id: str) -> bool:
        """Clinic leads and auditors read and export trails in the staff console."""
        member = self.staff.get(staff_id)
        if member is None:
            return False
        return staff_id == self.clinic_lead or bool(
            {StaffRole.LEAD, StaffRole.AUDITOR} & set(member.roles))

    def manages_caring_contacts(self, staff_id: str) -> bool:
        """Who sees a Caring Contacts series in the staff console and may stop it: the
        people who read its replies (the reviewer, the clinic lead, staff with the lead
        role). Auditors read the trail; they do not change a client's care."""
        member = self.staff.get(staff_id)
        if member is None:
            return False
        return staff_id in (self.clinic_lead, self.caring_contacts.reviewer) or (
            StaffRole.LEAD in member.roles)

    def staff_for(self, target: Target, at: datetime) -> str | None:
        if target is Target.CLINIC_LEAD:
            return self.clinic_lead
        return self.rota.staff_for(target, at, self.timezone)


# A worker caches a thousand follow-ups, most of a few clinics: each distinct policy is held
# once for all of them (about 20 KB decoded), not once per follow-up. Sharing is safe because
# policies are frozen; a copy goes once no cached run holds it. The worker runs workflow
# tasks on several threads, and a weak dictionary's setdefault is not atomic: without the
# lock, two runs starting at once could each keep a copy of their own.
_COPIES: WeakValueDictionary[str, ClinicPolicy] = WeakValueDictionary()
_COPIES_LOCK = Lock()


def one_copy(policy: ClinicPolicy) -> ClinicPolicy:
    """The copy of ``policy`` that every run in this worker with the same policy shares."""
    key = policy.model_dump_json()
    with _COPIES_LOCK:
        return _COPIES.setdefault(key, policy)
