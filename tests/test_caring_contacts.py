"""Caring Contacts: a follow-up that ends without a booked session is followed, where the
clinic turned it on, by a series of brief messages over months. Real follow-ups and series
on the time-skipping dev server, with a real worker and the loopback SMS and mail sinks."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowHandle

from aftercare.followups import actions
from aftercare.followups.errors import ActionRefused
from aftercare.followups.lookup import open_followup_of_sender
from aftercare.followups.views import read_status
from aftercare.temporal.codec import EncryptionCodec, data_converter
from aftercare.trail.replay import replay_and_compare
from tests.followup_harness import (
    CLIENT_PHONE,
    LEAD_EMAIL,
    ON_CALL_PHONE,
    FollowUpHarness,
    make_event,
)
from tests.test_followup import checked_in, reply
from workflows.caring import CaringContacts
from workflows.followup import DepartureFollowUp
from workflows.models import (
    Acknowledge,
    AuditEntry,
    Cancel,
    ClientReply,
    ResolutionOutcome,
    Resolve,
    SeriesState,
    caring_contacts_id,
)
from workflows.policy import COMTOIS_SCHEDULE, day_after
from workflows.trail import first_break

TIMEZONE = "America/Los_Angeles"
# Waking hours that begin inside the quiet hours: a draw before 09:00 must wait for them.
SEND_BETWEEN = {"start": "06:00", "end": "12:00"}
QUIET_HOURS = {"start": "21:00", "end": "09:00", "protect": ["low", "moderate"]}
CARING_POLICY: dict[str, Any] = {
    "caring_contacts": {"enabled": True, "send_between": SEND_BETWEEN},
    "quiet_hours": QUIET_HOURS,
    "reschedule": {"slots": []},  # nothing to book: the follow-up ends unbooked
    "listen_after_close": "PT1H",
}
FIRST_LINE = "No need to reply; we read replies on weekdays. Text STOP"


async def unbooked_followup_then_series(
    followups: FollowUpHarness, **policy: Any
) -> tuple[WorkflowHandle, WorkflowHandle]:
    """A moderate-risk follow-up the client answers OK, with nothing to book: it listens,
    closes, and starts its series."""
    handle = await followups.start(make_event(timezone=TIMEZONE), **{**CARING_POLICY, **policy})
    await checked_in(followups, handle)
    await reply(followups, handle, "OK")
    await followups.until_step(handle, "listening")
    await followups.advance(handle, timedelta(hours=2))
    await handle.result()
    series = followups.client.get_workflow_handle_for(
        CaringContacts.run, caring_contacts_id(handle.id))
    await followups.until_step(series, "series_started")
    return handle, series


async def virtual_now(followups: FollowUpHarness, handle: WorkflowHandle) -> datetime:
    info = await followups.env.get_time_skipping_info(handle)
    assert info is not None
    return info.current_time.ToDatetime(tzinfo=UTC)


async def through_message(followups: FollowUpHarness, series: WorkflowHandle, number: int):
    """Move the series' clock to each next send in turn until message ``number`` is out."""
    while True:
        status = await followups.status(series)
        if len(caring_sends(status.trail)) >= number:
            return status
        due = status.caring_contacts and status.caring_contacts.next_send_at
        assert due is not None, [e.step for e in status.trail]
        gap = due - await virtual_now(followups, series)
        await followups.advance(series, max(gap, timedelta(0)) + timedelta(minutes=1))
        await followups.until(series, lambda s, n=len(caring_sends(status.trail)):
                              len(caring_sends(s.trail)) > n, "the next caring message")


def sent(trail: list[AuditEntry], kind: str) -> list[AuditEntry]:
    return [e for e in trail if e.step == f"{kind}_sent"]


def caring_sends(trail: list[AuditEntry]) -> list[AuditEntry]:
    return [e for e in trail if e.step.startswith("caring_") and e.step.endswith("_sent")]


def local(at: datetime) -> datetime:
    return at.astimezone(ZoneInfo(TIMEZONE))


def scheduled(trail: list[AuditEntry]) -> list[datetime]:
    return [datetime.fromisoformat(e.detail["scheduled"]) for e in trail
            if e.step == "caring_contact_due"]


def assert_on_schedule(trail: list[AuditEntry]) -> None:
    """Each message due on its day of the schedule, counted from the series' start in the
    client's zone, at a waking time outside quiet hours (which end at 09:00 here), and sent
    no earlier. The moment a send is recorded is when the test server ran its timer, which
    under fast-forward may be later: the schedule is read from when each was due."""
    start_day = local(trail[0].at).date()
    sends = caring_sends(trail)
    for number, (due, entry) in enumerate(zip(scheduled(trail), sends, strict=True)):
        when = local(due)
        assert when.date() == day_after(start_day, COMTOIS_SCHEDULE[number]), (number, when)
        assert time(9, 0) <= when.time() < time(12, 0), f"message {number + 1} due {when}"
        assert entry.at >= due
        assert entry.recipient == "client" and entry.channel == "sms"


async def client_texts(followups: FollowUpHarness) -> list[str]:
    return followups.texts_to(CLIENT_PHONE)


async def test_an_unbooked_followup_starts_the_series_which_sends_on_schedule_in_local_waking_time(
    followups: FollowUpHarness,
):
    followup, series = await unbooked_followup_then_series(followups)
    followup_trail = (await followups.status(followup)).trail
    (started,) = [e for e in followup_trail if e.step == "caring_contacts_started"]
    assert started.detail["series"] == series.id
    before = len(followups.texts_to(CLIENT_PHONE))
    status = await through_message(followups, series, 2)

    texts = followups.texts_to(CLIENT_PHONE)[before:]
    assert len(texts) == 2, texts
    assert texts[0].startswith("Hi Dana,") and FIRST_LINE in texts[0]
    assert "last" not in texts[1] and "No need to reply" in texts[1]
    assert all("988" in text for text in texts)
    assert_on_schedule(status.trail)
    assert [e.step for e in caring_sends(status.trail)] == ["caring_first_sent",
                                                            "caring_contact_sent"]
    assert status.caring_contacts is not None
    assert status.caring_contacts.state is SeriesState.ACTIVE
    assert status.caring_contacts.messages_sent == 2
    next_send = status.caring_contacts.next_send_at
    assert next_send is not None and local(next_send).date() == day_after(
        local(status.trail[0].at).date(), "P1M")
    await actions.stop_caring_contacts(followups.client, followup.id,
                                       Cancel(staff_id="t-lead", reason="end of test"))
    await series.result()
