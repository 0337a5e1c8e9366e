"""The worker's metrics: the Temporal SDK's own (``temporal_*``) and Aftercare's counters
(``aftercare_*``), on one Prometheus endpoint at ``AFTERCARE_WORKER_METRICS_PORT``.

Aftercare's counters are recorded around the workflow and its activities by an
interceptor, so the protocol's code stays free of them:

- ``aftercare_messages{channel, kind, outcome}``: each send attempt, by what it was
  (``checkin``, ``page``, ...) and how it ended (``sent``, ``already_sent``,
  ``permanent_failure``, ``retrying``);
- ``aftercare_fallbacks{channel}``: a message re-sent on the other channel (the one used);
- ``aftercare_audit_writes{outcome}``: each attempt to store a batch of the trail
  (``stored``, ``failed``: it will be retried, ``refused``: the store holds other entries
  under those numbers);
- ``aftercare_audit_lag_seconds``: for each batch stored, how long ago its oldest entry was
  sealed. While the audit store is down or locked the trail falls behind, never a page:
  ``failed`` writes climb, and once the store is back the lag shows how far behind it was;
- ``aftercare_escalations{event}``: ``opened``, ``acknowledged``, ``resolved``, ``exhausted``
  (every level paged and nobody acknowledged), read from the steps the trail records;
- ``aftercare_followups_open{phase}``: follow-ups not yet closed, by the phase of the view
  each stored with its trail, counted in the audit store every
  ``OPEN_FOLLOWUPS_INTERVAL_SECONDS`` (each worker reports the same numbers).

Workflow-side counters use ``workflow.metric_meter()``, which records nothing while a
history replays, so a replayed step is not counted twice. Labels carry names from fixed
sets only: never an id, a number, an address or message text.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity, workflow
from temporalio.common import MetricCounter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from aftercare.settings import Settings
from aftercare.trail.store import AuditStore
from workflows.models import (
    PERMANENT_DELIVERY_FAILURE,
    SEND_ACTIVITIES,
    AuditBatch,
    Channel,
    Delivery,
    OutboundMessage,
    Phase,
)

AUDIT_ACTIVITY = "append_audit_entries"
ESCALATION_STEPS = {
    "escalation_started": "opened",
    "acknowledged": "acknowledged",
    "resolved": "resolved",
    "escalation_unacknowledged": "exhausted",
}
FALLBACK_STEP = "channel_fallback"
CHANNELS = {channel.value for channel in Channel}
OPEN_FOLLOWUPS_INTERVAL_SECONDS = 30.0
OPEN_PHASES = [phase for phase in Phase if phase is not Phase.CLOSED]
# A message kind is a word from the workflow's fixed set; anything else is reported as
# "other" rather than risk a label that carries data.
KIND = re.compile(r"[a-z][a-z_]{0,39}")


def worker_runtime(settings: Settings) -> Runtime | None:
    """A runtime serving Prometheus metrics, or None (the SDK's default) without a port."""
    if settings.worker_metrics_port is None:
        return None
    address = f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


def message_kind(message: OutboundMessage) -> str:
    kind = message.message_key.split("-", 1)[-1]
    return kind if KIND.fullmatch(kind) else "other"


class AftercareMetrics(Interceptor):
    """Counts messages and trail writes in the activities, escalation steps in the trail."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountActivities(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _CountTrailSteps


class _CountActivities(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        kind = activity.info().activity_type
        if kind in SEND_ACTIVITIES:
            return await self._count_message(input)
        if kind == AUDIT_ACTIVITY:
            return await self._count_audit_write(input)
        return await self.next.execute_activity(input)

    async def _count_message(self, input: ExecuteActivityInput) -> Any:
        message: OutboundMessage = input.args[0]
        outcome = "retrying"
        try:
            delivery: Delivery = await self.next.execute_activity(input)
            outcome = "already_sent" if delivery.already_sent else "sent"
            return delivery
        except ApplicationError as err:
            if err.type == PERMANENT_DELIVERY_FAILURE:
                outcome = "permanent_failure"
            raise
        finally:
            activity.metric_meter().create_counter(
                "aftercare_messages", "Messages to clients and staff, by channel, kind and outcome"
            ).add(1, {"channel": message.channel.value, "kind": message_kind(message),
                      "outcome": outcome})

    async def _count_audit_write(self, input: ExecuteActivityInput) -> Any:
        batch: AuditBatch = input.args[0]
        meter = activity.metric_meter()
        outcome = "failed"
        try:
            result = await self.next.execute_activity(input)
            outcome = "stored"
            if batch.entries:
                # On Temporal's clock, as the entries' times are: from sealing to this attempt.
                lag = activity.info().current_attempt_scheduled_time - batch.entries[0].at
                meter.create_histogram_float(
                    "aftercare_audit_lag_seconds",
                    "How long ago a stored batch's oldest trail entry was sealed", "s",
                ).record(max(0.0, lag.total_seconds()))
            return result
        except ApplicationError as err:
            if err.non_retryable:
                outcome = "refused"
            raise
        finally:
            count_audit_write(outcome)


def count_audit_write(outcome: str) -> None:
    """One attempt to store a batch of the trail, on its own or riding a send."""
    activity.metric_meter().create_counter(
        "aftercare_audit_writes", "Attempts to store a batch of the trail, by outcome"
    ).add(1, {"outcome": outcome})


class _CountTrailSteps(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_CountAuditedSteps(outbound))


class _CountAuditedSteps(WorkflowOutboundInterceptor):
    """Every step reaches the trail in a batch, the audit activity's or one a send carries,
    so counting the batches counts each step as it is written; a step a send could not store
    goes out again in a later batch, and is counted once."""

    _escalations: MetricCounter | None = None
    _fallbacks: MetricCounter | None = None
    _counted_through = 0

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle:
        if input.activity == AUDIT_ACTIVITY and input.args:
            self._count(input.args[0])
        return super().start_local_activity(input)

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle:
        if input.activity == AUDIT_ACTIVITY and input.args:
            self._count(input.args[0])
        elif input.activity in SEND_ACTIVITIES and input.args and input.args[0].trail:
            self._count(input.args[0].trail)
        return super().start_activity(input)

    def _count(self, batch: AuditBatch) -> None:
        for entry in batch.entries:
            if entry.seq <= self._counted_through:
                continue
            self._counted_through = entry.seq
            if entry.step in ESCALATION_STEPS:
                if self._escalations is None:
                    self._escalations = workflow.metric_meter().create_counter(
                        "aftercare_escalations",
                        "Escalations opened, acknowledged, resolved and exhausted")
                self._escalations.add(1, {"event": ESCALATION_STEPS[entry.step]})
            elif entry.step == FALLBACK_STEP:
                if self._fallbacks is None:
                    self._fallbacks = workflow.metric_meter().create_counter(
                        "aftercare_fallbacks", "Messages re-sent on the other channel")
                channel = entry.channel if entry.channel in CHANNELS else "other"
                self._fallbacks.add(1, {"channel": channel})


async def open_followups_by_phase(store: AuditStore) -> dict[str, int]:
    """Follow-ups not yet closed, by the phase their stored view shows. Every worker reports
    the same clinic-wide figures: alert on ``max``, never on ``sum``."""
    counts = await store.open_phase_counts()
    return {phase.value: counts.get(phase.value, 0) for phase in OPEN_PHASES}


async def report_open_followups(settings: Settings, runtime: Runtime) -> None:
    """Keep ``aftercare_followups_open`` current until cancelled."""
    gauge = runtime.metric_meter.create_gauge(
        "aftercare_followups_open", "Follow-ups still open, by the phase they are in")
    store = await AuditStore.open(settings.audit_database_url)
    try:
        while True:
            try:
                counts = await open_followups_by_phase(store)
            except (OSError, SQLAlchemyError):
                pass  # the audit-write metrics show the store is away; try again next round
            else:
                for phase, count in counts.items():
                    gauge.set(count, {"phase": phase})
            await asyncio.sleep(OPEN_FOLLOWUPS_INTERVAL_SECONDS)
    finally:
        await store.close()
