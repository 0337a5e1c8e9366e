"""A worker process killed mid-wait loses nothing: a new one finishes the follow-up and
no message goes out twice. Real processes, so a fresh interpreter also proves the
workflow loads in a clean sandbox."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from datetime import timedelta

import pytest

from activities.delivery_ledger import CRASH_EXIT_CODE
from aftercare.store import AuditStore
from tests.followup_harness import CLIENT_PHONE, FollowUpHarness, make_event
from workflows.followup import DepartureFollowUp
from workflows.models import ClientReply


def worker_environment(settings, address: str) -> dict[str, str]:
    pairs = lambda mapping: ",".join(f"{k}:{v}" for k, v in mapping.items())  # noqa: E731
    return {
        **os.environ,
        "AFTERCARE_TEMPORAL_ADDRESS": address,
        "AFTERCARE_TASK_QUEUE": settings.task_queue,
        "AFTERCARE_TWILIO_API_BASE_URL": settings.twilio_api_base_url,
        "AFTERCARE_SMTP_HOST": settings.smtp_host,
        "AFTERCARE_SMTP_PORT": str(settings.smtp_port),
        "AFTERCARE_PUBLIC_BASE_URL": settings.public_base_url,
        "AFTERCARE_AUDIT_DATABASE_URL": settings.audit_database_url,
        "AFTERCARE_ENCRYPTION_KEYS": pairs(settings.encryption_keys),
        "AFTERCARE_LINK_SECRET": settings.link_secret,
        "AFTERCARE_BOOKING_WEBHOOK_SECRETS": pairs(settings.booking_webhook_secrets),
        "AFTERCARE_AUDIT_SIGNING_KEYS": pairs(settings.audit_signing_keys),
        "AFTERCARE_LOG_LEVEL": "WARNING",
    }


def start_worker(environment: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "worker.py"], env=environment)


@pytest.fixture
async def followups_without_worker(
    temporal_env, delivery_settings, sms_outbox, mailbox, booking_sink, sqlite_url,
    encryption_keys,
):
    settings = delivery_settings.model_copy(update={
        "task_queue": f"tq-{uuid.uuid4()}", "audit_database_url": sqlite_url,
        "encryption_keys": encryption_keys,
    })
    store = await AuditStore.open(sqlite_url)
    yield FollowUpHarness(temporal_env, settings, sms_outbox, mailbox, booking_sink, store)
    await store.close()


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
        {**environment, "AFTERCARE_TEST_CRASH_AFTER_PROVIDER_ACCEPTS": "true"})
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
