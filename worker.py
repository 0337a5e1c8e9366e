"""Runs the Aftercare worker: the follow-up workflow and the activities it drives."""

from __future__ import annotations

import asyncio
import signal

from aftercare.allocator import fix_malloc_thresholds
from aftercare.followup_worker import running_worker
from aftercare.logs import configure_logging, get_logger
from aftercare.metrics import report_open_followups, worker_runtime
from aftercare.preflight import checked_settings, worker_problems
from aftercare.process import exit_without_finalizing
from aftercare.settings import Settings
from aftercare.temporal.startup import connect_checked, run_service

log = get_logger("aftercare.worker")

__all__ = ["main", "running_worker"]


async def main(settings: Settings) -> None:
    """Run a worker on settings ``checked_settings(worker_problems)`` found sound."""
    configure_logging(settings.log_level)
    fix_malloc_thresholds()
    runtime = worker_runtime(settings)
    client = await connect_checked(settings, runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    open_followups = (
        asyncio.create_task(report_open_followups(settings, runtime))
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
