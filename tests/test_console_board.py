"""The clinic board and the escalation page in headless Chromium, at phone width: more than
200 open follow-ups, every one reachable a page at a time, most urgent first; and a page
that never scrolls sideways."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from aftercare.followups import actions
from aftercare.trail.store import AuditStore, StoredView
from tests.fixtures.console import ConsoleStack, paged
from workflows.models import (
    Acknowledge,
    Channel,
    EscalationState,
    FollowUpView,
    PageState,
    Phase,
    RiskLevel,
    followup_workflow_id,
)

NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= 390"


def taken_escalation(clinic: str, index: int, now: datetime) -> FollowUpView:
    """A follow-up whose escalation a colleague has acknowledged, as its workflow stores it."""
    code = f"{100000 + index}"
    return FollowUpView(
        workflow_id=followup_workflow_id(clinic, f"s-seeded-{index:04d}"), clinic_id=clinic,
        risk_level=list(RiskLevel)[index % len(RiskLevel)],
        departed_at=now - timedelta(minutes=index), phase=Phase.AWAITING_RESOLUTION,
        channel=Channel.SMS, revision=1, updated_at=now,
        escalation=EscalationState(
            reason="no reply", code=code, acknowledged_by="t-backup", acknowledged_at=now,
            paged=[PageState(level=0, target="t-oncall", channel=Channel.SMS, code=code)]))


async def seed_open_followups(console: ConsoleStack, count: int) -> list[str]:
    """Views stored as the audit activity stores them, without running ``count`` workflows:
    the board reads nothing else."""
    settings = console.settings
    store = await AuditStore.open(settings.audit_database_url, settings.audit_signing_keys)
    now = datetime.now(UTC)
    try:
        seeded = [taken_escalation(console.clinic, i, now) for i in range(count)]
        for view in seeded:
            await store.append([], StoredView(view=view))
    finally:
        await store.close()
    return [view.workflow_id for view in seeded]


async def test_a_board_of_more_than_200_open_followups_lists_every_one_a_page_at_a_time(
    console: ConsoleStack, page
) -> None:
    untaken = await console.imminent_followup()
    await console.until_stored(untaken, paged, "the on-call is paged")
    seeded = await seed_open_followups(console, 230)

    await console.sign_in_page(page)
    await page.goto(f"{console.url}/console")
    # The one escalation nobody has taken is on top of the first page.
    assert await page.locator(".followup .title").first.inner_text() == untaken
    first = page.locator(".followup").first
    assert await first.locator(".reason").inner_text() == "imminent risk"
    assert await first.locator(".paged").inner_text() == "t-oncall"
    assert await page.evaluate(NO_SIDEWAYS_SCROLL)

    listed: list[str] = []
    for number, left in [(1, 131), (2, 31), (3, 0)]:
        assert await page.get_by_text(f"Page {number} of 3").is_visible()
        titles = await page.locator(".followup .title").all_inner_texts()
        listed += titles
        if not left:
            assert len(titles) == 31
            assert not await page.get_by_role("link", name=re.compile(r"\d+ more")).count()
            break
        assert len(titles) == 100
        await page.get_by_role("link", name=f"{left} more").click()
        await page.wait_for_url(f"**page={number + 1}**")
    assert sorted(listed) == sorted([untaken, *seeded])


async def test_the_escalation_page_at_390_px_shows_the_phase_in_words_without_sideways_scroll(
    console: ConsoleStack, page
) -> None:
    workflow_id = await console.imminent_followup()
    await actions.acknowledge(console.client, workflow_id, Acknowledge(staff_id="t-oncall"))
    await console.until_stored(workflow_id, lambda view: view.phase is Phase.AWAITING_RESOLUTION,
                               "acknowledged")

    await console.sign_in_page(page)
    await page.goto(f"{console.url}/console/followups/{workflow_id}")
    assert (await page.locator(".phase").inner_text()
            == "acknowledged, waiting to be resolved")
    assert "awaiting_resolution" not in await page.locator("main").inner_text()
    assert await page.evaluate(NO_SIDEWAYS_SCROLL)

    await page.goto(f"{console.url}/console")
    assert await page.evaluate(NO_SIDEWAYS_SCROLL)
