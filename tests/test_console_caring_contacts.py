"""A Caring Contacts series in the staff console: the people who read its replies see its
state and next send on its page and stop it with a reason; the on-call does not."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from tests.fixtures.console import ConsoleStack, console_policies
from tests.followup_harness import LEAD_EMAIL, ON_CALL_PHONE, make_event
from workflows.caring import CaringContacts
from workflows.models import CaringContactsInput, SeriesState, caring_contacts_id


async def running_series(console: ConsoleStack) -> str:
    """A series as a follow-up of the console's clinic starts it, its first view stored."""
    event = make_event().model_copy(update={"clinic_id": console.clinic})
    policy = console_policies(console.clinic, console.other_clinic).for_clinic(console.clinic)
    policy = policy.model_copy(update={"caring_contacts": policy.caring_contacts.model_copy(
        update={"enabled": True})})
    series_id = caring_contacts_id(event.workflow_id)
    await console.client.start_workflow(
        CaringContacts.run, CaringContactsInput(event=event, policy=policy,
                                                followup_id=event.workflow_id),
        id=series_id, task_queue=console.settings.task_queue)
    await console.until_stored(series_id, lambda view: view.caring_contacts is not None
                               and view.caring_contacts.next_send_at is not None,
                               "its next send")
    return series_id


async def sign_in_lead(console: ConsoleStack, page) -> None:
    async with console.browser_client() as http:
        await console.post_form(http, "/console/sign-in",
                                {"clinic": console.clinic, "staff_id": "t-lead"})
        code = await console.until(lambda: console.newest_mailed_code(LEAD_EMAIL),
                                   "a code by email")
        await console.post_form(http, "/console/sign-in/code", {"code": code})
        await page.context.add_cookies([
            {"name": name, "value": value, "url": console.url}
            for name, value in http.cookies.items()])


async def test_the_lead_sees_the_series_next_send_and_stops_it_with_a_reason(
    console: ConsoleStack, page
) -> None:
    series_id = await running_series(console)
    stored = (await console.store.view(series_id)).view.caring_contacts
    await sign_in_lead(console, page)

    await page.goto(f"{console.url}/console/followups/{series_id}")
    section = page.locator("section.caring")
    assert await section.get_by_role("heading", name="Caring Contacts series").is_visible()
    assert await section.locator(".series-state").inner_text() == "sending"
    next_send = stored.next_send_at.astimezone(ZoneInfo("America/New_York"))
    assert (await section.locator(".next-send time").get_attribute("datetime")
            == stored.next_send_at.isoformat())
    assert f"{next_send:%H:%M}" in await section.locator(".next-send").inner_text()

    await page.get_by_label("Why stop it?").fill("client came back to the clinic")
    await page.get_by_role("button", name="Stop the series").click()
    await page.wait_for_url("**?done=stop_caring_contacts")
    assert "no more messages go out" in await page.locator(".notice").inner_text()
    assert (await section.locator(".series-state").inner_text()).startswith("stopped")
    assert await page.get_by_role("button", name="Stop the series").count() == 0

    outcome = await console.client.get_workflow_handle_for(CaringContacts.run,
                                                           series_id).result()
    assert outcome.state is SeriesState.STOPPED and outcome.messages_sent == 0
    (stopped,) = [e for e in outcome.trail if e.step == "series_stopped"]
    assert (stopped.actor, stopped.recipient) == ("staff", "staff:t-lead")
    assert "came back" not in str(outcome.trail), "the reason is a sealed note"
    (note,) = await console.store.notes(series_id)
    assert note.staff_id == "t-lead" and note.audit_seq == stopped.seq


async def test_the_on_call_neither_sees_the_series_nor_may_stop_it(console: ConsoleStack) -> None:
    series_id = await running_series(console)
    async with console.browser_client() as http:
        await console.signed_in(http, console.clinic, "t-oncall", ON_CALL_PHONE)
        page = await http.get(f"/console/followups/{series_id}")
        assert page.status_code == 200
        assert "Caring Contacts series" not in page.text and "Stop the series" not in page.text

        answer = await console.post_form(
            http, f"/console/followups/{series_id}/caring-contacts/stop",
            {"reason": "not mine to stop"}, form_page=f"/console/followups/{series_id}")

    assert answer.status_code == 403
    status = await console.client.get_workflow_handle_for(
        CaringContacts.run, series_id).query(CaringContacts.status)
    assert status.caring_contacts.state is SeriesState.ACTIVE
    assert "series_stopped" not in [e.step for e in status.trail]
    await console.client.get_workflow_handle(series_id).terminate("end of test")
