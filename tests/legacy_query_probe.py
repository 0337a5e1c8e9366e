"""The smallest workflow that shows the SDK applying a query's pending events on a stale
clock (see ``aftercare/temporal/stale_query_guard.py``), and a worker process for it.

It reacts to an activity's result by cancelling a timer, and to a signal by starting an
activity. Applied in one activation, as every replay applies them, the signal comes first:
the activity is scheduled, then the timer cancelled. Run as ``python -m
tests.legacy_query_probe ADDRESS TASK_QUEUE``, it serves the workflow until killed."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

# The dead worker's sticky queue holds a query and a task this long before Temporal moves
# them on: the window in which the test sends its signal.
STICKY_TIMEOUT = timedelta(seconds=3)

released = asyncio.Event()


@activity.defn
async def held() -> str:
    await released.wait()
    return "released"


@activity.defn
async def after_signal() -> str:
    return "done"


@workflow.defn
class Probe:
    def __init__(self) -> None:
        self.poked = False

    @workflow.signal
    async def poke(self) -> None:
        await workflow.execute_activity(after_signal, start_to_close_timeout=timedelta(seconds=30))
        self.poked = True

    @workflow.query
    def poked_yet(self) -> bool:
        return self.poked

    @workflow.run
    async def run(self) -> str:
        guard = asyncio.create_task(workflow.sleep(300))
        await workflow.execute_activity(held, start_to_close_timeout=timedelta(seconds=120))
        guard.cancel()
        await workflow.wait_condition(lambda: self.poked)
        return "finished"


async def serve(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    await Worker(client, task_queue=task_queue, workflows=[Probe],
                 sticky_queue_schedule_to_start_timeout=STICKY_TIMEOUT).run()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
