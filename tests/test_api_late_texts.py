"""A text after a follow-up has ended, through Twilio's signed webhook: the clinic's on-call
still hears a crisis or a call request, by a late follow-up of the earlier one; a number
with no follow-up in the retention gets the crisis line, as before."""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus

from aftercare.followups.errors import FollowUpNotFound
from aftercare.followups.lookup import contact_key
from aftercare.followups.start import departure_of, start_late_followup
from aftercare.policies import PolicyBook
from tests.fixtures.api import CLINIC_KEY, IMMEDIATE, bearer, steps
from tests.followup_harness import ON_CALL_PHONE, policy_document
from tests.test_api_sms import EMPTY_TWIML
from workflows.models import Channel, ClientReply

# A client who answers OK is offered nothing and listened to for three seconds.
QUICK_TO_CLOSE = policy_document(checkin_delay=IMMEDIATE, listen_after_close="PT3S",
                                 reschedule={"slots": []})


@pytest.fixture
def phone() -> str:
    """This test's client number: follow-ups other tests leave open on the shared server
    must not take its texts."""
    return f"+1555{secrets.randbelow(10**7):07d}"


async def open_followup(api, phone: str) -> str:
    """A follow-up whose check-in went out and whose sender Temporal can find."""
    started = await api.send_departure(api.departure(phone=phone))
    workflow_id = started.json()["workflow_id"]
    await api.until_step(workflow_id, "checkin_sent")
    key = contact_key(api.settings.lookup_secret, phone)
    await api.until_visible(f"AftercareContactKey = '{key}' AND WorkflowId = '{workflow_id}'")
    return workflow_id


def new_sid() -> str:
    return "SM" + secrets.token_hex(16)


def text_from(phone: str, body: str, sid: str) -> dict[str, str]:
    return {"From": phone, "To": "+15005550006", "Body": body, "MessageSid": sid}


async def cancelled_followup(api, phone: str) -> str:
    """A follow-up whose check-in went out, cancelled by staff: it completes."""
    workflow_id = await open_followup(api, phone)
    cancelled = await api.http.post(
        f"/v1/followups/{workflow_id}/cancel",
        json={"staff_id": "t-oncall", "reason": "client came back"}, headers=bearer(CLINIC_KEY))
    assert cancelled.status_code == 200
    await until_closed(api, workflow_id)
    return workflow_id


async def until_closed(api, workflow_id: str, timeout: float = 30.0) -> None:
    """Wait until the follow-up has completed and visibility says so."""
    async def closed() -> bool:
        described = await api.client.get_workflow_handle(workflow_id).describe()
        return described.status is WorkflowExecutionStatus.COMPLETED

    await api.until(closed, f"{workflow_id} completes", timeout)
    await api.until_visible(f"WorkflowId = '{workflow_id}' AND ExecutionStatus = 'Completed'")


async def test_a_crisis_text_after_staff_cancelled_pages_on_call_and_answers_once(api, phone):
    earlier = await cancelled_followup(api, phone)
    texts_before = len(api.sms.sent_to(phone))
    assert api.sms.sent_to(ON_CALL_PHONE) == []
    sid = new_sid()

    response = await api.twilio_post(
        "/v1/twilio/inbound", text_from(phone, "I want to end my life", sid))

    assert response.status_code == 200
    assert response.text == EMPTY_TWIML, "the late follow-up answers: no second crisis line"
    late = f"{earlier}-late"
    status = await api.until_step(late, "escalation_started")
    assert status.escalation.reason == "crisis words in a reply"
    [page] = await api.until(lambda: api.sms.sent_to(ON_CALL_PHONE), "on-call paged")
    assert "crisis words" in page.body
    received = status.trail[0]
    assert (received.step, received.detail["late_reply_to"]) == ("received", earlier)
    [reply] = [entry for entry in status.trail if entry.step == "reply_received"]
    assert (reply.channel, reply.provider_message_id) == ("sms", sid)
    [resources] = await api.until(
        lambda: api.sms.sent_to(phone)[texts_before:], "crisis resources to the client")
    assert "not alone" in resources.body and resources.body.count("988") == 1
    await asyncio.sleep(1.0)
    assert len(api.sms.sent_to(phone)) == texts_before + 1, "the crisis line once, not twice"


async def test_a_second_text_while_the_late_followup_runs_joins_it(api, phone):
    earlier = await cancelled_followup(api, phone)
    first_sid, second_sid = new_sid(), new_sid()
    await api.twilio_post("/v1/twilio/inbound",
                          text_from(phone, "I want to end my life", first_sid))
    late = api.client.get_workflow_handle(f"{earlier}-late")
    await api.until_step(late.id, "escalation_started")
    first_run = (await late.describe()).run_id

    second = await api.twilio_post("/v1/twilio/inbound",
                                   text_from(phone, "please call me", second_sid))

    assert second.text == EMPTY_TWIML

    async def both_replies() -> list:
        status = await api.status(late.id)
        replies = [entry for entry in status.trail if entry.step == "reply_received"]
        return replies if len(replies) == 2 else []

    replies = await api.until(both_replies, "the second text joins the late follow-up")
    assert [reply.provider_message_id for reply in replies] == [first_sid, second_sid]
    assert (await late.describe()).run_id == first_run
    assert steps(await api.status(late.id)).count("received") == 1
    assert (await api.client.count_workflows(f"WorkflowId = '{late.id}'")).count == 1


