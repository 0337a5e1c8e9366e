"""The models the follow-up workflow, its activities and the starter share.

Everything that crosses the Temporal boundary is one of these pydantic models, so a
new optional field never breaks a running workflow's signature.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    model_validator,
)

from workflows.fields import (
    PROVIDER_MESSAGE_ID_MAX_LENGTH,
    OpaqueId,
    PhoneNumber,
    TimeZoneName,
)
from workflows.policy import ClinicPolicy
from workflows.versions import BEFORE_VERSION_2, CURRENT


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# The version of the follow-up's code a run started under (workflows/versions.py), set by
# whoever starts the run; an input written before version 2 has none. A version this code
# does not know is refused by name: its run belongs to a newer worker.
StartedUnder = Annotated[int, Field(ge=BEFORE_VERSION_2, le=CURRENT)]


ID_ALPHABET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _workflow_id_part(value: str) -> str:
    if not ID_ALPHABET.fullmatch(value):
        raise ValueError(
            "may hold only letters, digits, '.', '_' and '-', and must start with a letter "
            "or digit (it becomes part of the workflow id)"
        )
    return value


# Clinic and session ids make the workflow id (see followup_workflow_id): a clinic's dashes
# are doubled there, so the clinic id is kept short enough for the whole to fit 200 chars.
ClinicId = Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_workflow_id_part)]
SessionId = Annotated[str, Field(min_length=1, max_length=80), AfterValidator(_workflow_id_part)]


class RiskLevel(StrEnum):
    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"
    IMMINENT = "imminent"


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"

    @property
    def other(self) -> Channel:
        return Channel.EMAIL if self is Channel.SMS else Channel.SMS

    @property
    def send_activity(self) -> str:
        return f"send_{self.value}"


SEND_ACTIVITIES = frozenset(channel.send_activity for channel in Channel)


class ClientContact(Model):
    id: OpaqueId
    first_name: str = Field(min_length=1, max_length=60)
    phone: PhoneNumber | None = None
    email: EmailStr | None = None
    preferred_channel: Channel
    timezone: TimeZoneName
    language: str = Field(default="en", min_length=2, max_length=8)

    @model_validator(mode="after")
    def _preferred_channel_has_address(self) -> ClientContact:
        if self.address(self.preferred_channel) is None:
            field = "phone" if self.preferred_channel is Channel.SMS else "email"
            raise ValueError(
                f"preferred_channel is {self.preferred_channel.value!r} but {field} is missing"
            )
        return self

    def address(self, channel: Channel) -> str | None:
        return self.phone if channel is Channel.SMS else self.email


class EmergencyContact(Model):
    name: str = Field(min_length=1, max_length=60)
    phone: PhoneNumber | None = None
    email: EmailStr | None = None
    consent: bool = False

    @model_validator(mode="after")
    def _reachable(self) -> EmergencyContact:
        if self.phone is None and self.email is None:
            raise ValueError("emergency contact needs a phone or an email")
        return self


class DepartureEvent(Model):
    """What the clinic's system sends when a client leaves a session abruptly.

    Minimum necessary: no clinical notes. Identifiers are opaque because they end up
    in workflow ids, which Temporal stores in clear.
    """

    event_id: OpaqueId
    clinic_id: ClinicId
    session_id: SessionId
    departed_at: AwareDatetime
    risk_level: RiskLevel
    client: ClientContact
    emergency_contact: EmergencyContact | None = None
    therapist_id: OpaqueId | None = None

    @property
    def workflow_id(self) -> str:
        return followup_workflow_id(self.clinic_id, self.session_id)


def followup_workflow_id(clinic_id: str, session_id: str) -> str:
    """``followup-{clinic_id}-{session_id}`` with each ``-`` of the clinic id doubled.

    Undoubled, clinic ``a`` with session ``b-c`` and clinic ``a-b`` with session ``c`` got
    the same id, and the second clinic's client no follow-up. Doubled, the clinic part ends
    at the first single ``-`` (a session id starts with a letter or digit), so no two
    (clinic, session) pairs share an id. Clinics without a ``-`` keep their ids unchanged.
    """
    return f"followup-{clinic_id.replace('-', '--')}-{session_id}"


_FOLLOWUP_ID = re.compile(r"followup-((?:[^-]|--)+)-(?!-).+")


def clinic_of_followup(workflow_id: str) -> str | None:
    """The clinic id ``followup_workflow_id`` put into ``workflow_id``, or None when it is
    not one of those ids. For an id of the legacy form the answer may be another clinic."""
    found = _FOLLOWUP_ID.fullmatch(workflow_id)
    return found.group(1).replace("--", "-") if found else None


def legacy_followup_workflow_id(clinic_id: str, session_id: str) -> str:
    """The id follow-ups got before clinic ids' dashes were doubled: those started then keep
    it, so a repeat of their event must find them there."""
    return f"followup-{clinic_id}-{session_id}"


# --- what people send to a running follow-up ---------------------------------------


class ClientReply(Model):
    text: str = Field(max_length=1600)
    channel: Channel | Literal["api", "link"] = "api"
    provider_message_id: str | None = Field(default=None, max_length=PROVIDER_MESSAGE_ID_MAX_LENGTH)


class DeliveryFailure(Model):
    """A provider told us, after accepting it, that a message never arrived."""

    provider_message_id: str = Field(max_length=PROVIDER_MESSAGE_ID_MAX_LENGTH)
    error_code: str | None = Field(default=None, max_length=40)


class Acknowledge(Model):
    staff_id: OpaqueId
    code: str | None = Field(
        default=None, description="The code from the page, when acknowledging by SMS"
    )


class ResolutionOutcome(StrEnum):
    REACHED_CLIENT = "reached_client"
    EMERGENCY_SERVICES_CONTACTED = "emergency_services_contacted"
    COULD_NOT_REACH = "could_not_reach"
    OTHER = "other"


class Resolve(Model):
    staff_id: OpaqueId
    outcome: ResolutionOutcome
    note: str | None = Field(default=None, max_length=500)


class Cancel(Model):
    staff_id: OpaqueId
    reason: str = Field(min_length=1, max_length=200)




# --- the audit trail ----------------------------------------------------------------


class Actor(StrEnum):
    SYSTEM = "system"
    CLIENT = "client"
    STAFF = "staff"
    EMERGENCY_CONTACT = "emergency_contact"


class AuditEntry(Model):
    """One step of a follow-up, chained to the one before it by hash."""

    workflow_id: str
    seq: int = Field(ge=1)
    at: AwareDatetime
    step: str
    channel: str | None = None
    actor: str = Actor.SYSTEM
    recipient: str | None = Field(
        default=None, description="Role or staff id reached: never a phone number or email"
    )
    provider_message_id: str | None = None
    outcome: str | None = None
    detail: dict[str, str] = Field(default_factory=dict)
    prev_hash: str
    hash: str


# --- state and outcome -------------------------------------------------------------


class Phase(StrEnum):
    RECEIVED = "received"
    WAITING_TO_CHECK_IN = "waiting_to_check_in"
    AWAITING_REPLY = "awaiting_reply"
    ESCALATING = "escalating"
    AWAITING_RESOLUTION = "awaiting_resolution"
    OFFERING_RESCHEDULE = "offering_reschedule"
    LISTENING = "listening"  # the protocol is done; a text from the client is still acted on
    CARING_CONTACTS = "caring_contacts"  # a Caring Contacts series between its messages
    CLOSED = "closed"


class PageState(Model):
    level: int
    target: str
    channel: Channel
    code: str


class EscalationState(Model):
    reason: str
    code: str
    started_at: datetime | None = None
    level: int = 0
    round: int = 0
    paged: list[PageState] = Field(default_factory=list)
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    outcome: ResolutionOutcome | None = None
    exhausted: bool = False
    contact_noticed: bool = Field(
        default=False, description="The emergency contact was notified (or skipped for want "
        "of consent): once per escalation")
    client_answered: bool = Field(
        default=False, description="The client sent a safe reply while it was open")
    resume_at: datetime | None = Field(
        default=None, description="When the chain's current wait ends (a level's ack "
        "timeout or the next reminder): a new run of the follow-up goes on from there")


class SeriesState(StrEnum):
    ACTIVE = "active"
    STOPPED = "stopped"  # by the client's STOP or by staff, before its last message
    ENDED = "ended"  # its last message went out


class CaringContactsView(Model):
    """Where a Caring Contacts series stands: what ``GET`` and the console show of it."""

    series_id: str
    state: SeriesState = SeriesState.ACTIVE
    why: str | None = Field(default=None, description="Why it stopped or ended")
    next_send_at: datetime | None = None
    messages_sent: int = 0
    messages_planned: int = 0
    review_due: datetime | None = Field(
        default=None, description="A reply staff have not read yet must be read by then")


class FollowUpView(Model):
    """What people read about a follow-up: the workflow keeps it current and stores it with
    each batch of its trail, so the board, the escalation page and ``GET`` read it from the
    audit store without running workflow code, with every worker down."""

    workflow_id: str
    clinic_id: str
    risk_level: RiskLevel
    departed_at: datetime
    phase: Phase
    next_deadline: datetime | None = None
    next_deadline_reason: str | None = None
    opted_out: bool = False
    client_safe: bool = False
    channel: Channel
    escalation: EscalationState | None = None
    reply_for_review: str | None = Field(
        default=None, description="A reply on-call staff were asked to read"
    )
    closed_reason: str | None = None
    caring_contacts: CaringContactsView | None = Field(
        default=None, description="The Caring Contacts series that followed, if any")
    trail_length: int = Field(default=0, description="Entries in the trail as of this view")
    revision: int = Field(default=0, description="Grows with every change: a store keeps the "
                          "highest it was given, whatever order batches arrive in")
    updated_at: datetime | None = Field(default=None, description="Workflow time of the change")


class ActionResult(Model):
    workflow_id: str
    state: str
    message: str
    view: FollowUpView | None = Field(
        default=None, description="The follow-up as the action left it")


class FollowUpStatus(FollowUpView):
    """The view with its trail: what ``GET /v1/followups/{id}`` and the status query return."""

    audit_backlog: int = Field(
        default=0, description="Trail entries not yet in the audit store (it is catching up)"
    )
    trail: list[AuditEntry] = Field(default_factory=list)


class FollowUpOutcome(Model):
    workflow_id: str
    closed_reason: str
    client_safe: bool
    escalation: EscalationState | None = None
    rescheduled_slot: datetime | None = None
    trail: list[AuditEntry]


# --- what the workflow asks of its activities -------------------------------------

PERMANENT_DELIVERY_FAILURE = "PermanentDeliveryFailure"
"""ApplicationError type of a send that will never succeed: fall back, don't retry."""


