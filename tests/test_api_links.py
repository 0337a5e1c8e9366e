"""One-click links from real emails, over real HTTP: open shows, the button acts, once."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import httpx

from aftercare.links.one_click import issue_link_token
from aftercare.policies import PolicyBook
from api.app import create_app
from tests.fixtures.api import IMMEDIATE, steps
from tests.fixtures.relay import TcpRelay
from tests.followup_harness import CLIENT_EMAIL, policy_document


async def emailed_followup(api) -> tuple[str, dict[str, str]]:
    """A follow-up whose check-in went by email, and the email's links by label."""
    started = await api.send_departure(api.departure(preferred_channel="email"))
    workflow_id = started.json()["workflow_id"]
    await api.until_step(workflow_id, "checkin_sent")
    [mail] = api.mail.sent_to(CLIENT_EMAIL)
    links = dict(re.findall(r"^(.+): (http://\S+/r/\S+)$", mail.text, re.MULTILINE))
    return workflow_id, links


async def test_opening_a_link_asks_and_the_button_records_the_reply(api):
    workflow_id, links = await emailed_followup(api)
    link = links["I'm OK"]
    assert link.startswith(f"{api.url}/r/")

    opened = await api.http.get(link)
    await asyncio.sleep(0.3)
    before_click = await api.status(workflow_id)
    clicked = await api.http.post(link)

    assert opened.status_code == 200
    assert 'method="post"' in opened.text and "I&#x27;m OK" in opened.text
    assert "reply_received" not in steps(before_click), "opening alone must record nothing"
    assert clicked.status_code == 200 and "Done" in clicked.text
    status = await api.until_step(workflow_id, "reply_received")
    [reply] = [entry for entry in status.trail if entry.step == "reply_received"]
    assert (reply.channel, reply.outcome) == ("link", "safe")
    assert status.client_safe


async def test_a_used_link_is_refused_and_records_nothing_more(api):
    workflow_id, links = await emailed_followup(api)
    call_me = links["Please call me"]
    await api.http.post(call_me)
    await api.until_step(workflow_id, "reply_received")

    reopened = await api.http.get(call_me)
    reused = await api.http.post(call_me)

    assert reopened.status_code == reused.status_code == 409
    assert "already used" in reused.text
    await asyncio.sleep(0.3)
    assert steps(await api.status(workflow_id)).count("reply_received") == 1


async def test_a_tampered_or_expired_link_is_refused_and_records_nothing(api):
    workflow_id, links = await emailed_followup(api)
    token = links["I'm OK"].rsplit("/", 1)[1]
    payload, signature = token.split(".")
    tampered = f"{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"
    expired = issue_link_token(api.settings.link_secret, workflow_id, "reply", "OK",
                               timedelta(hours=1), datetime.now(UTC) - timedelta(hours=2))

    answers = {
        "tampered": await api.http.post(f"/r/{tampered}"),
        "expired": await api.http.post(f"/r/{expired}"),
        "garbage": await api.http.get("/r/not-a-token"),
    }

    # Cut short (not a link's shape) is 400; the shape but not our signature, 403.
    assert (answers["garbage"].status_code, answers["tampered"].status_code) == (400, 403)
    assert "not valid" in answers["tampered"].text and "not valid" in answers["garbage"].text
    assert answers["expired"].status_code == 410 and "expired" in answers["expired"].text
    for answer in answers.values():
        assert answer.headers["content-type"].startswith("text/html")
    await asyncio.sleep(0.3)
    assert "reply_received" not in steps(await api.status(workflow_id))


def test_access_logs_never_carry_a_working_link_token():
    import logging

    from api.app import _HideLinkTokens

    line = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:5000", "POST", "/r/eyJ3ZiI6.c2ln", "1.1", 200), None)

    _HideLinkTokens().filter(line)

    assert line.getMessage() == '127.0.0.1:5000 - "POST /r/[token] HTTP/1.1" 200'


async def test_a_staff_ack_link_takes_only_the_escalation_it_was_sent_for(api):
    started = await api.send_departure(api.departure("imminent"))
    workflow_id = started.json()["workflow_id"]
    status = await api.until_step(workflow_id, "staff_page_sent")
    secret, hour = api.settings.link_secret, timedelta(hours=1)

    def link(value: str) -> str:
        return "/r/" + issue_link_token(secret, workflow_id, "ack", value, hour, datetime.now(UTC))

    stale = await api.http.post(link("t-oncall 000000"))
    taken = await api.http.post(link(f"t-oncall {status.escalation.code}"))

    assert stale.status_code == 409 and "does not match" in stale.text
    assert taken.status_code == 200 and "acknowledged by t-oncall" in taken.text
    status = await api.until_step(workflow_id, "acknowledged")
    assert status.escalation.acknowledged_by == "t-oncall"


async def test_a_failing_action_leaves_the_link_usable_and_offers_the_clinics_number(api):
    """Temporal goes away after the link was claimed: the page says the answer did not
    arrive and who to call, and the same button works once Temporal is back."""
    workflow_id, links = await emailed_followup(api)
    call_me = links["Please call me"].removeprefix(api.url)
    relay = TcpRelay(api.settings.temporal_address)
    await relay.start()
    policy = {**policy_document(checkin_delay=IMMEDIATE), "clinic_phone": "+1 555 555 0142"}
    app = create_app(api.settings.model_copy(update={"temporal_address": relay.address}),
                     policies=PolicyBook({"default": {}, "clinic-42": policy}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=api.url) as http:
        assert (await http.get("/readyz")).status_code == 200
        await relay.stop()
        failed = await http.post(call_me)
        await relay.start()
        again = await http.post(call_me)
    await app.state.intake.close()
    await relay.stop()

    assert failed.status_code == 503
    assert "did not reach your care team" in failed.text
    assert "this link still works" in failed.text and "+1 555 555 0142" in failed.text
    assert "988" in failed.text
    assert again.status_code == 200 and "Done" in again.text
    status = await api.until_step(workflow_id, "reply_received")
    [reply] = [entry for entry in status.trail if entry.step == "reply_received"]
    assert reply.channel == "link"
