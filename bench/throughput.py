"""Aftercare's happy-path throughput as a ratio to bare Temporal, measured side by side.

    .venv/bin/python bench/throughput.py [--followups N] [--concurrency C]

Starts its own Temporal dev server (in memory), loopback sinks and two real workers, then
runs N follow-ups of each arm, interleaved Aftercare, bare, Aftercare, bare. Every client
answers OK once checked in and NO to the reschedule offer. Only the ratios of one run mean
anything: the machine is shared, so absolute timings vary from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bare import BareFollowUp, NoopSender
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from aftercare.followups.start import start_followup
from aftercare.policies import PolicyBook
from aftercare.settings import Settings
from aftercare.temporal.connection import connect
from aftercare.temporal.search_attributes import dev_server_flags
from devsinks.booking import BookingSink
from devsinks.mailbox import Mailbox
from devsinks.sms_outbox import SmsOutbox
from worker import running_worker
from workflows.followup import DepartureFollowUp
from workflows.models import ClientContact, ClientReply, DepartureEvent

CLINIC = "bench"
BOOKING_SECRET = "bench-booking-secret"
ZERO = {"low": "PT0S", "moderate": "PT0S", "high": "PT0S"}
# The happy path: check-in, OK, "glad you're OK", the reschedule offer, NO.
MESSAGES_BEFORE_OK, MESSAGES_BEFORE_NO = 1, 3
POLL_SECONDS = 0.005
FOLLOWUP_TIMEOUT_SECONDS = 60
ROUNDS = 2


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


class Arm(Protocol):
    name: str
    arrivals: Arrivals

    def worker(self) -> AbstractAsyncContextManager[Any]: ...

    async def start(self, phone: str) -> WorkflowHandle[Any, Any]: ...

    async def reply(self, handle: WorkflowHandle[Any, Any], text: str) -> None: ...


@dataclass
class AftercareArm:
    client: Client
    settings: Settings
    policies: PolicyBook
    arrivals: Arrivals
    name: str = "aftercare"

    def worker(self) -> AbstractAsyncContextManager[Any]:
        return running_worker(self.client, self.settings)

    async def start(self, phone: str) -> WorkflowHandle[Any, Any]:
        started = await start_followup(self.client, self.settings, self.policies,
                                       departure(phone))
        return self.client.get_workflow_handle(started.workflow_id)

    async def reply(self, handle: WorkflowHandle[Any, Any], text: str) -> None:
        await handle.signal(DepartureFollowUp.client_reply, ClientReply(text=text, channel="sms"))


@dataclass
class BareArm:
    client: Client
    sender: NoopSender
    arrivals: Arrivals
    name: str = "bare"
    task_queue: str = "bench-bare"

    def worker(self) -> AbstractAsyncContextManager[Any]:
        return Worker(self.client, task_queue=self.task_queue, workflows=[BareFollowUp],
                      activities=[self.sender.send_message])

    async def start(self, phone: str) -> WorkflowHandle[Any, Any]:
        return await self.client.start_workflow(BareFollowUp.run, phone,
                                                id=f"bare-{uuid.uuid4().hex[:12]}",
                                                task_queue=self.task_queue)

    async def reply(self, handle: WorkflowHandle[Any, Any], text: str) -> None:
        await handle.signal(BareFollowUp.client_reply, text)


@dataclass
class Round:
    arm: str
    seconds: float
    cpu_ms_each: float
    latencies: list[float]
    events: list[int]
    history_bytes: list[int]
    markers: list[int]
    peak_rss_mb: float

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds


PHONES = (f"+1555{n:07d}" for n in itertools.count(1))


def departure(phone: str) -> DepartureEvent:
    return DepartureEvent(
        event_id=f"evt-{uuid.uuid4().hex[:8]}", clinic_id=CLINIC,
        session_id=f"s-{uuid.uuid4().hex[:12]}", departed_at=datetime.now(UTC),
        risk_level="moderate",
        client=ClientContact(id=f"c-{phone[-7:]}", first_name="Dana", phone=phone,
                             preferred_channel="sms", timezone="America/New_York"),
        therapist_id="t-1",
    )


def bench_policies(booking: BookingSink) -> PolicyBook:
    """Check in at once, no quiet hours; the reschedule offer is made and declined, and the
    follow-up listens a second for late texts before it closes."""
    return PolicyBook({"default": {}, CLINIC: {
        "clinic_name": "Bench Clinic",
        "checkin_delay": ZERO,
        "quiet_hours": None,
        "listen_after_close": "PT1S",
        "reschedule": {"slots": [{"after": "P1D", "at": "10:00"}], "offer_window": "PT1H",
                       "webhook_url": booking.webhook_url(CLINIC),
                       "webhook_private_network": True},
    }})


async def happy_path(arm: Arm) -> tuple[float, WorkflowHandle[Any, Any]]:
    began = time.perf_counter()
    phone = next(PHONES)
    handle = await arm.start(phone)
    await arm.arrivals.wait_for(phone, MESSAGES_BEFORE_OK)
    await arm.reply(handle, "OK")
    await arm.arrivals.wait_for(phone, MESSAGES_BEFORE_NO)
    await arm.reply(handle, "NO")
    await handle.result()
    return time.perf_counter() - began, handle


async def run_round(arm: Arm, followups: int, concurrency: int) -> Round:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> tuple[float, WorkflowHandle[Any, Any]]:
        async with gate:
            return await asyncio.wait_for(happy_path(arm), FOLLOWUP_TIMEOUT_SECONDS)

    began, cpu_before = time.perf_counter(), cpu_seconds()
    done = await asyncio.gather(*(one() for _ in range(followups)))
    seconds, cpu = time.perf_counter() - began, cpu_seconds() - cpu_before
    histories = [(await handle.fetch_history()).events for _, handle in done]
    return Round(
        arm=arm.name, seconds=seconds, cpu_ms_each=cpu * 1000 / followups,
        latencies=[latency for latency, _ in done],
        events=[len(events) for events in histories],
        history_bytes=[sum(event.ByteSize() for event in events) for events in histories],
        markers=[sum(event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
                     for event in events) for events in histories],
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def cpu_seconds() -> float:
    """This process's CPU time: workers, clients and sinks, not the Temporal server."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def print_table(rounds: list[Round]) -> None:
    bare_rate = {i: r.per_second for i, r in enumerate(rounds) if r.arm == "bare"}
    header = (f"{'arm':<10}{'wf/s':>8}{'vs bare':>9}{'events':>8}{'hist KB':>9}"
              f"{'LA mark':>9}{'p50 ms':>8}{'p95 ms':>8}{'CPU ms/wf':>11}{'peak RSS MB':>13}")
    print(header)
    print("-" * len(header))
    for i, r in enumerate(rounds):
        # Each Aftercare round is compared with the bare round run right after it.
        ratio = f"{r.per_second / bare_rate[i + 1]:.2f}" if r.arm != "bare" else ""
        print(f"{r.arm:<10}{r.per_second:>8.1f}{ratio:>9}{statistics.mean(r.events):>8.0f}"
              f"{statistics.mean(r.history_bytes) / 1024:>9.1f}"
              f"{statistics.mean(r.markers):>9.0f}"
              f"{percentile(r.latencies, 0.5) * 1000:>8.0f}"
              f"{percentile(r.latencies, 0.95) * 1000:>8.0f}{r.cpu_ms_each:>11.0f}"
              f"{r.peak_rss_mb:>13.0f}")
    totals = {arm: sum(len(r.latencies) for r in rounds if r.arm == arm)
              / sum(r.seconds for r in rounds if r.arm == arm) for arm in ("aftercare", "bare")}
    print(f"\noverall: aftercare {totals['aftercare']:.1f} wf/s, bare {totals['bare']:.1f} wf/s,"
          f" ratio {totals['aftercare'] / totals['bare']:.2f}")


