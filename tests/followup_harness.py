"""Drives real follow-ups: dev server with time skipping, real worker, loopback sinks.

Each test starts its follow-up with time skipping off and moves its clock with
``advance``, so it can reply or acknowledge at a chosen moment of the protocol.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from aftercare.followups.start import start_followup
from aftercare.policies import PolicyBook
from aftercare.settings import Settings
from aftercare.trail.store import AuditStore
from devsinks.booking import BookingSink
from devsinks.mailbox import Mailbox
from devsinks.sms_outbox import SmsOutbox
from worker import running_worker
from workflows.followup import DepartureFollowUp
from workflows.models import (
    ClientContact,
    DepartureEvent,
    EmergencyContact,
    FollowUpOutcome,
    FollowUpStatus,
)

CLIENT_PHONE = "+15555550123"
CLIENT_EMAIL = "dana@example.org"
CONTACT_PHONE = "+15555550199"
ON_CALL_PHONE = "+15555550111"
ON_CALL_EMAIL = "oncall@clinic.example"
BACKUP_EMAIL = "backup@clinic.example"
BACKUP_PHONE = "+15555550112"
LEAD_EMAIL = "lead@clinic.example"


def policy_document(**overrides: Any) -> dict[str, Any]:
    """A test clinic's policy: minutes, not hours, and no quiet hours unless asked."""
    document: dict[str, Any] = {
        "clinic_name": "Test Clinic",
        "checkin_delay": {"low": "PT30M", "moderate": "PT10M", "high": "PT5M"},
        "response_window": {"low": "PT2H", "moderate": "PT1H", "high": "PT30M",
                            "imminent": "PT30M"},
        "reminders": ["PT30M"],
        "quiet_hours": None,
        "escalation": {
            "ack_timeout": "PT10M",
            "repeats": 0,
            "resolve_reminder": "PT1H",
            "levels": [
                {"targets": ["on_call"]},
                {"targets": ["backup", "emergency_contact"]},
                {"targets": ["clinic_lead"]},
            ],
        },
        "staff": {
            "t-oncall": {"name": "On Call", "phone": ON_CALL_PHONE, "email": ON_CALL_EMAIL,
                         "channel": "sms"},
            "t-backup": {"name": "Backup", "phone": BACKUP_PHONE, "email": BACKUP_EMAIL,
                         "channel": "email"},
            "t-lead": {"name": "Lead", "email": LEAD_EMAIL, "channel": "email"},
        },
        "rota": {"on_call": [{"staff_id": "t-oncall"}], "backup": [{"staff_id": "t-backup"}]},
        "clinic_lead": "t-lead",
        "reschedule": {"slots": [{"after": "P1D", "at": "10:00"}, {"after": "P2D", "at": "14:00"}],
                       "offer_window": "PT1H"},
    }
    document.update(overrides)
    return document


# An escalation at seconds timings that nobody answers pages round after round, so its
# history grows in real time.
SECONDS_ESCALATION = {
    "ack_timeout": "PT2S",
    "repeats": 0,
    "repage_every": "PT2S",
    "resolve_reminder": "PT2S",
    "levels": [{"targets": ["on_call"]}, {"targets": ["clinic_lead"]}],
}

def make_event(
    risk: str = "moderate",
    *,
    channel: str = "sms",
    phone: str | None = CLIENT_PHONE,
    email: str | None = CLIENT_EMAIL,
    language: str = "en",
    timezone: str = "America/New_York",
    consent: bool = True,
) -> DepartureEvent:
    return DepartureEvent(
        event_id=f"evt-{uuid.uuid4().hex[:8]}",
        clinic_id="clinic-42",
        session_id=f"s-{uuid.uuid4().hex[:12]}",
        departed_at=datetime.now(UTC),
        risk_level=risk,
        client=ClientContact(id="c-7781", first_name="Dana", phone=phone, email=email,
                             preferred_channel=channel, timezone=timezone, language=language),
        emergency_contact=EmergencyContact(name="Sam", phone=CONTACT_PHONE, consent=consent),
        therapist_id="t-12",
    )


