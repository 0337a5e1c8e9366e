"""Runs the Aftercare worker: the follow-up workflow and the activities it drives."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.audit import AuditActivities
from activities.booking import BookingActivities
from activities.email import EmailActivities
from activities.sms import SmsActivities
from aftercare.logs import configure_logging, get_logger
from aftercare.metrics import AftercareMetrics, report_open_followups, worker_runtime
from aftercare.preflight import checked_settings, worker_problems
from aftercare.process import exit_without_finalizing
from aftercare.settings import Settings
from aftercare.temporal.codec import EncryptionCodec
from aftercare.temporal.startup import connect_checked, run_service
from aftercare.trail.store import AuditStore
from workflows.followup import DepartureFollowUp
from workflows.sandbox import workflow_runner

log = get_logger("aftercare.worker")


@asynccontextmanager
async def running_worker(client: Client, settings: Settings) -> AsyncIterator[Worker]:
    """A worker polling the task queue until the block ends; then it drains and stops."""
    store = await AuditStore.open(settings.audit_database_url, settings.audit_signing_keys)
    # The send activities keep their provider connections for the worker's life; once the
    # worker has drained, they close them and give the deliveries not yet in the ledger a
    # bounded time to be written, both at once.
    senders: list[SmsActivities | EmailActivities] = []
    try:
        sms = SmsActivities(settings, store)
        email = EmailActivities(settings, store)
        senders = [sms, email]
        await sms.open()
        await email.open()
        booking = BookingActivities(settings)
        audit = AuditActivities(store, EncryptionCodec(settings.encryption_keys),
                                crash_after_commit=settings.test_crash_after == "audit_commit")
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[DepartureFollowUp],
            workflow_runner=workflow_runner(),
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


async def main(settings: Settings) -> None:
    """Run a worker on settings ``checked_settings(worker_problems)`` found sound."""
    configure_logging(settings.log_level)
    runtime = worker_runtime(settings)
    client = await connect_checked(settings, runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    open_followups = (
        asyncio.create_task(report_open_followups(client, runtime, settings.task_queue))
        if runtime is not None else None)
    async with running_worker(client, settings):
        log.info("worker started", task_queue=settings.task_queue,
                 metrics_port=settings.worker_metrics_port)
        await stop.wait()
        log.info("worker draining: finishing in-flight activities before stopping")
        if open_followups is not None:
            open_followups.cancel()
    log.info("worker stopped")


if __name__ == "__main__":
    settings = checked_settings(worker_problems)
    exit_without_finalizing(run_service(lambda: main(settings)))
