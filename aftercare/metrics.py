"""The worker's metrics: the Temporal SDK's own (``temporal_*``) and Aftercare's counters
(``aftercare_*``), on one Prometheus endpoint at ``AFTERCARE_WORKER_METRICS_PORT``.

Aftercare's counters are recorded around the workflow and its activities by an
interceptor, so the protocol's code stays free of them:

- ``aftercare_messages{channel, kind, outcome}``: each send attempt, by what it was
  (``checkin``, ``page``, ...) and how it ended (``sent``, ``already_sent``,
  ``permanent_failure``, ``retrying``);
- ``aftercare_fallbacks{channel}``: a message re-sent on the other channel (the one used);
- ``aftercare_escalations{event}``: ``opened``, ``acknowledged``, ``resolved``, ``exhausted``
  (every level paged and nobody acknowledged), read from the steps the trail records;
- ``aftercare_followups_open{escalated}``: follow-ups still running, counted in Temporal's
  visibility store every ``OPEN_FOLLOWUPS_INTERVAL`` (each worker reports the same number).

Workflow-side counters use ``workflow.metric_meter()``, which records nothing while a
history replays, so a replayed step is not counted twice. Labels carry names from fixed
sets only: never an id, a number, an address or message text.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import MetricCounter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from aftercare.settings import Settings
from workflows.models import (
    PERMANENT_DELIVERY_FAILURE,
    AuditBatch,
    Channel,
    Delivery,
    OutboundMessage,
)

SEND_ACTIVITIES = {"send_sms", "send_email"}
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
OPEN_FOLLOWUPS_QUERY = 'WorkflowType="DepartureFollowUp" AND ExecutionStatus="Running"'
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
    """Counts messages in the send activities and escalation steps in the trail."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountMessages(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _CountTrailSteps


class _CountMessages(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if activity.info().activity_type not in SEND_ACTIVITIES:
            return await self.next.execute_activity(input)
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


class _CountTrailSteps(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_CountAuditedSteps(outbound))


class _CountAuditedSteps(WorkflowOutboundInterceptor):
    """Every step reaches the trail through the audit activity, so counting its batches
    counts each step once, as it is written."""

    _escalations: MetricCounter | None = None
    _fallbacks: MetricCounter | None = None

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle:
        if input.activity == AUDIT_ACTIVITY and input.args:
            self._count(input.args[0])
        return super().start_local_activity(input)

    def _count(self, batch: AuditBatch) -> None:
        for entry in batch.entries:
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


async def report_open_followups(client: Client, runtime: Runtime) -> None:
    """Keep ``aftercare_followups_open`` current until cancelled."""
    gauge = runtime.metric_meter.create_gauge(
        "aftercare_followups_open", "Follow-ups still running, with and without an escalation")
    while True:
        try:
            running = (await client.count_workflows(OPEN_FOLLOWUPS_QUERY)).count
            escalated = (await client.count_workflows(
                f"{OPEN_FOLLOWUPS_QUERY} AND AftercareAckCode IS NOT NULL")).count
        except (RPCError, RuntimeError):
            pass  # the SDK's own metrics show a lost connection; try again next round
        else:
            gauge.set(escalated, {"escalated": "yes"})
            gauge.set(running - escalated, {"escalated": "no"})
        await asyncio.sleep(OPEN_FOLLOWUPS_INTERVAL_SECONDS)
