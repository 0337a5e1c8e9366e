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
import time
import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowHistory, WorkflowQueryFailedError
from temporalio.service import RPCError
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker, WorkflowRunner

from aftercare.temporal.stale_query_guard import CATCHING_UP, StaleQueryGuard
from tests import legacy_query_probe as probe
from tests.fault_stack import REPO, DevServer

STORY_ATTEMPTS = 3


class StoryMissed(Exception):
    """The machine was too slow for one of the story's windows: nothing was learned."""


async def drive_the_story(tmp_path: Path, runner: WorkflowRunner) -> tuple[object, WorkflowHistory]:
    """(what the query answered or raised, the probe's history once it finished)

    The story has windows a slow machine can miss, and then it teaches nothing: the result
    must land while the query waits on the dead worker's queue, and the signal must come
    after the query's answer but before the task that carries the result leaves that
    queue. A missed window is told apart from the outcome, and the story is told again."""
    missed: list[str] = []
    for attempt in range(STORY_ATTEMPTS):
        folder = tmp_path / f"attempt-{attempt}"
        folder.mkdir()
        try:
            return await _tell_the_story(folder, runner)
        except StoryMissed as why:
            missed.append(str(why))
    raise AssertionError(f"the story's windows were missed {STORY_ATTEMPTS} times: {missed}")


async def _tell_the_story(folder: Path, runner: WorkflowRunner) -> tuple[object, WorkflowHistory]:
    server = DevServer(folder)
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
            await _until_event(handle, "activity_task_scheduled_event_attributes")
            worker_a.send_signal(signal.SIGKILL)
            worker_a.wait()
            # The server lets go of the dead worker's polls; a query handed to one of
            # them comes back "context canceled" instead of waiting on its queue.
            await asyncio.sleep(0.5)
            query = asyncio.create_task(handle.query(probe.Probe.poked_yet))
            query_sent = time.monotonic()
            await asyncio.sleep(probe.STICKY_TIMEOUT.total_seconds() / 2)
            probe.released.set()
            await _until_event(handle, "activity_task_completed_event_attributes")
            if time.monotonic() - query_sent > probe.STICKY_TIMEOUT.total_seconds() * 0.9:
                query.cancel()
                raise StoryMissed("the result landed after the query had left A's queue")
            async with Worker(client, task_queue=task_queue, workflows=[probe.Probe],
                              workflow_runner=runner):
                try:
                    answered: object = await asyncio.wait_for(query, 30)
                except WorkflowQueryFailedError as err:
                    answered = err
                except RPCError as err:
                    raise StoryMissed(f"the server refused the query: {err}") from err
                await handle.signal(probe.Probe.poke)
                assert await asyncio.wait_for(handle.result(), 30) == "finished"
        history = await handle.fetch_history()
        if not _signal_came_with_the_result(history):
            raise StoryMissed("the task that carried the result left A's queue before the signal")
        return answered, history
    finally:
        if worker_a is not None and worker_a.poll() is None:
            worker_a.kill()
        server.stop(signal.SIGKILL)


async def _until_event(handle, attribute: str) -> None:  # noqa: ANN001
    for _ in range(200):
        history = await handle.fetch_history()
        if any(e.HasField(attribute) for e in history.events):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the probe's history never held {attribute}")


def _signal_came_with_the_result(history: WorkflowHistory) -> bool:
    """Whether the signal arrived before the task that brought the activity's result
    started, so both reached one activation."""
    events = list(history.events)
    completed = next(i for i, e in enumerate(events)
                     if e.HasField("activity_task_completed_event_attributes"))
    for event in events[completed:]:
        if event.HasField("workflow_execution_signaled_event_attributes"):
            return True
        if event.HasField("workflow_task_started_event_attributes"):
            return False
    return False


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
