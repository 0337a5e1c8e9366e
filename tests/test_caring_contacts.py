"""Caring Contacts: a follow-up that ends without a booked session is followed, where the
clinic turned it on, by a series of brief messages over months. Real follow-ups and series
on the time-skipping dev server, with a real worker and the loopback SMS and mail sinks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
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
    BACKUP_EMAIL,
    CLIENT_PHONE,
    CONTACT_PHONE,
    LEAD_EMAIL,
    ON_CALL_PHONE,
    FollowUpHarness,
    make_event,
    policy_document,
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


def zone_in_the_afternoon() -> str:
    """A client's zone where it is now early afternoon: the follow-up's check-in then falls
    outside the quiet hours whatever hour the suite runs at (the series' own sends are what
    these tests put against the quiet hours)."""
    now = datetime.now(UTC)
    zones = ("Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles", "America/Denver",
             "America/Chicago", "America/New_York", "America/Sao_Paulo", "Atlantic/Azores",
             "Europe/London", "Europe/Berlin", "Europe/Athens", "Europe/Moscow", "Asia/Dubai",
             "Asia/Karachi", "Asia/Dhaka", "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo",
             "Australia/Brisbane", "Pacific/Noumea", "Pacific/Auckland", "Pacific/Tongatapu")
    return next(zone for zone in zones if 12 <= now.astimezone(ZoneInfo(zone)).hour < 16)


TIMEZONE = zone_in_the_afternoon()
# Waking hours that begin inside the quiet hours: a draw before 09:00 must wait for them.
SEND_BETWEEN = {"start": "06:00", "end": "12:00"}
QUIET_HOURS = {"start": "21:00", "end": "09:00", "protect": ["low", "moderate"]}
CARING_POLICY: dict[str, Any] = {
    "caring_contacts": {"enabled": True, "send_between": SEND_BETWEEN},
    "quiet_hours": QUIET_HOURS,
    "reschedule": {"slots": []},  # nothing to book: the follow-up ends unbooked
    "listen_after_close": "PT1H",
}
HISTORY_BOUND = 200
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


async def test_stop_ends_the_series_at_once(followups: FollowUpHarness):
    _, series = await unbooked_followup_then_series(followups)
    await through_message(followups, series, 1)
    texts_before = len(followups.texts_to(CLIENT_PHONE))

    await reply(followups, series, "STOP")
    outcome = await series.result()

    assert outcome.state is SeriesState.STOPPED and outcome.why == "client opted out"
    assert outcome.messages_sent == 1
    steps = [e.step for e in outcome.trail]
    assert steps[-1] == "closed" and "series_stopped" in steps
    (stopped,) = [e for e in outcome.trail if e.step == "series_stopped"]
    assert stopped.actor == "client"
    assert len(followups.texts_to(CLIENT_PHONE)) == texts_before, "STOP is not answered"
    assert not [e for e in outcome.trail if e.step == "reply_for_review"]


async def test_a_crisis_text_in_month_four_pages_the_on_call_at_once_and_sends_the_crisis_line(
    followups: FollowUpHarness,
):
    _, series = await unbooked_followup_then_series(followups)
    await through_message(followups, series, 6)  # day 1, week 1, months 1 to 4
    due = scheduled((await followups.status(series)).trail)[-1]
    assert local(due).date() == day_after(
        local((await followups.status(series)).trail[0].at).date(), "P4M")
    pages_before = len(followups.texts_to(ON_CALL_PHONE))
    texts_before = len(followups.texts_to(CLIENT_PHONE))

    # The text reaches the series the way the SMS webhook routes it: by the sender's number.
    found = await open_followup_of_sender(followups.client, followups.settings.lookup_secret,
                                          CLIENT_PHONE)
    assert found == series.id
    await actions.send_reply(followups.client, found,
                             ClientReply(text="i want to end it all tonight", channel="sms"))
    status = await followups.until(
        series, lambda s: {"staff_page_sent", "crisis_resources_sent"}
        <= {e.step for e in s.trail}, "the on-call paged and the crisis line sent")

    (page,) = followups.texts_to(ON_CALL_PHONE)[pages_before:]
    assert "crisis words in a reply" in page
    (crisis_text,) = followups.texts_to(CLIENT_PHONE)[texts_before:]
    assert "You are not alone" in crisis_text and "988" in crisis_text
    (started,) = [e for e in status.trail if e.step == "escalation_started"]
    (received,) = [e for e in status.trail if e.step == "reply_received"]
    (paged,) = [e for e in status.trail if e.step == "staff_page_sent"]
    assert received.outcome == "crisis_words" and started.outcome == "crisis words in a reply"
    assert paged.recipient == "staff:t-oncall" and paged.at - received.at < timedelta(minutes=1)
    assert status.phase.value == "escalating"

    code = status.escalation.code
    await actions.acknowledge(followups.client, series.id,
                              Acknowledge(staff_id="t-oncall", code=code))
    await actions.resolve(followups.client, series.id,
                          Resolve(staff_id="t-oncall", outcome=ResolutionOutcome.REACHED_CLIENT))
    status = await followups.until_step(series, "resolved")
    assert status.caring_contacts.state is SeriesState.ACTIVE, "the series goes on"
    await actions.stop_caring_contacts(followups.client, series.id,
                                       Cancel(staff_id="t-lead", reason="end of test"))
    await series.result()


async def test_a_neutral_reply_goes_to_staff_to_read_with_no_crisis_text(
    followups: FollowUpHarness,
):
    _, series = await unbooked_followup_then_series(followups)
    await through_message(followups, series, 1)
    texts_before = len(followups.texts_to(CLIENT_PHONE))
    pages_before = len(followups.texts_to(ON_CALL_PHONE))

    await reply(followups, series, "thank you, that was kind. rough week")
    status = await followups.until_step(series, "staff_caring_reply_sent")

    (notice,) = followups.mails_to(LEAD_EMAIL)
    assert series.id in notice and "acknowledge it by" in notice
    assert "rough week" not in notice, "the reply itself is read in the console, not mailed"
    assert len(followups.texts_to(CLIENT_PHONE)) == texts_before, "no automatic answer"
    assert len(followups.texts_to(ON_CALL_PHONE)) == pages_before, "nobody is paged"
    steps = [e.step for e in status.trail]
    assert "escalation_started" not in steps and "crisis_resources_sent" not in steps
    (review,) = [e for e in status.trail if e.step == "reply_for_review"]
    assert review.recipient == "staff:t-lead"
    due = datetime.fromisoformat(review.detail["due"])
    assert due.astimezone(ZoneInfo("America/New_York")).time() == time(17, 0)
    assert due.astimezone(ZoneInfo("America/New_York")).weekday() < 5
    assert status.reply_for_review == "thank you, that was kind. rough week"
    assert status.caring_contacts.review_due == due

    result = await actions.acknowledge(followups.client, series.id,
                                       Acknowledge(staff_id="t-lead"))
    assert result.message == "reply read by t-lead"
    status = await followups.until_step(series, "reply_read")
    assert status.caring_contacts.review_due is None
    await actions.stop_caring_contacts(followups.client, series.id,
                                       Cancel(staff_id="t-lead", reason="end of test"))
    await series.result()


async def test_a_reply_nobody_reads_by_its_business_day_deadline_pages_the_chain_to_read_it(
    followups: FollowUpHarness,
):
    _, series = await unbooked_followup_then_series(followups)
    await through_message(followups, series, 1)
    texts_before = len(followups.texts_to(CLIENT_PHONE))
    await reply(followups, series, "been thinking about what we talked about")
    status = await followups.until_step(series, "staff_caring_reply_sent")
    due = status.caring_contacts.review_due
    (review,) = [e for e in status.trail if e.step == "reply_for_review"]
    clinic_zone = ZoneInfo("America/New_York")
    # The deadline is the end of the next business day (Monday to Friday, 17:00 in the
    # clinic's zone), counted from the day the reply came.
    next_business_day = local_business_day_after(review.at.astimezone(clinic_zone).date())
    assert due.astimezone(clinic_zone) == datetime.combine(next_business_day, time(17, 0),
                                                           tzinfo=clinic_zone)

    # Just before the deadline nobody is paged.
    await followups.advance(series, due - await virtual_now(followups, series)
                            - timedelta(minutes=5))
    status = await followups.status(series)
    assert "review_overdue" not in [e.step for e in status.trail]
    assert followups.texts_to(ON_CALL_PHONE) == []

    await followups.advance(series, timedelta(minutes=10))
    status = await followups.until_step(series, "staff_page_sent")

    (overdue,) = [e for e in status.trail if e.step == "review_overdue"]
    (started,) = [e for e in status.trail if e.step == "escalation_started"]
    (paged,) = [e for e in status.trail if e.step == "staff_page_sent"]
    assert overdue.outcome == "unread by its deadline"
    assert started.outcome == "client reply needs reading"
    assert paged.recipient == "staff:t-oncall" and paged.channel == "sms"
    assert due <= overdue.at <= started.at <= paged.at < due + timedelta(minutes=1)
    paged_locally = paged.at.astimezone(clinic_zone)
    assert paged_locally.date() == next_business_day and paged_locally.time() >= time(17, 0)
    (page,) = followups.texts_to(ON_CALL_PHONE)
    assert "client reply needs reading" in page
    assert "been thinking" not in page, "the reply is read in the console, not paged"
    assert status.phase.value == "escalating"
    assert status.caring_contacts.review_due is None

    # Unacknowledged, the chain walks on; a reply to read is no safety matter: the emergency
    # contact hears nothing, and the client is not answered.
    await followups.advance(series, timedelta(minutes=11))
    status = await followups.until(series, lambda s: any(
        e.step == "staff_page_sent" and e.recipient == "staff:t-backup" for e in s.trail),
        "the backup paged")
    assert len(followups.mails_to(BACKUP_EMAIL)) == 1
    assert followups.texts_to(CONTACT_PHONE) == []
    assert "emergency_contact_notice_sent" not in [e.step for e in status.trail]
    assert len(followups.texts_to(CLIENT_PHONE)) == texts_before

    await actions.acknowledge(followups.client, series.id, Acknowledge(
        staff_id="t-backup", code=status.escalation.code))
    await actions.resolve(followups.client, series.id, Resolve(
        staff_id="t-backup", outcome=ResolutionOutcome.REACHED_CLIENT))
    status = await followups.until_step(series, "resolved")
    assert status.caring_contacts.state is SeriesState.ACTIVE, "the series goes on"
    await actions.stop_caring_contacts(followups.client, series.id,
                                       Cancel(staff_id="t-lead", reason="end of test"))
    await series.result()


def local_business_day_after(day: date) -> date:
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


async def test_staff_stop_the_series_with_a_reason(followups: FollowUpHarness):
    followup, series = await unbooked_followup_then_series(followups)
    await through_message(followups, series, 1)
    texts_before = len(followups.texts_to(CLIENT_PHONE))

    with pytest.raises(ActionRefused, match="t-nobody is not a staff member"):
        await actions.stop_caring_contacts(followups.client, followup.id,
                                           Cancel(staff_id="t-nobody", reason="x"))
    result = await actions.stop_caring_contacts(
        followups.client, followup.id, Cancel(staff_id="t-lead", reason="client came back"))
    assert result.message == "stopped by t-lead"
    outcome = await series.result()

    assert outcome.state is SeriesState.STOPPED and outcome.why == "stopped by staff"
    (stopped,) = [e for e in outcome.trail if e.step == "series_stopped"]
    assert stopped.actor == "staff" and stopped.recipient == "staff:t-lead"
    assert "client came back" not in str(stopped), "staff free text stays out of the trail"
    (note,) = await followups.store.notes(series.id)
    assert note.staff_id == "t-lead" and note.audit_seq == stopped.seq
    assert len(followups.texts_to(CLIENT_PHONE)) == texts_before


async def test_a_year_long_series_ends_with_its_last_message_in_short_runs_that_replay_and_verify(
    followups: FollowUpHarness,
):
    followup, series = await unbooked_followup_then_series(followups)
    texts_before = len(followups.texts_to(CLIENT_PHONE))

    outcome = await followups.finish(series, timeout=180)

    assert outcome.state is SeriesState.ENDED and outcome.messages_sent == len(COMTOIS_SCHEDULE)
    texts = followups.texts_to(CLIENT_PHONE)[texts_before:]
    assert len(texts) == len(COMTOIS_SCHEDULE)
    assert "last of our messages" in texts[-1]
    assert all("last" not in text for text in texts[:-1])
    sends = caring_sends(outcome.trail)
    assert [e.step for e in sends] == (["caring_first_sent"] + ["caring_contact_sent"] * 8
                                       + ["caring_last_sent"])
    last_due = scheduled(outcome.trail)[-1]
    assert local(last_due).date() == day_after(local(outcome.trail[0].at).date(), "P12M")
    assert [e.step for e in outcome.trail][-2:] == ["series_ended", "closed"]

    # Bounded history: a new run every few messages, each run's history short.
    runs = [run async for run in followups.client.list_workflows(f"WorkflowId = '{series.id}'")]
    assert len(runs) >= 4, "the series continued as new"
    converter = data_converter(followups.settings)
    stored = await followups.store.entries(series.id)
    assert first_break(stored) is None, "the stored chain verifies"
    assert stored == outcome.trail
    for run in runs:
        history = await followups.client.get_workflow_handle(
            series.id, run_id=run.run_id).fetch_history()
        assert len(history.events) < HISTORY_BOUND, (run.run_id, len(history.events))
        report = await replay_and_compare(history, stored, converter,
                                          [DepartureFollowUp, CaringContacts])
        assert report.discrepancies == [], run.run_id

    # What people read comes from the store: the follow-up shows its ended series.
    status = await read_status(followups.store, EncryptionCodec(followups.settings.encryption_keys),
                               followup.id)
    assert status.caring_contacts is not None
    assert status.caring_contacts.state is SeriesState.ENDED
    assert status.caring_contacts.messages_sent == len(COMTOIS_SCHEDULE)


def test_the_policy_check_names_a_series_that_goes_backwards_or_whose_replies_nobody_reads():
    from aftercare.policy_check import clinic_problems
    from workflows.policy import ClinicPolicy
    from workflows.templates import DEFAULT_TEMPLATES

    def problems(caring: dict[str, Any], **policy: Any) -> list[str]:
        return clinic_problems(ClinicPolicy.model_validate(
            {**policy_document(**policy), "clinic_id": "clinic-42",
             "caring_contacts": {"enabled": True, **caring}}))

    assert problems({}) == []
    assert problems({"schedule": ["P1M", "P7D"]}) == [
        "caring_contacts.schedule.1: P7D is not after P1M: each message comes later than "
        "the one before"]
    assert problems({"schedule": ["P1D", "P6Y"]}) == [
        "caring_contacts.schedule.1: P6Y is longer than P5Y, the longest allowed"]
    assert problems({"send_between": {"start": "22:00", "end": "23:30"}},
                    quiet_hours=QUIET_HOURS) == [
        "caring_contacts.send_between: falls wholly in quiet_hours: every message would "
        "wait for their end"]
    assert problems({}, clinic_lead=None) == [
        "escalation.levels.2: nobody reachable: clinic_lead: clinic_lead is not set",
        "caring_contacts.reviewer: nobody reads replies: set a reviewer or clinic_lead"]
    long_spanish = {**DEFAULT_TEMPLATES["es"].model_dump(), "caring_last": "Hola " * 60}
    assert [p.split(":")[0] for p in problems(
        {}, templates={"en": DEFAULT_TEMPLATES["en"].model_dump(), "es": long_spanish},
        languages=["es"])] == ["templates.es.caring_last"]
