"""Faults with real parts: an audit store another process holds locked, while a real worker
runs a follow-up. Whatever fails delays only its own work; the person is reached on time."""

from __future__ import annotations

import asyncio
import sqlite3

from sqlalchemy.engine import make_url

from tests.followup_harness import ON_CALL_PHONE, FollowUpHarness, make_event
from workflows.followup import DepartureFollowUp
from workflows.models import Acknowledge, Resolve
from workflows.trail import first_break

SECONDS_POLICY = {
    "checkin_delay": {"low": "PT30M", "moderate": "PT10M", "high": "PT3S"},
    "response_window": {"low": "PT2H", "moderate": "PT1H", "high": "PT8S", "imminent": "PT30M"},
    "reminders": [],
}


async def test_a_locked_audit_store_delays_the_trail_never_a_page_or_an_ack(
    followups: FollowUpHarness,
):
    database = make_url(followups.settings.audit_database_url).database
    handle = await followups.start(make_event("high"), **SECONDS_POLICY)
    # A backup or an auditor's long transaction holds the audit store's write lock.
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        status = await followups.until(
            handle, lambda s: "staff_page_sent" in [e.step for e in s.trail],
            "the no-reply page, while the store is locked", timeout=60)
        assert "no reply" in followups.texts_to(ON_CALL_PHONE)[0]
        assert status.audit_backlog > 0, "the status shows the trail is behind"
        acked = await asyncio.wait_for(handle.execute_update(
            DepartureFollowUp.acknowledge, Acknowledge(staff_id="t-oncall")), timeout=15)
        assert acked.message == "acknowledged by t-oncall"
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    outcome = await followups.finish(handle)
    stored = await followups.store.entries(handle.id)
    assert first_break(stored) is None
    assert [e.hash for e in stored] == [e.hash for e in outcome.trail], "caught up, whole"
    assert len(followups.texts_to(ON_CALL_PHONE)) == len(set(followups.texts_to(ON_CALL_PHONE)))
