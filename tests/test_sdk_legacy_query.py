"""A minimal reproduction of the SDK behaviour behind ``StaleQueryGuard``, for an upstream
report, and the proof that the guard keeps such a history replayable.

The story, on a dev server of its own: worker A runs the probe's first task and is
SIGKILLed, its sticky queue still registered. A status query arrives (no task in flight,
so Temporal sends it straight to A's sticky queue, where it waits). The probe's activity
completes meanwhile, so a task is scheduled, also on A's queue. When the query's wait ends
it goes to worker B, which does not hold the probe, with the history as it now stands.
B rebuilds the probe and, to answer, applies the activity's result live on the clock of
the last task, and caches that. Then a signal arrives, and the real task brings it to B."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowHistory, WorkflowQueryFailedError
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker, WorkflowRunner

from aftercare.temporal.stale_query_guard import CATCHING_UP, StaleQueryGuard
from tests import legacy_query_probe as probe
from tests.fault_stack import REPO, DevServer


async def drive_the_story(tmp_path: Path, runner: WorkflowRunner) -> tuple[object, WorkflowHistory]:
    """(what the query answered or raised, the probe's history once it finished)"""
    server = DevServer(tmp_path)
    worker_a = None
    probe.released.clear()
    try:
        await server.start()
        client = await Client.connect(server.address)
        task_queue = f"probe-{uuid.uuid4()}"
        worker_a = subprocess.Popen(
            [sys.executable, "-m", "tests.legacy_query_probe", server.address, task_queue],
            cwd=REPO, start_new_session=True)
        async with Worker(client, task_queue=task_queue,
                          activities=[probe.held, probe.after_signal]):
            handle = await client.start_workflow(probe.Probe.run, id=f"probe-{uuid.uuid4()}",
                                                 task_queue=task_queue)
            await _until_activity_scheduled(handle)
            worker_a.send_signal(signal.SIGKILL)
            worker_a.wait()
            query = asyncio.create_task(handle.query(probe.Probe.poked_yet))
            # The result lands while the query waits on the dead worker's queue.
            await asyncio.sleep(probe.STICKY_TIMEOUT.total_seconds() / 2)
            probe.released.set()
            async with Worker(client, task_queue=task_queue, workflows=[probe.Probe],
                              workflow_runner=runner):
                try:
                    answered: object = await asyncio.wait_for(query, 30)
                except WorkflowQueryFailedError as err:
                    answered = err
                # Before the task that carries the result leaves the dead worker's queue.
                await handle.signal(probe.Probe.poke)
                assert await asyncio.wait_for(handle.result(), 30) == "finished"
        return answered, await handle.fetch_history()
    finally:
        if worker_a is not None and worker_a.poll() is None:
            worker_a.kill()
        server.stop(signal.SIGKILL)


async def _until_activity_scheduled(handle) -> None:  # noqa: ANN001
    for _ in range(200):
        history = await handle.fetch_history()
        if any(e.HasField("activity_task_scheduled_event_attributes") for e in history.events):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("worker A never ran the probe's first task")


async def replay_failure(history: WorkflowHistory) -> Exception | None:
    result = await Replayer(workflows=[probe.Probe]).replay_workflow(
        history, raise_on_replay_failure=False)
    return result.replay_failure


async def test_the_sdk_keeps_a_querys_pending_events_and_the_history_stops_replaying(tmp_path):
    """Upstream behaviour (temporalio 1.35). If this test fails because the history now
    replays, the SDK is fixed: drop ``StaleQueryGuard`` and this file."""
    answered, history = await drive_the_story(tmp_path, UnsandboxedWorkflowRunner())
    assert answered is False, "the query was answered from the run it rebuilt"
    failure = await replay_failure(history)
    assert failure is not None and "Nondeterminism" in str(failure), failure


async def test_the_guard_fails_the_query_and_the_history_replays(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="aftercare.temporal.stale_query_guard"):
        answered, history = await drive_the_story(
            tmp_path, StaleQueryGuard(UnsandboxedWorkflowRunner()))
    assert isinstance(answered, WorkflowQueryFailedError), answered
    assert CATCHING_UP in str(answered)
    assert "dropping it from the cache" in caplog.text
    assert await replay_failure(history) is None
