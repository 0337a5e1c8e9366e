"""A worker process killed mid-wait loses nothing: a new one finishes the follow-up and
no message goes out twice. Real processes, so a fresh interpreter also proves the
workflow loads in a clean sandbox."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta

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
        await followups.advance(handle, timedelta(minutes=30))  # the reminder falls due
        second = start_worker(environment)
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