def quiet_hours_around_now(timezone: str) -> dict[str, str]:
    """Quiet hours that started an hour ago and end in three, in the client's zone."""
    from zoneinfo import ZoneInfo

    local = datetime.now(ZoneInfo(timezone))
    start = (local - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (local + timedelta(hours=3)).time().replace(second=0, microsecond=0)
    return {"start": start.isoformat("minutes"), "end": end.isoformat("minutes")}


@dataclass
class FollowUpHarness:
    env: WorkflowEnvironment
    settings: Settings
    sms: SmsOutbox
    mail: Mailbox
    booking: BookingSink
    store: AuditStore

    @property
    def client(self) -> Client:
        return self.env.client

    async def start(self, event: DepartureEvent, **policy: Any) -> WorkflowHandle:
        document = policy_document(**policy)
        document["reschedule"] = {**document["reschedule"],
                                  "webhook_url": self.booking.webhook_url(event.clinic_id),
                                  "webhook_private_network": True}
        book = PolicyBook({"default": {}, event.clinic_id: document})
        with self.env.with_time_skipping_disabled():
            started = await start_followup(self.client, self.settings, book, event)
        handle = self.client.get_workflow_handle_for(DepartureFollowUp.run, started.workflow_id)
        return handle

    async def advance(self, handle: WorkflowHandle, duration: timedelta) -> None:
        """Move this follow-up's clock forward, letting every timer on the way fire."""
        await self.env.fast_forward(handle, duration)

    async def status(self, handle: WorkflowHandle) -> FollowUpStatus:
        return await handle.query(DepartureFollowUp.status)

    async def steps(self, handle: WorkflowHandle) -> list[str]:
        return [entry.step for entry in (await self.status(handle)).trail]

    async def until(self, handle: WorkflowHandle, check: Callable[[FollowUpStatus], bool],
                    what: str, timeout: float = 20.0) -> FollowUpStatus:
        """Wait (in real time) for the follow-up to reach a state, e.g. after a signal."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status = await self.status(handle)
            if check(status):
                return status
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"follow-up never reached: {what}; trail: "
                            f"{[e.step for e in status.trail]}")
            await asyncio.sleep(0.1)

    async def until_step(self, handle: WorkflowHandle, step: str) -> FollowUpStatus:
        return await self.until(handle, lambda s: step in [e.step for e in s.trail], step)

    async def finish(self, handle: WorkflowHandle, timeout: float = 60.0) -> FollowUpOutcome:
        """Let time run freely until the follow-up closes (if it has not already)."""
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await asyncio.wait_for(self.env.fast_forward(handle), timeout)
        return await handle.result()

    def texts_to(self, number: str) -> list[str]:
        return [m.body for m in self.sms.sent_to(number)]

    def mails_to(self, address: str) -> list[str]:
        return [m.text for m in self.mail.sent_to(address)]


@asynccontextmanager
async def harness(
    env: WorkflowEnvironment, settings: Settings, sms: SmsOutbox, mail: Mailbox,
    booking: BookingSink,
) -> AsyncIterator[FollowUpHarness]:
    async with running_worker(env.client, settings):
        store = await AuditStore.open(settings.audit_database_url)
        try:
            yield FollowUpHarness(env, settings, sms, mail, booking, store)
        finally:
            await store.close()


def steps_in_order(trail: list[str], *expected: str) -> bool:
    """True when ``expected`` appear in ``trail`` in this order (other steps may interleave)."""
    it = iter(trail)
    return all(step in it for step in expected)


def assert_client_message(body: str, *, language: str = "en") -> None:
    """What every message to a client must and must not carry."""
    assert "988" in body, "every client message carries the crisis line"
    assert "Dana" in body or "booked" in body.lower() or "reservar" in body
    for clinical in ("risk", "moderate", "imminent", "session s-", "t-12", "therapist"):
        assert clinical not in body.lower(), f"clinical detail {clinical!r} in a client message"
    if language == "es":
        assert "Hola" in body or "Gracias" in body or "Vuelves" in body or "reservar" in body
    else:
        assert "Hola" not in body
