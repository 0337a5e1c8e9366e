"""The on-call's escalation page, in headless Chromium: from the link in the page text to
the client's number, Acknowledge and Resolve; and every way a link or a viewer is refused."""

from __future__ import annotations

import httpx

from aftercare.followups import actions
from aftercare.links.escalation import issue_escalation_token
from tests.fixtures.api import steps
from tests.fixtures.console import OTHER_ON_CALL_PHONE, ConsoleStack, screenshot
from tests.fixtures.sinks import LINK_SECRET
from tests.followup_harness import CLIENT_PHONE, CONTACT_PHONE, LEAD_EMAIL, ON_CALL_PHONE
from workflows.models import Resolve


def shows_no_contact(html: str) -> bool:
    return all(detail not in html for detail in ("Dana", CLIENT_PHONE, "Sam", CONTACT_PHONE,
                                                 "tel:"))


async def test_imminent_departure_texts_the_on_call_a_link_to_call_the_client_then_ack_and_resolve(
    console: ConsoleStack, page
) -> None:
    workflow_id = await console.imminent_followup()
    link = console.escalation_link()
    assert "Reply ACK" in console.sms.sent_to(ON_CALL_PHONE)[-1].body

    await page.goto(link)
    await screenshot(page, "escalation-link")
    await page.get_by_role("button", name="Open the escalation page").click()
    await page.wait_for_url(f"**/console/followups/{workflow_id}")
    assert await page.get_by_role("heading", name="Client: Dana").is_visible()
    call = page.locator(f'a[href="tel:{CLIENT_PHONE}"]')
    assert await call.is_visible()
    # Imminent risk is a safety reason and the contact consented: they are shown too.
    assert await page.locator(f'a[href="tel:{CONTACT_PHONE}"]').is_visible()
    assert "imminent risk" in await page.locator(".reason").inner_text()
    await screenshot(page, "escalation")

    records = [r for r in await console.store.access_records()
               if r.action == "console_view_contact"]
    assert [(r.actor, r.target) for r in records][:1] == [(console.actor("t-oncall"), workflow_id)]

    await page.get_by_role("button", name="Acknowledge").click()
    await page.wait_for_url("**?done=acknowledge")
    # The state the acknowledgement left, not a read that may still be a round trip behind.
    assert "acknowledged by t-oncall" in await page.locator(".facts").inner_text()
    assert (await page.locator(".phase").inner_text()
            == "acknowledged, waiting to be resolved")
    await page.get_by_label("Reached the client").check()
    await page.get_by_label("Note").fill("called back, safe at home")
    await page.get_by_role("button", name="Resolve", exact=True).click()
    await page.wait_for_url("**?done=resolve")
    await screenshot(page, "escalation-resolved")

    status = await console.status(workflow_id)
    assert status.escalation.acknowledged_by == "t-oncall"
    assert status.escalation.resolved_by == "t-oncall"
    assert status.escalation.outcome == "reached_client"
    by_step = {entry.step: entry for entry in status.trail}
    assert by_step["acknowledged"].recipient == "staff:t-oncall"
    assert by_step["resolved"].recipient == "staff:t-oncall"
    assert by_step["resolved"].outcome == "reached_client"
    await console.until(
        lambda: any("is resolved" in sms.body for sms in console.sms.sent_to(ON_CALL_PHONE)),
        "everyone paged is told it is resolved")
    # Once resolved the page keeps no contact detail.
    assert shows_no_contact(await page.content())

    for url in page.requested_urls:
        assert CLIENT_PHONE not in url and CONTACT_PHONE not in url
    for record in await console.store.access_records():
        assert CLIENT_PHONE not in f"{record.actor} {record.action} {record.target}"


