"""How long the clinic board takes to load with 1,000 open follow-ups, with workers up, with
none and with Temporal itself unreachable: the board reads the views in the audit store.
Run by ``bench/run.py``.

Seeds the views as the audit activity stores them (no workflow runs for them) and loads
the first page of the board through the API app in this process (no network between
them), after a few warm-up loads.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import Response
from stack import CLINIC, ON_CALL

from aftercare.policies import PolicyBook
from aftercare.settings import Settings
from aftercare.temporal.connection import connect
from aftercare.trail.console_access import ConsoleSessions
from aftercare.trail.store import AuditStore, StoredView
from api.app import create_app
from api.console.security import Signer, new_session, set_session_cookie
from workflows.models import (
    Channel,
    EscalationState,
    FollowUpView,
    PageState,
    Phase,
    RiskLevel,
    followup_workflow_id,
)

STAFF = ON_CALL
NOWHERE = "127.0.0.1:9"  # the discard port: nothing answers there
WARM_UP_LOADS = 3


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


async def session_cookie(settings: Settings) -> dict[str, str]:
    """The cookie a staff member of the bench clinic holds once signed in: a session
    started in the audit store, as sign-in starts it."""
    now = datetime.now(UTC)
    session = new_session(STAFF, CLINIC, now)
    store = await AuditStore.open(settings.audit_database_url, settings.audit_signing_keys)
    try:
        await ConsoleSessions(store).start(session.session_id, session.actor, now,
                                           session.expires_at)
    finally:
        await store.close()
    response = Response()
    set_session_cookie(Signer(settings.link_secret or ""), settings, response, session, now)
    name, _, value = response.headers["set-cookie"].split(";")[0].partition("=")
    return {name: value}


async def board_loads(settings: Settings, loads: int, with_temporal: bool) -> list[float]:
    client = await connect(settings) if with_temporal else None
    policies = PolicyBook({"default": {}, CLINIC: {
        "clinic_name": "Bench Clinic",
        "staff": {STAFF: {"name": "On call", "phone": "+15555550100", "channel": "sms"}},
    }})
    app = create_app(settings, client, policies)
    cookies = await session_cookie(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://bench", cookies=cookies) as http:
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
