"""Keeps a legacy query from leaving a cached follow-up ahead of its own history.

Temporal hands a query straight to a worker when the follow-up has no workflow task in
flight. If that worker died, the query waits out the dead worker's sticky queue and then
goes to any worker, together with the history as it stands by then: events may have come
in meanwhile (an activity's result, say) whose workflow task has not run yet. A worker
that does not hold the follow-up in its cache rebuilds it from that history, and the SDK
(temporalio 1.35) applies those pending events as a live activation on the clock of the
last workflow task, then keeps the result in its cache. When the real task arrives with a
later event (a client's text), the cached run has already reacted to the first event and
now reacts to the second in a separate activation: it sends the commands in an order that
no replay of the history produces, because a replay applies both in one activation, texts
first. The follow-up goes on live, but its history no longer replays: the auditor cannot
verify it, and the next worker that rebuilds it fails every task. ``tests/test_sdk_legacy_query.py``
reproduces it with a three-line workflow.

The guard spots that activation by its signature (events applied live, on the very clock
of the replayed task before it) and fails it. The SDK then fails the query and drops the
run from its cache, so the real task rebuilds it from the whole history in one activation,
as every replay will. The operator whose query it was is told to ask again.
"""

from __future__ import annotations

import logging
from typing import Any

from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails, WorkflowRunner
from temporalio.workflow import _Definition

log = logging.getLogger(__name__)

CATCHING_UP = ("this follow-up's worker is catching up after a restart and cannot answer "
               "yet; ask again in a few seconds")


class StaleQueryActivation(RuntimeError):
    """Events a query brought, about to be applied on a stale clock and kept."""


class StaleQueryGuard(WorkflowRunner):
    """Runs workflows with ``runner``, failing an activation that applies a query's pending
    events to a run rebuilt from history (see the module's docstring)."""

    def __init__(self, runner: WorkflowRunner) -> None:
        self.runner = runner

    def prepare_workflow(self, defn: _Definition) -> None:
        self.runner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _GuardedInstance(self.runner.create_instance(det))

    def set_worker_level_failure_exception_types(self, types: Any) -> None:
        self.runner.set_worker_level_failure_exception_types(types)


class _GuardedInstance(WorkflowInstance):
    def __init__(self, instance: WorkflowInstance) -> None:
        self.instance = instance
        # The clock of the last activation that changed the run, and whether it replayed.
        self.last_clock: int | None = None
        self.last_replayed = False

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        changes = [job for job in act.jobs
                   if not job.HasField("query_workflow") and not job.HasField("remove_from_cache")]
        if changes:
            clock = act.timestamp.ToNanoseconds()
            # A real task always starts later than the one replayed before it.
            if not act.is_replaying and self.last_replayed and clock == self.last_clock:
                log.warning("a query brought events a rebuilt follow-up must not apply yet; "
                            "dropping it from the cache (run %s)", act.run_id)
                self.last_clock = None
                raise StaleQueryActivation(CATCHING_UP)
            self.last_clock, self.last_replayed = clock, act.is_replaying
        return self.instance.activate(act)

    def get_serialization_context(self, *args: Any, **kwargs: Any) -> Any:
        return self.instance.get_serialization_context(*args, **kwargs)

    def get_info(self) -> Any:
        return self.instance.get_info()

    def get_external_store_context(self, *args: Any, **kwargs: Any) -> Any:
        return self.instance.get_external_store_context(*args, **kwargs)

    def get_thread_id(self) -> int | None:
        return self.instance.get_thread_id()
