"""A worker process killed mid-wait loses nothing: a new one finishes the follow-up and
no message goes out twice. Real processes, so a fresh interpreter also proves the
workflow loads in a clean sandbox."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta

from activities.delivery_ledger import CRASH_EXIT_CODE
from tests.fixtures.followups import worker_environment
from tests.followup_harness import CLIENT_PHONE, make_event
from workflows.followup import DepartureFollowUp
from workflows.models import ClientReply


def start_worker(environment: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "worker.py"], env=environment)


async def test_killed_worker_is_replaced_and_no_message_goes_out_twice(followups_without_worker):
    followups = followups_without_worker
    address = followups.client.service_client.config.target_host
    environment = worker_environment(followups.settings, address)
    first = start_worker(environment)
    second = None
    try:
        handle = await followups.start(make_event())
        await followups.advance(handle, timedelta(minutes=10))
        await followups.until_step(handle, "checkin_sent")

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        # The server skips time only while no task is outstanding: the dead worker's audit
        # batch waits for a worker, as it would in production, so the successor starts first.
        second = start_worker(environment)
        await followups.advance(handle, timedelta(minutes=30))  # the reminder falls due
        await followups.until_step(handle, "reminder_sent")
        await handle.signal(DepartureFollowUp.client_reply, ClientReply(text="ok"))
        outcome = await followups.finish(handle)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=40)

    assert outcome.client_safe
    texts = followups.texts_to(CLIENT_PHONE)
    assert len(texts) == 4, "check-in, reminder, thanks, reschedule offer"
    assert not [body for body, n in Counter(texts).items() if n > 1], "nothing sent twice"
    sent_steps = [e.step for e in outcome.trail if e.step.endswith("_sent")]
    assert len(sent_steps) == len(set(sent_steps)) == 4
    stored = await followups.store.entries(handle.id)
    assert [e.hash for e in stored] == [e.hash for e in outcome.trail]


async def test_a_worker_killed_after_twilio_accepted_a_text_never_sends_it_twice(
    followups_without_worker,
):
    followups = followups_without_worker
    address = followups.client.service_client.config.target_host
    environment = worker_environment(followups.settings, address)
    crashing = start_worker(
        {**environment, "AFTERCARE_TEST_CRASH_AFTER": "provider_accepts"})
    replacement = None
    try:
        handle = await followups.start(make_event())
        await followups.advance(handle, timedelta(minutes=10))
        # The check-in reached Twilio; the worker died before the ledger heard of it.
        assert await asyncio.to_thread(crashing.wait, 60) == CRASH_EXIT_CODE
        assert len(followups.texts_to(CLIENT_PHONE)) == 1
        replacement = start_worker(environment)
        # The attempt times out; its retry asks Twilio's Messages list before sending.
        await followups.advance(handle, timedelta(minutes=1))
        await followups.until_step(handle, "checkin_sent")
        await handle.signal(DepartureFollowUp.client_reply, ClientReply(text="ok"))
        outcome = await followups.finish(handle)
    finally:
        for process in (crashing, replacement):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=40)

    [checkin] = [e for e in outcome.trail if e.step == "checkin_sent"]
    [accepted] = followups.sms.messages[:1]
    assert checkin.provider_message_id == accepted.sid, "the text Twilio accepted first"
    texts = followups.texts_to(CLIENT_PHONE)
    assert len(texts) == 3, "check-in, thanks, reschedule offer"
    assert not [body for body, n in Counter(texts).items() if n > 1], "nothing sent twice"