async def test_used_expired_altered_and_closed_links_get_a_refusal_without_contact_details(
    console: ConsoleStack,
) -> None:
    workflow_id = await console.imminent_followup()
    link = console.escalation_link()
    path = link.removeprefix(console.url)
    code = (await console.status(workflow_id)).escalation.code

    async with console.browser_client() as staff:
        opened = await console.post_form(staff, path, {})
        assert opened.status_code == 200 and "Dana" in opened.text
    async with console.browser_client() as someone_else:
        used = await someone_else.get(path)
        assert used.status_code == 409 and "already used" in used.text
        assert shows_no_contact(used.text)
        reused = await someone_else.post(path, data={})
        assert reused.status_code == 403 and shows_no_contact(reused.text)

        def link_for(staff_id: str, code: str = code) -> str:
            return "/e/" + issue_escalation_token(LINK_SECRET, workflow_id, staff_id, code,
                                                  "99-staff_page")

        fresh = link_for("t-oncall")
        altered = link_for("t-backup").split(".")[0] + "." + fresh.split(".")[1]
        answer = await someone_else.get(altered)
        assert answer.status_code == 400 and shows_no_contact(answer.text)

        answer = await someone_else.get(link_for("t7-oncall"))
        assert answer.status_code == 403 and shows_no_contact(answer.text)

        answer = await someone_else.get(link_for("t-oncall", "000000"))
        assert answer.status_code == 410 and shows_no_contact(answer.text)

        # Unused, but its escalation has been resolved: the link has expired with it.
        await actions.resolve(console.client, workflow_id,
                              Resolve(staff_id="t-oncall", outcome="could_not_reach"))
        await console.until_stored(workflow_id, lambda view: view.escalation.resolved_by,
                                   "resolved")
        answer = await someone_else.get(fresh)
        assert answer.status_code == 410 and "expired" in answer.text
        assert shows_no_contact(answer.text)


async def test_another_clinics_staff_see_neither_the_followup_nor_its_contact_details(
    console: ConsoleStack, page
) -> None:
    workflow_id = await console.imminent_followup()
    async with console.browser_client() as other:
        signed_in = await console.signed_in(other, console.other_clinic, "t7-oncall",
                                            OTHER_ON_CALL_PHONE)
        assert signed_in.status_code == 200
        answer = await other.get(f"/console/followups/{workflow_id}")
        assert answer.status_code == 404 and shows_no_contact(answer.text)
        board = await other.get("/console")
        assert workflow_id not in board.text
    assert not [r for r in await console.store.access_records()
                if r.action == "console_view_contact"]

    await page.goto(f"{console.url}/console/followups/{workflow_id}")
    await page.wait_for_url("**/console/sign-in**")
    assert shows_no_contact(await page.content())


async def test_each_console_form_posted_without_its_csrf_token_is_refused(
    console: ConsoleStack,
) -> None:
    workflow_id = await console.imminent_followup()
    path = console.escalation_link().removeprefix(console.url)
    async with console.browser_client() as staff:
        await staff.get("/console/sign-in")  # holds the CSRF cookie, as a browser would
        for form, fields in [
            ("/console/sign-in", {"clinic": console.clinic, "staff_id": "t-oncall"}),
            ("/console/sign-in/code", {"code": "123456"}),
            (path, {}),
        ]:
            answer = await staff.post(form, data=fields)
            assert answer.status_code == 403, form
            assert "The form was refused" in answer.text
        assert console.newest_code() is None

        await console.post_form(staff, path, {})  # signed in from the link
        for action, fields in [("acknowledge", {}),
                               ("resolve", {"outcome": "reached_client"}),
                               ("cancel", {"reason": "came back"})]:
            answer = await staff.post(f"/console/followups/{workflow_id}/{action}", data=fields)
            assert answer.status_code == 403, action
            answer = await staff.post(f"/console/followups/{workflow_id}/{action}",
                                      data={**fields, "csrf_token": "forged"})
            assert answer.status_code == 403, action
        answer = await staff.post("/console/sign-out", data={})
        assert answer.status_code == 403

    status = await console.status(workflow_id)
    assert status.escalation.acknowledged_by is None
    assert "acknowledged" not in steps(status) and "cancelled" not in steps(status)