@pytest.mark.parametrize("clinic_42_policy", [QUICK_TO_CLOSE])
async def test_a_text_needing_a_person_after_the_listening_window_pages_on_call(api, phone):
    workflow_id = await open_followup(api, phone)
    await api.twilio_post("/v1/twilio/inbound", text_from(phone, "OK", new_sid()))
    await api.until_step(workflow_id, "listening")
    await until_closed(api, workflow_id)
    assert api.sms.sent_to(ON_CALL_PHONE) == []

    response = await api.twilio_post(
        "/v1/twilio/inbound", text_from(phone, "can someone call me", new_sid()))

    assert response.text == EMPTY_TWIML
    late = f"{workflow_id}-late"
    status = await api.until_step(late, "escalation_started")
    assert status.trail[0].detail["late_reply_to"] == workflow_id
    [page] = await api.until(lambda: api.sms.sent_to(ON_CALL_PHONE), "on-call paged")
    code = re.search(r"ACK (\d{6})", page.body).group(1)
    await api.until_visible(f"AftercareAckCode = '{code}'")
    ack = await api.twilio_post("/v1/twilio/inbound", {
        "From": ON_CALL_PHONE, "Body": f"ACK {code}", "MessageSid": new_sid()})
    assert f"Ref {code}: acknowledged by t-oncall" in ack.text


@pytest.mark.parametrize("clinic_42_policy", [QUICK_TO_CLOSE])
async def test_a_text_after_the_late_followup_closed_starts_it_again(api, phone):
    workflow_id = await open_followup(api, phone)
    await api.twilio_post("/v1/twilio/inbound", text_from(phone, "OK", new_sid()))
    await until_closed(api, workflow_id)
    await api.twilio_post("/v1/twilio/inbound", text_from(phone, "OK", new_sid()))
    late = api.client.get_workflow_handle(f"{workflow_id}-late")
    await api.until_step(late.id, "reply_received")
    await until_closed(api, late.id)
    first_run = (await late.describe()).run_id

    response = await api.twilio_post(
        "/v1/twilio/inbound", text_from(phone, "can someone call me", new_sid()))

    assert response.text == EMPTY_TWIML
    status = await api.until_step(late.id, "escalation_started")
    assert (await late.describe()).run_id != first_run
    assert status.trail[0].detail["late_reply_to"] == workflow_id
    await api.until(lambda: api.sms.sent_to(ON_CALL_PHONE), "on-call paged")


@pytest.mark.parametrize("api_settings", [{"late_text_retention": timedelta(0)}])
async def test_a_followup_closed_before_the_retention_leaves_the_old_answer(api, phone):
    earlier = await cancelled_followup(api, phone)

    response = await api.twilio_post(
        "/v1/twilio/inbound", text_from(phone, "I want to end my life", new_sid()))

    assert "no open check-in for this number" in response.text
    assert "988" in response.text
    late = await api.client.count_workflows(f"WorkflowId = '{earlier}-late'")
    assert late.count == 0
    assert api.sms.sent_to(ON_CALL_PHONE) == []


async def test_a_followup_whose_history_is_gone_has_no_departure_to_start_from(api):
    with pytest.raises(FollowUpNotFound):
        await departure_of(api.client, "followup-clinic--42-s-history-deleted")


async def test_starting_a_running_late_followup_again_only_signals_it(api, phone):
    """The webhook's second text usually finds the late follow-up open; before visibility
    shows it, the text takes the signal-with-start path again and must join it too."""
    earlier = await cancelled_followup(api, phone)
    policies = PolicyBook({"default": {}, "clinic-42": policy_document(checkin_delay=IMMEDIATE)})
    first, second = (ClientReply(text=text, channel=Channel.SMS, provider_message_id=new_sid())
                     for text in ("I want to end my life", "please call me"))

    late_id = await start_late_followup(api.client, api.settings, policies, earlier, first)
    await api.until_step(late_id, "escalation_started")
    run = (await api.client.get_workflow_handle(late_id).describe()).run_id
    again = await start_late_followup(api.client, api.settings, policies, earlier, second)

    async def both_replies() -> list[str | None]:
        status = await api.status(late_id)
        replies = [entry.provider_message_id for entry in status.trail
                   if entry.step == "reply_received"]
        return replies if len(replies) == 2 else []

    assert again == late_id == f"{earlier}-late"
    replies = await api.until(both_replies, "the second start joins as a signal")
    assert replies == [first.provider_message_id, second.provider_message_id]
    assert (await api.client.get_workflow_handle(late_id).describe()).run_id == run
