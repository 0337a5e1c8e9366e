"""The worker's parts: the follow-up workflow, the Caring Contacts series that may follow
it, and the activities they drive, polling a task
queue. ``worker.py`` runs it as a service; the policy simulation runs it on a private server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.audit import AuditActivities, TrailBatches
from activities.booking import BookingActivities
from activities.email import EmailActivities
from activities.sms import SmsActivities
from aftercare.metrics import AftercareMetrics
from aftercare.settings import Settings
from aftercare.temporal.codec import EncryptionCodec
from aftercare.temporal.stale_query_guard import StaleQueryGuard
from aftercare.trail.store import AuditStore
from workflows.caring import CaringContacts
from workflows.followup import DepartureFollowUp
from workflows.sandbox import workflow_runner


@asynccontextmanager
async def running_worker(
    client: Client, settings: Settings,
    workflows: Sequence[type] = (DepartureFollowUp, CaringContacts),
) -> AsyncIterator[Worker]:
    """A worker polling the task queue until the block ends; then it drains and stops.
    ``workflows`` is for tests that run a variant of the follow-up under its name."""
    store = await AuditStore.open(settings.audit_database_url, settings.audit_signing_keys)
    # The send activities keep their provider connections for the worker's life; once the
    # worker has drained, they close them and give the deliveries not yet in the ledger a
    # bounded time to be written, both at once.
    senders: list[SmsActivities | EmailActivities] = []
    try:
        trail = TrailBatches(store, EncryptionCodec(settings.encryption_keys))
        sms = SmsActivities(settings, store, trail)
        email = EmailActivities(settings, store, trail)
        senders = [sms, email]
        await sms.open()
        await email.open()
        booking = BookingActivities(settings)
        audit = AuditActivities(
            trail, crash_after_commit=settings.test_crash_after == "audit_commit")
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=list(workflows),
            workflow_runner=StaleQueryGuard(workflow_runner()),
            activities=[
                sms.send_sms,
                email.send_email,
                booking.request_booking,
                audit.append_audit_entries,
            ],
            interceptors=[AftercareMetrics()],
            graceful_shutdown_timeout=timedelta(seconds=30),
        )
        async with worker:
            yield worker
    finally:
        try:
            await asyncio.gather(*(sender.close() for sender in senders))
        finally:
            await store.close()
