"""What a follow-up's Temporal history costs: events, bytes and Temporal Cloud actions.

Actions are counted from the history as Temporal Cloud bills them (its "Actions" page,
which lists each billable action beside the history event it shows in):

- workflow started (a run's WORKFLOW_EXECUTION_STARTED; a continue-as-new is billed as the
  next run's start, so it is counted there and not at CONTINUED_AS_NEW);
- activity scheduled (ACTIVITY_TASK_SCHEDULED) and each retry (ACTIVITY_TASK_STARTED's
  ``attempt`` minus 1);
- local activities: all markers one workflow task records count as one action, and each
  later local-activity attempt (``metering_metadata`` on WORKFLOW_TASK_COMPLETED) as one;
- timer started (TIMER_STARTED, the SDK's own timers for a wait with a timeout included);
- signal (WORKFLOW_EXECUTION_SIGNALED), update accepted (WORKFLOW_EXECUTION_UPDATE_ACCEPTED;
  a rejected update is billed too but never written to a history, and Aftercare refuses by
  failing an accepted one), search-attribute upsert (UPSERT_WORKFLOW_SEARCH_ATTRIBUTES),
  workflow options updated, a child workflow started (two), a Nexus operation.

Queries and activity heartbeats are billed but leave no event: a run that sends them says
so beside the figure. Memo upserts (WORKFLOW_PROPERTIES_MODIFIED) are not billed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

E = EventType
# One action each time the event is written.
ONE_ACTION = {
    E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: "workflow started",
    E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activity",
    E.EVENT_TYPE_TIMER_STARTED: "timer",
    E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signal",
    E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "update",
    E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "search-attribute upsert",
    E.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED: "workflow options updated",
    E.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED: "nexus",
    E.EVENT_TYPE_NEXUS_OPERATION_CANCEL_REQUESTED: "nexus",
}
CHILD_STARTED = E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED  # two actions


@dataclass(frozen=True)
class HistoryCost:
    events: int
    bytes: int
    actions: Counter[str]

    @property
    def total_actions(self) -> int:
        return sum(self.actions.values())


def history_cost(events: Sequence[HistoryEvent]) -> HistoryCost:
    actions: Counter[str] = Counter()
    marker_tasks: set[int] = set()
    for event in events:
        kind = event.event_type
        if kind in ONE_ACTION:
            actions[ONE_ACTION[kind]] += 1
        elif kind == CHILD_STARTED:
            actions["child workflow started"] += 2
        elif kind == E.EVENT_TYPE_MARKER_RECORDED:
            marker_tasks.add(event.marker_recorded_event_attributes.workflow_task_completed_event_id)
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            metering = event.workflow_task_completed_event_attributes.metering_metadata
            actions["local activity retry"] += metering.nonfirst_local_activity_execution_attempts
        if kind == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            actions["activity retry"] += max(
                0, event.activity_task_started_event_attributes.attempt - 1)
    actions["local activities"] += len(marker_tasks)
    return HistoryCost(events=len(events), bytes=sum(e.ByteSize() for e in events),
                       actions=+actions)


def mean_cost(costs: Sequence[HistoryCost]) -> HistoryCost:
    """The mean of several follow-ups' costs (action kinds summed, then divided)."""
    total: Counter[str] = Counter()
    for cost in costs:
        total.update(cost.actions)
    n = len(costs)
    return HistoryCost(events=round(sum(c.events for c in costs) / n),
                       bytes=round(sum(c.bytes for c in costs) / n),
                       actions=Counter({k: round(v / n, 1) for k, v in total.items()}))
