"""A bug in a send never stalls the protocol: it is logged at error level, counted, and
treated as a failed send of that channel, so the other channel is tried and the follow-up
goes on.

The bug is real workflow code, not a stand-in for Temporal or a provider: the follow-up of
``tests/defective_followup.py`` raises ``LookupError`` in the workflow while composing any
text to a staff member, before a provider is called (the previous engineer found that an
activity returning an unreadable result fails the task inside the SDK's converter, before
any of our code runs, so that is not a defect our code can meet). Everything else is the
real stack: the time-skipping dev server, the worker's activities, the loopback SMS and
mail sinks, and the worker's own metric pipeline (a Temporal runtime with a metric buffer)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig

from aftercare.settings import Settings, parse_key_list
from aftercare.temporal.codec import data_converter
from aftercare.trail.replay import read_history_file, replay_and_compare
from tests.defective_followup import BUG, FollowUpWithASendDefect
from tests.fixtures.temporal import TEST_ONLY_KEY
from tests.followup_harness import (
    BACKUP_EMAIL,
    BACKUP_PHONE,
    CONTACT_PHONE,
    LEAD_EMAIL,
    ON_CALL_EMAIL,
    ON_CALL_PHONE,
    FollowUpHarness,
    make_event,
    steps_in_order,
)
from worker import running_worker
from workflows.followup import DepartureFollowUp
from workflows.models import Acknowledge, FollowUpOutcome, Resolve
from workflows.outbox import DEFECT
from workflows.trail import first_break
from workflows.versions import DEFECT_FAILS_ONE_CHANNEL

SEND_DEFECTS = "aftercare_send_defects"
# Recorded by the code before a defect failed only its channel: the on-call's page failed
# whole, by the defect, and the chain went on to the backup.
BEFORE_THE_PATCH = sorted(
    (Path(__file__).parent / "histories" / "send-defects").glob("*before-fallback*.json"))


class Metered:
    def __init__(self) -> None:
        self.buffer = MetricBuffer(10_000)
        self.runtime = Runtime(telemetry=TelemetryConfig(metrics=self.buffer))
        self.counts: dict[str, int] = {}

    def counted(self, name: str) -> int:
        for update in self.buffer.retrieve_updates():
            self.counts[update.metric.name] = (self.counts.get(update.metric.name, 0)
                                               + int(update.value))
        return self.counts.get(name, 0)


@pytest.fixture
async def defective(
    followups_without_worker: FollowUpHarness,
) -> AsyncIterator[tuple[FollowUpHarness, Metered]]:
    """A worker running the follow-up with the bug, its metrics in a buffer the test reads."""
    followups = followups_without_worker
    metered = Metered()
    client = await Client.connect(
        followups.client.service_client.config.target_host,
        namespace=followups.client.namespace,
        data_converter=data_converter(followups.settings), runtime=metered.runtime)
    async with running_worker(client, followups.settings, [FollowUpWithASendDefect]):
        yield followups, metered


def defects_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR
            and r.getMessage().startswith(DEFECT) and r.exc_info
            and BUG in str(r.exc_info[1])]


async def assert_never_stuck_and_replays(followups: FollowUpHarness, handle: WorkflowHandle,
                                         trail_length: int) -> None:
    history = await handle.fetch_history()
    kinds = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in kinds, "no workflow task failed"
    markers = [e.marker_recorded_event_attributes for e in history.events
               if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert DEFECT_FAILS_ONE_CHANNEL not in [
        json.loads(m.details["patch-data"].payloads[0].data)["id"] for m in markers
        if m.marker_name == "core_patch"], "version 2 has the new way built in: no marker"
    assert kinds[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    stored = await followups.store.entries(handle.id)
    assert first_break(stored) is None and len(stored) == trail_length
    report = await replay_and_compare(history, stored, data_converter(followups.settings),
                                      [FollowUpWithASendDefect])
    assert report.discrepancies == []


async def test_a_page_whose_text_hits_a_defect_goes_by_email_at_once(
    defective: tuple[FollowUpHarness, Metered], caplog: pytest.LogCaptureFixture,
):
    """Imminent risk: the on-call (texts first) is paged. Composing the text raises; that is
    the SMS channel failing, so the page goes by email in the same moment, not after the
    policy's ``fallback_after`` and not never. Their all-clear goes the same way."""
    followups, metered = defective
    caplog.set_level(logging.ERROR)
    handle = await followups.start(make_event("imminent"))
    status = await followups.until_step(handle, "staff_page_sent")

    page = next(e for e in status.trail if e.step == "staff_page_sent")
    assert (page.recipient, page.channel) == ("staff:t-oncall", "email")
    failed = next(e for e in status.trail if e.step == "staff_page_failed")
    assert (failed.recipient, failed.channel, failed.outcome) == (
        "staff:t-oncall", "sms", DEFECT)
    started = next(e for e in status.trail if e.step == "escalation_started")
    assert page.at - started.at < timedelta(seconds=30), "not held back to fallback_after"
    assert steps_in_order([e.step for e in status.trail], "escalation_started",
                          "staff_page_failed", "staff_page_sent")
    [mail] = followups.mails_to(ON_CALL_EMAIL)
    assert "needs you" in mail and status.escalation.code in mail
    assert not followups.texts_to(ON_CALL_PHONE)
    assert len(followups.texts_to(CONTACT_PHONE)) == 1, "other texts are not touched"
    assert len(defects_logged(caplog)) == 1
    assert metered.counted(SEND_DEFECTS) == 1

    # The follow-up goes on: staff close the escalation, and the on-call hears by email.
    await handle.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id="t-oncall"))
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    outcome = await followups.finish(handle)
    assert outcome.closed_reason == "escalation resolved: reached_client"
    mails = followups.mails_to(ON_CALL_EMAIL)
    assert len(mails) == 2 and "resolved" in mails[1]
    assert not followups.texts_to(ON_CALL_PHONE)
    failures = [(e.step, e.channel, e.outcome) for e in outcome.trail if e.outcome == DEFECT]
    assert failures == [("staff_page_failed", "sms", DEFECT),
                        ("staff_resolved_failed", "sms", DEFECT)]
    assert len(defects_logged(caplog)) == 2
    assert metered.counted(SEND_DEFECTS) == 2
    await assert_never_stuck_and_replays(followups, handle, len(outcome.trail))


