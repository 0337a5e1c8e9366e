"""Staff sign-in with a one-time code, and the clinic board it opens, in headless Chromium."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.fixtures.api import OTHER_CLINIC_KEY
from tests.fixtures.console import (
    OTHER_ON_CALL_PHONE,
    ConsoleStack,
    screenshot,
)
from tests.followup_harness import CLIENT_PHONE, LEAD_EMAIL, ON_CALL_PHONE


async def test_sign_in_with_a_texted_code_opens_the_board_of_the_own_clinic_only(
    console: ConsoleStack, page
) -> None:
    ours = (await console.send_departure(console.departure("moderate"))).json()["workflow_id"]
    theirs_event = console.departure("moderate")
    theirs_event["clinic_id"] = console.other_clinic
    theirs = (await console.send_departure(theirs_event, key=OTHER_CLINIC_KEY)).json()
    await console.until_step(ours, "checkin_sent")
    await console.until_visible(f"WorkflowId = '{ours}'")
    await console.until_visible(f"WorkflowId = '{theirs['workflow_id']}'")

    await page.goto(f"{console.url}/console")
    await page.wait_for_url("**/console/sign-in**")
    await page.get_by_label("Clinic").fill(console.clinic)
    await page.get_by_label("Staff id").fill("t-oncall")
    await screenshot(page, "sign-in")
    await page.get_by_role("button", name="Send me a code").click()
    await page.wait_for_url("**/console/sign-in/code**")
    code = await console.until(lambda: console.newest_code(ON_CALL_PHONE), "a code by SMS")
    await page.get_by_label("Sign-in code").fill(code)
    await screenshot(page, "sign-in-code")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{console.url}/console")

    cookie = next(c for c in await page.context.cookies() if c["name"] == "aftercare_staff")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert 11 * 3600 < cookie["expires"] - datetime.now(UTC).timestamp() <= 12 * 3600

    card = page.locator(".followup", has_text=ours)
    assert await card.is_visible()
    countdown = card.locator("time[data-countdown]")
    assert (await countdown.inner_text()).startswith("in ")
    assert await countdown.get_attribute("datetime")
    assert theirs["workflow_id"] not in await page.content()
    assert "Dana" not in await page.content() and CLIENT_PHONE not in await page.content()

    await page.get_by_label("Risk").select_option("high")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url("**risk=high**")
    assert not await page.locator(".followup", has_text=ours).count()
    await page.get_by_label("Risk").select_option("moderate")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url("**risk=moderate**")
    await page.locator(".followup", has_text=ours).get_by_role("link").click()
    await page.wait_for_url(f"**/console/followups/{ours}")
    # No escalation is open: the front desk sees the state, not the client's details.
    assert "Dana" not in await page.content() and "tel:" not in await page.content()


async def test_five_wrong_codes_lock_sign_in_even_for_the_right_code(console: ConsoleStack) -> None:
    async with console.browser_client() as http:
        await console.post_form(http, "/console/sign-in",
                                {"clinic": console.clinic, "staff_id": "t-oncall"})
        code = await console.until(lambda: console.newest_code(ON_CALL_PHONE), "a code")
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        for _ in range(5):
            answer = await console.post_form(http, "/console/sign-in/code", {"code": wrong})
            assert answer.status_code == 401 and "did not work" in answer.text
        answer = await console.post_form(http, "/console/sign-in/code", {"code": code})
        assert answer.status_code == 401
        assert (await http.get("/console")).url.path == "/console/sign-in"
    refused = [r for r in await console.store.access_records()
               if r.action == "console_code_wrong"]
    assert len(refused) == 6 and {r.actor for r in refused} == {console.actor("t-oncall")}


async def test_an_unknown_staff_id_looks_exactly_like_a_known_one(console: ConsoleStack) -> None:
    answers = []
    for clinic, staff_id in [(console.clinic, "t-lead"), (console.clinic, "nobody"),
                             ("no-such-clinic", "t-lead")]:
        async with console.browser_client() as http:
            requested = await console.post_form(http, "/console/sign-in",
                                                {"clinic": clinic, "staff_id": staff_id})
            tried = await console.post_form(http, "/console/sign-in/code", {"code": "000000"})
            answers.append((requested.status_code, tried.status_code,
                            tried.text.replace(tried.text.split('value="')[1].split('"')[0], "")))
    assert answers[0][:2] == (200, 401)
    assert answers[1] == answers[0] and answers[2] == answers[0]
    # The known one was mailed a code, by the channel the policy gives it.
    assert console.mail.sent_to(LEAD_EMAIL)
    assert not console.sms.sent_to(OTHER_ON_CALL_PHONE)


async def test_codes_are_rate_limited_per_staff_member(console: ConsoleStack) -> None:
    async with console.browser_client() as http:
        for _ in range(5):
            await console.post_form(http, "/console/sign-in",
                                    {"clinic": console.clinic, "staff_id": "t-oncall"})
    await console.until(lambda: len(console.sms.sent_to(ON_CALL_PHONE)) >= 3, "three codes")
    assert len(console.sms.sent_to(ON_CALL_PHONE)) == 3