class LinkAction(Model):
    """A one-click action placed in an email as a signed link."""

    label: str
    action: Literal["reply", "ack", "reschedule"]
    value: str


class OutboundMessage(Model):
    workflow_id: str
    message_key: str = Field(
        description="Unique within the follow-up: a retried send with the same key never "
        "reaches the provider twice once it accepted the first"
    )
    channel: Channel
    to: str
    body: str
    subject: str | None = None
    links: list[LinkAction] = Field(default_factory=list)
    trail: AuditBatch | None = Field(
        default=None, description="The follow-up's trail not yet stored, for the send to "
        "store once the message is out, saving a batch of its own")


class Delivery(Model):
    channel: Channel
    provider_message_id: str
    already_sent: bool = False
    trail_stored: bool = Field(default=False, description="The trail the message carried "
                               "is in the audit store")


class BookingRequest(Model):
    workflow_id: str
    clinic_id: str
    session_id: str
    client_id: str
    slot_start: AwareDatetime
    webhook_url: str


class BookingConfirmation(Model):
    booking_id: str | None = None


class StaffNote(Model):
    """Free text a staff member wrote (a cancel reason, a resolution note). It may hold PHI,
    so it stays out of the trail: the audit store keeps it sealed with the payload keys,
    under the seq of the trail entry it belongs to, for authorised readers."""

    audit_seq: int = Field(ge=1, description="The trail entry this note belongs to")
    kind: Literal["cancel_reason", "resolution_note"]
    staff_id: str
    text: str = Field(min_length=1, max_length=500)