async def test_a_defect_on_the_last_channel_fails_that_page_and_the_chain_goes_on(
    defective: tuple[FollowUpHarness, Metered], caplog: pytest.LogCaptureFixture,
):
    """The backup is mailed first; the mail server refuses their address for good, and the
    text that follows hits the defect. Nobody at that level can be reached, so the chain
    pages the clinic lead at once. (Before, the defect on the last channel escaped into a
    wait condition and failed every workflow task: the follow-up was stuck, the lead never
    paged.)"""
    followups, metered = defective
    caplog.set_level(logging.ERROR)
    followups.mail.refuse_address(BACKUP_EMAIL)
    handle = await followups.start(
        make_event("imminent", consent=False),
        escalation={"ack_timeout": "PT10M", "repeats": 0, "resolve_reminder": "PT1H",
                    "levels": [{"targets": ["backup"]}, {"targets": ["clinic_lead"]}]})
    status = await followups.until(handle, lambda s: any(
        e.step == "staff_page_sent" for e in s.trail), "the lead paged")

    backup = [(e.step, e.channel, e.outcome) for e in status.trail
              if e.recipient == "staff:t-backup"]
    assert backup == [("staff_page_failed", "email", "permanent failure"),
                      ("staff_page_failed", "sms", DEFECT)]
    page = next(e for e in status.trail if e.step == "staff_page_sent")
    assert (page.recipient, page.channel) == ("staff:t-lead", "email")
    started = next(e for e in status.trail if e.step == "escalation_started")
    assert page.at - started.at < timedelta(minutes=10), "not after the backup's ack timeout"
    assert "needs you" in followups.mails_to(LEAD_EMAIL)[0]
    assert not followups.texts_to(BACKUP_PHONE) and not followups.mails_to(BACKUP_EMAIL)
    assert len(defects_logged(caplog)) == 1
    assert metered.counted(SEND_DEFECTS) == 1

    await handle.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id="t-lead"))
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-lead", outcome="reached_client"))
    outcome = await followups.finish(handle)
    assert outcome.escalation.acknowledged_by == "t-lead"
    assert len(followups.mails_to(LEAD_EMAIL)) == 2, "the lead's page and all-clear"
    assert not followups.mails_to(BACKUP_EMAIL), "the backup was never reached: no all-clear"
    await assert_never_stuck_and_replays(followups, handle, len(outcome.trail))


async def test_a_follow_up_that_met_a_defect_before_the_patch_replays_the_way_it_ran():
    """A follow-up running when this change ships may already have met a defect the old way
    (its whole page failed). Its history must replay, to the trail it stored."""
    assert BEFORE_THE_PATCH
    keys = parse_key_list(TEST_ONLY_KEY.read_text().strip())
    converter = data_converter(Settings(encryption_keys=keys))
    for path in BEFORE_THE_PATCH:
        history = read_history_file(path)
        completed = history.events[-1].workflow_execution_completed_event_attributes
        (recorded,) = await converter.decode(completed.result.payloads, [FollowUpOutcome])
        failed = [(e.recipient, e.channel) for e in recorded.trail if e.outcome == DEFECT]
        assert failed == [("staff:t-oncall", None)], "the old way: the whole page failed"

        report = await replay_and_compare(history, recorded.trail, converter,
                                          [FollowUpWithASendDefect])
        assert report.discrepancies == [], path.name
        assert report.replayed_entries == len(recorded.trail)
