"""How long the clinic board takes to load with 1,000 open follow-ups, with workers up and
with none (and with Temporal itself down): the board reads the views in the audit store.

    .venv/bin/python bench/board.py [--followups 1000] [--loads 30]

Seeds the views as the audit activity stores them (no workflow runs for them), starts its
own Temporal dev server (in memory) and a real worker for the first arm, and loads the first
page of the board through the API app in this process (no network between them). Prints
p50 and p95 of each arm; the machine is shared, so compare the arms, not the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import Response
from throughput import CLINIC, aftercare_settings, dev_server

from aftercare.policies import PolicyBook
from aftercare.settings import Settings
from aftercare.temporal.connection import connect
from aftercare.trail.store import AuditStore, StoredView
from api.app import create_app
from api.console.security import SESSION_TTL, Signer, StaffSession, start_session
from devsinks.mailbox import Mailbox
from devsinks.sms_outbox import SmsOutbox
from worker import running_worker
from workflows.models import (
    Channel,
    EscalationState,
    FollowUpView,
    PageState,
    Phase,
    RiskLevel,
    followup_workflow_id,
)

STAFF = "bench-oncall"
WARM_UP_LOADS = 3
NOWHERE = "127.0.0.1:9"  # the discard port: nothing answers there
Around = Callable[[], AbstractAsyncContextManager[object]]  # what runs while an arm loads


def bench_view(index: int, now: datetime, phase: Phase = Phase.AWAITING_REPLY) -> FollowUpView:
    """One follow-up in three escalates; of those, every other one is acknowledged."""
    code = f"{100000 + index}"
    escalation = index % 3 == 0 and EscalationState(
        reason="no reply", code=code,
        acknowledged_by=STAFF if index % 2 else None,
        paged=[PageState(level=0, target=STAFF, channel=Channel.SMS, code=code)])
    return FollowUpView(
        workflow_id=followup_workflow_id(CLINIC, f"s-bench-{index:05d}"), clinic_id=CLINIC,
        risk_level=list(RiskLevel)[index % len(RiskLevel)], departed_at=now - timedelta(
            minutes=index), phase=Phase.ESCALATING if escalation else phase,
        next_deadline=now + timedelta(minutes=index % 90), channel=Channel.SMS,
        escalation=escalation or None, revision=1, updated_at=now)


async def seed(settings: Settings, followups: int) -> None:
    store = await AuditStore.open(settings.audit_database_url, settings.audit_signing_keys)
    now = datetime.now(UTC)
    try:
        for index in range(followups):
            await store.append([], StoredView(view=bench_view(index, now)))
        for index in range(followups, followups + followups // 10):
            await store.append([], StoredView(view=bench_view(index, now, Phase.CLOSED)))
    finally:
        await store.close()


def session_cookie(settings: Settings) -> dict[str, str]:
    """The cookie a staff member of the bench clinic holds once signed in."""
    now = datetime.now(UTC)
    response = Response()
    start_session(Signer(settings.link_secret or ""), settings, response,
                  StaffSession(STAFF, CLINIC, now + SESSION_TTL), now)
    name, _, value = response.headers["set-cookie"].split(";")[0].partition("=")
    return {name: value}


async def board_loads(settings: Settings, loads: int, with_temporal: bool) -> list[float]:
    client = await connect(settings) if with_temporal else None
    policies = PolicyBook({"default": {}, CLINIC: {
        "clinic_name": "Bench Clinic",
        "staff": {STAFF: {"name": "On call", "phone": "+15555550100", "channel": "sms"}},
    }})
    app = create_app(settings, client, policies)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://bench", cookies=session_cookie(settings)) as http:
        timings = []
        for load in range(WARM_UP_LOADS + loads):
            began = time.perf_counter()
            answer = await http.get("/console")
            elapsed = time.perf_counter() - began
            if answer.status_code != 200 or answer.text.count('class="card followup') != 100:
                raise SystemExit(f"the board did not load: {answer.status_code}")
            if load >= WARM_UP_LOADS:
                timings.append(elapsed)
    await app.state.intake.close()
    return timings


def percentile(timings: list[float], share: float) -> float:
    return statistics.quantiles(timings, n=100)[int(share * 100) - 1] * 1000


async def main(followups: int, loads: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with dev_server() as env, SmsOutbox() as outbox, Mailbox() as mailbox:
            settings = aftercare_settings(env, folder, outbox, mailbox).model_copy(update={
                "api_keys": {CLINIC: "bench-api-key"}, "twilio_auth_token": "bench-token",
                "metrics_token": "bench-metrics-token"})
            await seed(settings, followups)
            worker_client = await connect(settings)

            def worker_up() -> AbstractAsyncContextManager[object]:
                return running_worker(worker_client, settings)

            arms: list[tuple[str, Settings, bool, Around]] = [
                ("workers up", settings, True, worker_up),
                ("no worker", settings, True, nullcontext),
                ("no worker, no Temporal",
                 settings.model_copy(update={"temporal_address": NOWHERE}), False, nullcontext),
            ]
            print(f"board, first page of {followups} open follow-ups "
                  f"({followups // 10} closed), {loads} loads each")
            print(f"{'arm':<24}{'p50 ms':>9}{'p95 ms':>9}")
            for name, arm_settings, with_temporal, around in arms:
                async with around():
                    timings = await board_loads(arm_settings, loads, with_temporal)
                print(f"{name:<24}{percentile(timings, 0.5):>9.1f}"
                      f"{percentile(timings, 0.95):>9.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--followups", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=30)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.followups, arguments.loads))
