"""The trail view for clinic leads and auditors, in headless Chromium: the timeline, its
chain verification, exports in three formats, each look in the access log."""

from __future__ import annotations

import csv
import io
import json

from aftercare.followups import actions
from tests.fixtures.console import ConsoleStack, screenshot
from tests.followup_harness import CLIENT_PHONE, LEAD_EMAIL, ON_CALL_PHONE
from workflows.models import Acknowledge, Cancel, Resolve


def mailed_code(console: ConsoleStack) -> str | None:
    for mail in reversed(console.mail.sent_to(LEAD_EMAIL)):
        if "sign-in code is" in mail.text:
            return mail.text.split("sign-in code is ")[1][:6]
    return None


async def test_clinic_lead_reads_the_verified_trail_and_exports_it_each_use_logged(
    console: ConsoleStack, page
) -> None:
    closed = await console.imminent_followup()
    await actions.acknowledge(console.client, closed, Acknowledge(staff_id="t-oncall"))
    await actions.resolve(console.client, closed, Resolve(staff_id="t-oncall",
                                                          outcome="reached_client"))
    # A resolved follow-up goes on to offer a slot and listen: staff close it here.
    await actions.cancel(console.client, closed, Cancel(staff_id="t-oncall",
                                                        reason="rebooked by phone"))

    async def closed_visibly() -> bool:
        query = f"WorkflowId = '{closed}' AND ExecutionStatus != 'Running'"
        return (await console.client.count_workflows(query)).count > 0

    await console.until(closed_visibly, "the follow-up closes")
    open_escalation = await console.imminent_followup()
    waiting = (await console.send_departure(console.departure("high"))).json()["workflow_id"]
    await console.until_step(waiting, "checkin_sent")
    await console.until_visible(f"WorkflowId = '{waiting}'")

    await page.goto(f"{console.url}/console/sign-in?clinic={console.clinic}")
    await page.get_by_label("Staff id").fill("t-lead")
    await page.get_by_role("button", name="Send me a code").click()
    await page.wait_for_url("**/console/sign-in/code**")
    code = await console.until(lambda: mailed_code(console), "a code by email")
    await page.get_by_label("Sign-in code").fill(code)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{console.url}/console")
    cards = page.locator(".followup")
    assert await cards.first.locator(".title").inner_text() == open_escalation
    assert await page.locator("table", has_text=closed).is_visible()
    closed_table = await page.locator("table").inner_text()
    assert "cancelled" in closed_table
    assert "rebooked by phone" not in closed_table, "staff free text stays sealed"
    await screenshot(page, "board")

    await page.goto(f"{console.url}/console/followups/{closed}")
    await page.get_by_role("link", name="Audit trail").click()
    await page.wait_for_url(f"**/console/followups/{closed}/trail")
    assert "Chain verified" in await page.get_by_role("status").inner_text()
    rows = page.locator("tbody tr")
    assert await rows.count() > 5
    text = await page.locator("table").inner_text()
    assert "acknowledged" in text and "staff:t-oncall" in text and "closed" in text
    assert CLIENT_PHONE not in await page.content()
    await screenshot(page, "trail")

    exported = {}
    for name in ("JSONL", "CSV", "FHIR"):
        async with page.expect_download() as download:
            await page.get_by_role("link", name=name).click()
        exported[name] = (await (await download.value).path()).read_text()
    lines = [json.loads(line) for line in exported["JSONL"].splitlines()]
    assert lines[0]["workflow_id"] == closed and lines[-1]["step"] == "closed"
    assert len(list(csv.DictReader(io.StringIO(exported["CSV"])))) == len(lines)
    assert len(json.loads(exported["FHIR"])["entry"]) == len(lines)

    logged = [(r.actor, r.action, r.target) for r in await console.store.access_records()
              if r.actor == console.actor("t-lead")]
    assert (console.actor("t-lead"), "console_view_trail", closed) in logged
    for fmt in ("jsonl", "csv", "fhir"):
        assert (console.actor("t-lead"), f"console_export_{fmt}", closed) in logged


async def test_on_call_staff_without_the_role_are_refused_the_trail(console: ConsoleStack) -> None:
    workflow_id = await console.imminent_followup()
    async with console.browser_client() as http:
        await console.signed_in(http, console.clinic, "t-oncall", ON_CALL_PHONE)
        page = await http.get(f"/console/followups/{workflow_id}")
        assert "Audit trail" not in page.text
        for path in ("trail", "trail.jsonl"):
            answer = await http.get(f"/console/followups/{workflow_id}/{path}")
            assert answer.status_code == 403 and CLIENT_PHONE not in answer.text