class AuditBatch(Model):
    entries: list[AuditEntry]
    notes: list[StaffNote] = Field(default_factory=list)
    view: FollowUpView | None = None


# A message carries the batch a send stores (defined just above): finished here, at import,
# not by pydantic on the message's first use, inside a workflow task.
OutboundMessage.model_rebuild()


# --- continue-as-new ---------------------------------------------------------------


class NextStep(StrEnum):
    """Where the protocol goes on once an open escalation is resolved."""

    CHECK_IN = "check_in"
    OFFER = "offer"
    LISTEN = "listen"

    def after(self) -> NextStep:
        return {NextStep.CHECK_IN: NextStep.OFFER}.get(self, NextStep.LISTEN)


class OutboxState(Model):
    channel: Channel
    opted_out: bool = False
    messages_sent: int = 0
    sent: dict[str, tuple[str, OutboundMessage]] = Field(default_factory=dict)


class CarriedOver(Model):
    """What a follow-up hands to the next run of itself when its history grows long: an
    escalation that pages or waits for days continues there, under the same workflow id.
    A new follow-up starts from the defaults."""

    next_step: NextStep = NextStep.CHECK_IN
    stage: Phase = Phase.RECEIVED
    escalation: EscalationState | None = None
    trail: list[AuditEntry] = Field(default_factory=list)
    trail_refused: int = 0
    view_revision: int = 0
    outbox: OutboxState | None = None
    client_safe: bool = False
    unreachable: bool = False
    reply_for_review: str | None = None
    booked: bool = False
    caring_contacts_started: bool = False


