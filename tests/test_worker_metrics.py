"""The worker's Prometheus endpoint, after a follow-up ran: the SDK's temporal_ metrics and
Aftercare's counters are there, and no label value is an id, a phone number or an email."""

from __future__ import annotations

import asyncio
import re
import socket

import httpx
from prometheus_client.parser import text_string_to_metric_families

from aftercare.metrics import report_open_followups, worker_runtime
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
from workflows.models import Acknowledge, Resolve

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


async def test_metrics_endpoint_serves_sdk_and_aftercare_metrics_without_ids(
    temporal_env, delivery_settings, sms_outbox, mailbox, booking_sink, sqlite_url,
    encryption_keys,
):
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
    event = make_event("imminent", phone=INVALID_NUMBER)
    store = await AuditStore.open(sqlite_url)
    census = asyncio.create_task(report_open_followups(client, runtime))
    try:
        async with running_worker(client, settings):
            followups = FollowUpHarness(temporal_env, settings, sms_outbox, mailbox,
                                        booking_sink, store)
            handle = await followups.start(event)
            await followups.until_step(handle, "staff_page_sent")
            await handle.execute_update(DepartureFollowUp.acknowledge,
                                        Acknowledge(staff_id="t-oncall"))
            await handle.execute_update(DepartureFollowUp.resolve,
                                        Resolve(staff_id="t-oncall", outcome="reached_client"))
            await followups.finish(handle)
            async with httpx.AsyncClient() as http:
                scraped = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        census.cancel()
        await store.close()

    samples = [sample for family in text_string_to_metric_families(scraped)
               for sample in family.samples]
    names = {sample.name for sample in samples}
    assert any(name.startswith("temporal_") for name in names), sorted(names)

    def counted(name: str, **labels: str) -> float:
        # The endpoint writes counters without the _total suffix; the parser adds it.
        return sum(s.value for s in samples if s.name == f"{name}_total"
                   and all(s.labels.get(k) == v for k, v in labels.items()))

    assert counted("aftercare_messages", channel="sms", kind="staff_page", outcome="sent") >= 1
    assert counted("aftercare_messages", channel="sms", outcome="permanent_failure") >= 1
    assert counted("aftercare_messages", channel="email", kind="crisis_resources",
                   outcome="sent") == 1
    assert counted("aftercare_fallbacks", channel="email") == 1
    for event_name in ("opened", "acknowledged", "resolved"):
        assert counted("aftercare_escalations", event=event_name) == 1, event_name
    assert "aftercare_followups_open" in names

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