async def test_a_signed_in_lead_who_opens_a_page_link_still_has_the_board(
    console: ConsoleStack, page
) -> None:
    workflow_id = await console.imminent_followup()
    await console.until_visible(f"WorkflowId = '{workflow_id}'")
    await page.goto(f"{console.url}/console/sign-in")
    await page.get_by_label("Clinic").fill(console.clinic)
    await page.get_by_label("Staff id").fill("t-lead")
    await page.get_by_role("button", name="Send me a code").click()
    await page.wait_for_url("**/console/sign-in/code**")
    code = await console.until(lambda: console.newest_mailed_code(LEAD_EMAIL), "a code by email")
    await page.get_by_label("Sign-in code").fill(code)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{console.url}/console")

    # The chain reaches the lead last; the link a page to the lead would carry.
    await page.goto(console.url + await link_for(console, workflow_id, "t-lead"))
    await page.get_by_role("button", name="Open the escalation page").click()
    await page.wait_for_url(f"**/console/followups/{workflow_id}")
    assert await page.get_by_role("heading", name="Client: Dana").is_visible()
    await page.get_by_role("link", name="Clinic board").click()
    await page.wait_for_url(f"{console.url}/console")
    assert await page.locator(".followup", has_text=workflow_id).is_visible()


async def test_a_second_link_adds_its_followup_to_a_session_opened_from_a_link(
    console: ConsoleStack,
) -> None:
    first = await console.imminent_followup()
    second = await console.imminent_followup()
    async with console.browser_client() as staff:
        opened = await console.post_form(staff, await link_for(console, first, "t-oncall"), {})
        assert opened.url.path == f"/console/followups/{first}"
        opened = await console.post_form(staff, await link_for(console, second, "t-oncall"), {})
        assert opened.url.path == f"/console/followups/{second}"
        assert (await staff.get(f"/console/followups/{first}")).status_code == 200
        # Still no board: links open their follow-ups, not the clinic's.
        assert (await staff.get("/console")).url.path == f"/console/followups/{second}"


async def test_a_page_refreshing_itself_is_one_contact_view_in_the_access_log(
    console: ConsoleStack,
) -> None:
    workflow_id = await console.imminent_followup()

    async def contact_views() -> list[str]:
        return [r.actor for r in await console.store.access_records()
                if r.action == "console_view_contact"]

    async with console.browser_client() as on_call:
        link = await link_for(console, workflow_id, "t-oncall")
        opened = await console.post_form(on_call, link, {})
        assert "Dana" in opened.text
        for _ in range(4):  # what the page's 20 s self-refresh asks for
            assert "Dana" in (await on_call.get(f"/console/followups/{workflow_id}")).text
    assert await contact_views() == [console.actor("t-oncall")]

    async with console.browser_client() as lead:
        await console.post_form(lead, "/console/sign-in",
                                {"clinic": console.clinic, "staff_id": "t-lead"})
        code = await console.until(lambda: console.newest_mailed_code(LEAD_EMAIL), "a code")
        await console.post_form(lead, "/console/sign-in/code", {"code": code})
        assert "Dana" in (await lead.get(f"/console/followups/{workflow_id}")).text
    assert await contact_views() == [console.actor("t-oncall"), console.actor("t-lead")]


async def link_for(console: ConsoleStack, workflow_id: str, staff_id: str) -> str:
    """The path of the escalation link a page to ``staff_id`` would carry."""
    code = (await console.status(workflow_id)).escalation.code
    return "/e/" + issue_escalation_token(LINK_SECRET, workflow_id, staff_id, code,
                                          "99-staff_page")


async def test_signing_in_with_a_code_ends_the_link_session_the_browser_had(
    console: ConsoleStack,
) -> None:
    workflow_id = await console.imminent_followup()
    async with console.browser_client() as staff:
        await console.post_form(staff, await link_for(console, workflow_id, "t-oncall"), {})
        from_link = staff.cookies["aftercare_staff"]
        board = await console.signed_in(staff, console.clinic, "t-oncall", ON_CALL_PHONE)
        assert board.url.path == "/console"
    async with httpx.AsyncClient(base_url=console.url, timeout=30,
                                 cookies={"aftercare_staff": from_link}) as replay:
        answer = await replay.get(f"/console/followups/{workflow_id}")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/sign-in")
