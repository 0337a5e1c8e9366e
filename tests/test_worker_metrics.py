"""The worker's Prometheus endpoint, after a follow-up ran: the SDK's temporal_ metrics and
Aftercare's counters are there, and no label value is an id, a phone number or an email.
A trail that falls behind (the audit store locked) shows as failed writes, then as lag."""

from __future__ import annotations

import asyncio
import re
import socket
import sqlite3
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy.engine import make_url

from aftercare.metrics import open_followups_by_phase, report_open_followups, worker_runtime
from aftercare.temporal.connection import connect
from aftercare.trail.store import AuditStore
from tests.followup_harness import (
    CLIENT_EMAIL,
    CONTACT_PHONE,
    ON_CALL_PHONE,
    FollowUpHarness,
    make_event,
)
from worker import running_worker
from workflows.followup import DepartureFollowUp
from workflows.models import Acknowledge, Phase, Resolve

INVALID_NUMBER = "+15005550001"  # Twilio: not a valid phone number, so the client is mailed
LOOKS_LIKE_DATA = [
    re.compile(r"\+?\d[\d\s-]{6,}"),  # a phone number
    re.compile(r"[^@\s]+@[^@\s]+"),  # an email address
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),  # a uuid
    re.compile(r"followup-|evt-|s-[0-9a-f]{6,}|c-\d+|t-\w+"),  # our ids
]
BUCKET_LABELS = {"le", "quantile"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def metered(
    temporal_env, delivery_settings, sms_outbox, mailbox, booking_sink, sqlite_url,
    encryption_keys,
) -> AsyncIterator[tuple[FollowUpHarness, int]]:
    """A worker serving its metrics on a port of its own, and a harness to drive it."""
    port = free_port()
    settings = delivery_settings.model_copy(update={
        # A task queue name is a label value: a fixed name, as in production, not a uuid.
        "task_queue": "aftercare-metrics-test",
        "audit_database_url": sqlite_url,
        "encryption_keys": encryption_keys,
        "lookup_secret": "lookup-secret-for-tests",
        "temporal_address": temporal_env.client.service_client.config.target_host,
        "worker_metrics_port": port,
    })
    runtime = worker_runtime(settings)
    client = await connect(settings, runtime)
    store = await AuditStore.open(sqlite_url)
    census = asyncio.create_task(report_open_followups(settings, runtime))
    try:
        async with running_worker(client, settings):
            yield FollowUpHarness(temporal_env, settings, sms_outbox, mailbox, booking_sink,
                                  store), port
    finally:
        census.cancel()
        await store.close()


async def scrape(port: int) -> list[Sample]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    return [sample for family in text_string_to_metric_families(text)
            for sample in family.samples]


def counted(samples: list[Sample], name: str, **labels: str) -> float:
    # The endpoint writes counters without the _total suffix; the parser adds it.
    return sum(s.value for s in samples if s.name == f"{name}_total"
               and all(s.labels.get(k) == v for k, v in labels.items()))


async def test_metrics_endpoint_serves_sdk_and_aftercare_metrics_without_ids(
    metered: tuple[FollowUpHarness, int],
):
    followups, port = metered
    event = make_event("imminent", phone=INVALID_NUMBER)
    handle = await followups.start(event)
    await followups.until_step(handle, "staff_page_sent")
    await handle.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id="t-oncall"))
    await followups.until(handle, lambda s: s.phase is Phase.AWAITING_RESOLUTION,
                          "waiting for staff to resolve")
    for _ in range(100):  # the view reaches the store with the next batch of the trail
        by_phase = await open_followups_by_phase(followups.store)
        if by_phase["awaiting_resolution"] == 1:
            break
        await asyncio.sleep(0.1)
    assert by_phase["awaiting_resolution"] == 1, by_phase
    assert sum(by_phase.values()) == 1, by_phase
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    await followups.finish(handle)
    samples = await scrape(port)

    names = {sample.name for sample in samples}
    assert any(name.startswith("temporal_") for name in names), sorted(names)
    assert counted(samples, "aftercare_messages", channel="sms", kind="staff_page",
                   outcome="sent") >= 1
    assert counted(samples, "aftercare_messages", channel="sms", outcome="permanent_failure") >= 1
    assert counted(samples, "aftercare_messages", channel="email", kind="crisis_resources",
                   outcome="sent") == 1
    assert counted(samples, "aftercare_fallbacks", channel="email") == 1
    for event_name in ("opened", "acknowledged", "resolved"):
        assert counted(samples, "aftercare_escalations", event=event_name) == 1, event_name
    assert "aftercare_followups_open" in names
    assert counted(samples, "aftercare_audit_writes", outcome="stored") >= 1
    assert counted(samples, "aftercare_audit_writes", outcome="failed") == 0

    data = {event.workflow_id, event.session_id, event.event_id, event.client.id,
            event.therapist_id, INVALID_NUMBER, CLIENT_EMAIL, CONTACT_PHONE, ON_CALL_PHONE,
            "Dana", "Sam"}
    for sample in samples:
        for label, value in sample.labels.items():
            if label in BUCKET_LABELS:
                continue
            assert value not in data, (sample.name, label, value)
            assert not any(p.fullmatch(value) or p.match(value) for p in LOOKS_LIKE_DATA), (
                sample.name, label, value)


async def test_a_locked_audit_store_shows_as_failed_trail_writes_then_as_lag(
    metered: tuple[FollowUpHarness, int],
):
    followups, port = metered
    database = make_url(followups.settings.audit_database_url).database
    handle = await followups.start(make_event("imminent"))
    # A backup or an auditor's long transaction holds the audit store's write lock.
    holder = sqlite3.connect(database, isolation_level=None, timeout=30)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        await followups.until_step(handle, "staff_page_sent")
        for _ in range(60):
            locked = await scrape(port)
            if counted(locked, "aftercare_audit_writes", outcome="failed") >= 1:
                break
            await asyncio.sleep(0.5)
        assert counted(locked, "aftercare_audit_writes", outcome="failed") >= 1
        assert counted(locked, "aftercare_audit_writes", outcome="stored") == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    await handle.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id="t-oncall"))
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    await followups.finish(handle)
    caught_up = await scrape(port)
    assert counted(caught_up, "aftercare_audit_writes", outcome="stored") >= 1
    [lag_count] = [s.value for s in caught_up if s.name.startswith("aftercare_audit_lag")
                   and s.name.endswith("_count")]
    [lag_sum] = [s.value for s in caught_up if s.name.startswith("aftercare_audit_lag")
                 and s.name.endswith("_sum")]
    assert lag_count >= 1
    assert lag_sum >= 5, "the first batch waited out at least one lock wait before it was stored"