class FollowUpInput(Model):
    event: DepartureEvent
    policy: ClinicPolicy
    carried_over: CarriedOver | None = None
    late_reply_to: str | None = Field(
        default=None, description="The follow-up a text came after: this one was started "
        "for it, and its reply arrives with the start")
    version: StartedUnder = BEFORE_VERSION_2


# --- the Caring Contacts series ----------------------------------------------------

CARING_CONTACTS_SUFFIX = "-caring"


def caring_contacts_id(followup_id: str) -> str:
    """The series that follows a follow-up: one per follow-up, found from its id."""
    return followup_id + CARING_CONTACTS_SUFFIX



class SeriesCarriedOver(Model):
    """What a series hands to its next run, every few messages: its history stays short
    for a year or more, and its trail goes on unbroken."""

    started_at: datetime
    next_message: int = 0
    state: SeriesState = SeriesState.ACTIVE
    why: str | None = None
    review_due: datetime | None = None
    reply_for_review: str | None = None
    trail: list[AuditEntry] = Field(default_factory=list)
    trail_refused: int = 0
    view_revision: int = 0
    outbox: OutboxState | None = None


class CaringContactsInput(Model):
    event: DepartureEvent
    policy: ClinicPolicy
    followup_id: str = Field(description="The follow-up whose end started this series")
    carried_over: SeriesCarriedOver | None = None
    version: StartedUnder = BEFORE_VERSION_2


class CaringContactsOutcome(Model):
    workflow_id: str
    state: SeriesState
    why: str | None = None
    messages_sent: int = 0
    trail: list[AuditEntry]