def temporal_cli() -> str:
    return str(Path(sys.executable).with_name("temporal"))


@asynccontextmanager
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        ip="127.0.0.1",
        data_converter=pydantic_data_converter,
        dev_server_extra_args=dev_server_flags(),
        dev_server_log_level="error",
    )
    async with env:
        yield env


def aftercare_settings(env: WorkflowEnvironment, folder: str, outbox: SmsOutbox,
                       mailbox: Mailbox) -> Settings:
    """Everything named explicitly, so no AFTERCARE_* variable points the bench elsewhere."""
    return Settings(
        temporal_address=env.client.service_client.config.target_host,
        temporal_namespace="default",
        task_queue="bench-aftercare",
        audit_database_url=f"sqlite+aiosqlite:///{folder}/audit.db",
        encryption_keys={"bench": base64.b64encode(os.urandom(32)).decode()},
        twilio_account_sid=None, twilio_auth_token=None, twilio_from_number=None,
        twilio_messaging_service_sid=None, twilio_api_base_url=outbox.url,
        twilio_status_callback=False,
        smtp_host=mailbox.host, smtp_port=mailbox.port, smtp_username=None,
        smtp_password=None, smtp_starttls=False,
        public_base_url="http://127.0.0.1",
        link_secret="bench-link-secret",
        lookup_secret="bench-lookup-secret",
        booking_webhook_secrets={CLINIC: BOOKING_SECRET},
        audit_signing_keys={"bench": "bench-audit-signing-key"},
    )


async def main(followups: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        # The sandbox re-imports the workflow's module for every new workflow. Without cached
        # bytecode (PYTHONDONTWRITEBYTECODE) it recompiles the source each time, which a
        # deployment does not: cache it here, outside the source tree.
        sys.dont_write_bytecode, sys.pycache_prefix = False, folder
        async with (
            dev_server() as env,
            SmsOutbox() as outbox,
            Mailbox() as mailbox,
            BookingSink({CLINIC: BOOKING_SECRET}) as booking,
        ):
            settings = aftercare_settings(env, folder, outbox, mailbox)
            sender = NoopSender()
            arms: list[Arm] = [
                AftercareArm(await connect(settings), settings, bench_policies(booking),
                             Arrivals(outbox.messages, lambda sms: sms.to)),
                BareArm(env.client, sender, Arrivals(sender.sent, lambda to: to)),
            ]
            rounds = []
            for arm in arms * ROUNDS:
                async with arm.worker():
                    await happy_path(arm)  # warm-up: imports and caches, not measured
                    rounds.append(await run_round(arm, followups, concurrency))
                print(f"  {arm.name}: {rounds[-1].per_second:.1f} wf/s", file=sys.stderr,
                      flush=True)
    print(f"\n{followups} follow-ups per round, concurrency {concurrency}\n")
    print_table(rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--followups", type=int, default=40, help="per round and arm")
    parser.add_argument("--concurrency", type=int, default=10, help="follow-ups in flight")
    args = parser.parse_args()
    asyncio.run(main(args.followups, args.concurrency))
