"""Staff sign-in with a one-time code, and the clinic board it opens, in headless Chromium."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import httpx

from api.app import _HideLinkTokens
from api.console.signin import CODE_SENT, CODE_WRONG, CODES_PER_WINDOW, TRIES_PER_CODE
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


async def test_three_wrong_codes_end_that_code_even_for_the_right_one(
    console: ConsoleStack,
) -> None:
    async with console.browser_client() as http:
        await console.post_form(http, "/console/sign-in",
                                {"clinic": console.clinic, "staff_id": "t-oncall"})
        code = await console.until(lambda: console.newest_code(ON_CALL_PHONE), "a code")
        for _ in range(TRIES_PER_CODE):
            answer = await console.post_form(http, "/console/sign-in/code",
                                             {"code": wrong_for(code)})
            assert answer.status_code == 401 and "did not work" in answer.text
        answer = await console.post_form(http, "/console/sign-in/code", {"code": code})
        assert answer.status_code == 401
        assert (await http.get("/console")).url.path == "/console/sign-in"
    refused = [r for r in await console.store.access_records() if r.action == CODE_WRONG]
    # The try after the code died was refused without being counted or looked at.
    assert len(refused) == TRIES_PER_CODE
    assert {r.actor for r in refused} == {console.actor("t-oncall")}


async def test_a_strangers_wrong_codes_leave_the_real_persons_code_working(
    console: ConsoleStack,
) -> None:
    async with console.browser_client() as real, console.browser_client() as stranger:
        await console.post_form(real, "/console/sign-in",
                                {"clinic": console.clinic, "staff_id": "t-oncall"})
        code = await console.until(lambda: console.newest_code(ON_CALL_PHONE), "a code")
        await console.post_form(stranger, "/console/sign-in",
                                {"clinic": console.clinic, "staff_id": "t-oncall"})
        await codes_sent(console, 2)
        for guess in (code, wrong_for(code), wrong_for(wrong_for(code)), code):
            answer = await console.post_form(stranger, "/console/sign-in/code", {"code": guess})
            assert answer.status_code == 401
        board = await console.post_form(real, "/console/sign-in/code", {"code": code})
        assert board.status_code == 200 and board.url.path == "/console"


async def test_a_stranger_who_used_up_the_codes_cannot_keep_the_person_out(
    console: ConsoleStack,
) -> None:
    async with console.browser_client() as stranger:
        for asked in range(1, CODES_PER_WINDOW + 3):
            await console.post_form(stranger, "/console/sign-in",
                                    {"clinic": console.clinic, "staff_id": "t-oncall"})
            await codes_sent(console, min(asked, CODES_PER_WINDOW))
            for guess in range(TRIES_PER_CODE + 2):
                await console.post_form(stranger, "/console/sign-in/code",
                                        {"code": f"{guess:06d}"})
    # What a stranger can do at most: three codes to the person's phone, three guesses each.
    assert len(console.sms.sent_to(ON_CALL_PHONE)) == CODES_PER_WINDOW
    guesses = [r for r in await console.store.access_records() if r.action == CODE_WRONG]
    assert len(guesses) == CODES_PER_WINDOW * TRIES_PER_CODE

    async with console.browser_client() as real:
        await console.post_form(real, "/console/sign-in",
                                {"clinic": console.clinic, "staff_id": "t-oncall"})
        link = console.newest_sign_in_link(ON_CALL_PHONE)
        assert (await real.get(link)).status_code == 200  # a button: scanners spend nothing
        board = await console.post_form(real, link, {})
        assert board.status_code == 200 and board.url.path == "/console"
        again = await console.post_form(real, link, {})
        assert again.status_code == 410
        forged = link[:-3] + "abc"
        assert (await real.get(forged)).status_code == 400
        assert (await console.post_form(real, forged, {}, form_page=link)).status_code == 400
    assert len(console.sms.sent_to(ON_CALL_PHONE)) == CODES_PER_WINDOW


async def test_a_challenge_whose_code_was_not_sent_is_refused(console: ConsoleStack) -> None:
    async with console.browser_client() as http:
        for _ in range(CODES_PER_WINDOW):
            await console.post_form(http, "/console/sign-in",
                                    {"clinic": console.clinic, "staff_id": "t-oncall"})
        await codes_sent(console, CODES_PER_WINDOW)
        code = console.newest_code(ON_CALL_PHONE)
        # Past the limit the browser still gets a challenge, but no code went out for it:
        # not even a code sent for another challenge opens it.
        await console.post_form(http, "/console/sign-in",
                                {"clinic": console.clinic, "staff_id": "t-oncall"})
        answer = await console.post_form(http, "/console/sign-in/code", {"code": code})
        assert answer.status_code == 401
        assert (await http.get("/console")).url.path == "/console/sign-in"
    assert len(console.sms.sent_to(ON_CALL_PHONE)) == CODES_PER_WINDOW
    # Refused before the code was looked at: no guess is counted against anyone.
    assert CODE_WRONG not in {r.action for r in await console.store.access_records()}


async def test_signing_out_ends_the_session_for_a_saved_cookie_too(
    console: ConsoleStack,
) -> None:
    async with console.browser_client() as http:
        await console.signed_in(http, console.clinic, "t-oncall", ON_CALL_PHONE)
        saved = http.cookies["aftercare_staff"]
        assert (await http.get("/console")).url.path == "/console"
        await console.post_form(http, "/console/sign-out", {}, form_page="/console")
        assert (await http.get("/console")).url.path == "/console/sign-in"
    async with httpx.AsyncClient(base_url=console.url, timeout=30,
                                 cookies={"aftercare_staff": saved}) as replay:
        answer = await replay.get("/console")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/sign-in")


def test_access_logs_never_carry_a_working_sign_in_link() -> None:
    line = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:5000", "POST", "/console/sign-in/link/AbC.dEf", "1.1",
                              303), None)

    _HideLinkTokens().filter(line)

    assert line.getMessage() == '127.0.0.1:5000 - "POST /console/sign-in/link/[token] HTTP/1.1" 303'


async def codes_sent(console: ConsoleStack, count: int) -> None:
    """Wait until ``count`` codes are out and their challenges can be answered."""
    async def sent() -> bool:
        records = await console.store.access_records()
        return [r.action for r in records].count(CODE_SENT) >= count

    await console.until(sent, f"{count} codes sent")


def wrong_for(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


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

