"""The happy path, Aftercare against bare Temporal: throughput, worker CPU, history.

Each round runs N follow-ups with C in flight: check-in, the client answers OK, is told
"glad you're OK", is offered a reschedule and answers NO; the follow-up listens a second
and closes. Rounds alternate Aftercare, bare, Aftercare, bare on the one dev server, so
the spread between rounds shows the noise. Run by ``bench/run.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from bare import BareFollowUp
from history import HistoryCost, history_cost
from stack import BARE_QUEUE, CLINIC, Stack, cpu_seconds, cpu_seconds_of_processes
from temporalio.client import WorkflowHandle

from aftercare.followups.start import start_followup
from workflows.followup import DepartureFollowUp
from workflows.models import ClientContact, ClientReply, DepartureEvent, RiskLevel

# The happy path: check-in, OK, "glad you're OK", the reschedule offer, NO.
MESSAGES_BEFORE_OK, MESSAGES_BEFORE_NO = 1, 3
POLL_SECONDS = 0.005
FOLLOWUP_TIMEOUT_SECONDS = 120
PHONES = (f"+1555{n:07d}" for n in itertools.count(1))


class Arrivals:
    """Counts messages per recipient as they land in a sink's list, for clients to answer."""

    def __init__(self, messages: list[Any], recipient: Callable[[Any], str]) -> None:
        self.messages = messages
        self.recipient = recipient
        self.seen = 0
        self.counts: Counter[str] = Counter()

    async def wait_for(self, to: str, count: int) -> None:
        while True:
            for message in self.messages[self.seen:]:
                self.counts[self.recipient(message)] += 1
            self.seen = len(self.messages)
            if self.counts[to] >= count:
                return
            await asyncio.sleep(POLL_SECONDS)


def departure(phone: str, clinic: str = CLINIC, risk: str = "moderate",
              departed_at: datetime | None = None) -> DepartureEvent:
    return DepartureEvent(
        event_id=f"evt-{uuid.uuid4().hex[:8]}", clinic_id=clinic,
        session_id=f"s-{uuid.uuid4().hex[:12]}",
        departed_at=departed_at or datetime.now(UTC), risk_level=RiskLevel(risk),
        client=ClientContact(id=f"c-{phone[-7:]}", first_name="Dana", phone=phone,
                             preferred_channel="sms", timezone="America/New_York"),
        therapist_id="t-1",
    )


class Arm(Protocol):
    name: str
    pid: int

    async def start(self, phone: str) -> WorkflowHandle[Any, Any]: ...

    async def reply(self, handle: WorkflowHandle[Any, Any], text: str) -> None: ...


@dataclass
class AftercareArm:
    stack: Stack
    name: str = "aftercare"

    @property
    def pid(self) -> int:
        assert self.stack.worker is not None
        return self.stack.worker.pid

    async def start(self, phone: str) -> WorkflowHandle[Any, Any]:
        started = await start_followup(self.stack.client, self.stack.settings,
                                       self.stack.policies, departure(phone))
        return self.stack.client.get_workflow_handle(started.workflow_id)

    async def reply(self, handle: WorkflowHandle[Any, Any], text: str) -> None:
        await handle.signal(DepartureFollowUp.client_reply, ClientReply(text=text, channel="sms"))


@dataclass
class BareArm:
    stack: Stack
    name: str = "bare"

    @property
    def pid(self) -> int:
        assert self.stack.bare_worker is not None
        return self.stack.bare_worker.pid

    async def start(self, phone: str) -> WorkflowHandle[Any, Any]:
        return await self.stack.bare_client.start_workflow(
            BareFollowUp.run, phone, id=f"bare-{uuid.uuid4().hex[:12]}", task_queue=BARE_QUEUE)

    async def reply(self, handle: WorkflowHandle[Any, Any], text: str) -> None:
        await handle.signal(BareFollowUp.client_reply, text)


@dataclass
class Round:
    arm: str
    seconds: float
    worker_cpu_ms_each: float
    database_cpu_ms_each: float | None
    latencies: list[float]
    costs: list[HistoryCost]

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds


async def happy_path(arm: Arm, arrivals: Arrivals) -> tuple[float, WorkflowHandle[Any, Any]]:
    began = time.perf_counter()
    phone = next(PHONES)
    handle = await arm.start(phone)
    await arrivals.wait_for(phone, MESSAGES_BEFORE_OK)
    await arm.reply(handle, "OK")
    await arrivals.wait_for(phone, MESSAGES_BEFORE_NO)
    await arm.reply(handle, "NO")
    await handle.result()
    return time.perf_counter() - began, handle


async def run_round(arm: Arm, arrivals: Arrivals, followups: int, concurrency: int,
                    database_server: str | None = None) -> Round:
    """``database_server``: the name of a local database server's processes, whose CPU over
    the round is counted beside the worker's."""
    gate = asyncio.Semaphore(concurrency)

    def database_cpu() -> float:
        return cpu_seconds_of_processes(database_server) if database_server else 0.0

    async def one() -> tuple[float, WorkflowHandle[Any, Any]]:
        async with gate:
            return await asyncio.wait_for(happy_path(arm, arrivals), FOLLOWUP_TIMEOUT_SECONDS)

    began, cpu_before, database_before = time.perf_counter(), cpu_seconds(arm.pid), database_cpu()
    done = await asyncio.gather(*(one() for _ in range(followups)))
    seconds, cpu = time.perf_counter() - began, cpu_seconds(arm.pid) - cpu_before
    database = database_cpu() - database_before
    return Round(
        arm=arm.name, seconds=seconds, worker_cpu_ms_each=cpu * 1000 / followups,
        database_cpu_ms_each=database * 1000 / followups if database_server else None,
        latencies=[latency for latency, _ in done],
        costs=[history_cost((await handle.fetch_history()).events) for _, handle in done],
    )
