"""The benchmark counts a history's Temporal Cloud actions as Cloud bills them: a count
over hand-made events, no server and no timing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

SPEC = importlib.util.spec_from_file_location(
    "bench_history", Path(__file__).parents[1] / "bench" / "history.py")
assert SPEC is not None and SPEC.loader is not None
history = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = history
SPEC.loader.exec_module(history)

E = EventType


def event(kind: int, **attributes) -> HistoryEvent:  # noqa: ANN003
    built = HistoryEvent(event_type=kind)
    for name, values in attributes.items():
        for key, value in values.items():
            sub = getattr(getattr(built, name), key)
            if isinstance(value, dict):
                for k, v in value.items():
                    setattr(sub, k, v)
            else:
                setattr(getattr(built, name), key, value)
    return built


def test_actions_are_counted_as_temporal_cloud_bills_them():
    events = [
        event(E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),
        event(E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
        event(E.EVENT_TYPE_WORKFLOW_TASK_STARTED),
        event(E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, workflow_task_completed_event_attributes={
            "metering_metadata": {"nonfirst_local_activity_execution_attempts": 2}}),
        # Two markers of one workflow task are one action; a third in another task, one more.
        event(E.EVENT_TYPE_MARKER_RECORDED,
              marker_recorded_event_attributes={"workflow_task_completed_event_id": 4}),
        event(E.EVENT_TYPE_MARKER_RECORDED,
              marker_recorded_event_attributes={"workflow_task_completed_event_id": 4}),
        event(E.EVENT_TYPE_MARKER_RECORDED,
              marker_recorded_event_attributes={"workflow_task_completed_event_id": 9}),
        event(E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
        # Started on its third attempt: two retries.
        event(E.EVENT_TYPE_ACTIVITY_TASK_STARTED,
              activity_task_started_event_attributes={"attempt": 3}),
        event(E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED),
        event(E.EVENT_TYPE_TIMER_STARTED),
        event(E.EVENT_TYPE_TIMER_CANCELED),
        event(E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED),
        event(E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED),
        event(E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED),
        event(E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES),
        event(E.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED),  # a memo upsert: not billed
        event(E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED),
        event(E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED),
    ]
    cost = history.history_cost(events)
    assert cost.events == len(events)
    assert cost.bytes == sum(e.ByteSize() for e in events)
    assert dict(cost.actions) == {
        "workflow started": 1, "local activities": 2, "local activity retry": 2,
        "activity": 1, "activity retry": 2, "timer": 1, "signal": 1, "update": 1,
        "search-attribute upsert": 1, "child workflow started": 2,
    }
    assert cost.total_actions == 14


def test_the_mean_of_several_followups_keeps_each_kind():
    one = history.history_cost([event(E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),
                                event(E.EVENT_TYPE_TIMER_STARTED)])
    two = history.history_cost([event(E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)])
    mean = history.mean_cost([one, two])
    assert dict(mean.actions) == {"workflow started": 1.0, "timer": 0.5}
    assert mean.events == round(3 / 2)
