"""Twilio's webhooks over real HTTP: client texts, staff ACK/RESOLVED, opt-out keywords,
forged signatures and delivery status callbacks."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from aftercare.followups.lookup import contact_key
from aftercare.policies import PolicyBook
from aftercare.settings import API_REQUIRED_SETTINGS, DEV_TWILIO_AUTH_TOKEN, MissingSettingError
from aftercare.trail.schema import inbound_webhooks
from aftercare.trail.store import AuditStore
from api.app import create_app
from api.sms_webhooks import twilio_signature
from tests.fixtures.api import serving, steps
from tests.fixtures.relay import TcpRelay
from tests.followup_harness import CLIENT_EMAIL, CLIENT_PHONE, ON_CALL_PHONE

REPO = Path(__file__).resolve().parent.parent
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


async def open_followup(api, risk: str = "moderate") -> str:
    """A follow-up whose check-in went out and whose sender Temporal can find."""
    started = await api.send_departure(api.departure(risk))
    workflow_id = started.json()["workflow_id"]
    await api.until_step(workflow_id, "checkin_sent" if risk != "imminent" else
                         "escalation_started")
    key = contact_key(api.settings.lookup_secret, CLIENT_PHONE)
    await api.until_visible(f"AftercareContactKey = '{key}' AND WorkflowId = '{workflow_id}'")
    return workflow_id


def client_text(body: str, sid: str = "SM" + "a" * 32) -> dict[str, str]:
    return {"From": CLIENT_PHONE, "To": "+15005550006", "Body": body, "MessageSid": sid}


async def test_a_clients_text_is_recorded_as_their_reply(api):
    workflow_id = await open_followup(api)

    response = await api.twilio_post("/v1/twilio/inbound", client_text("OK", "SM" + "1" * 32))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text == EMPTY_TWIML
    status = await api.until_step(workflow_id, "reply_received")
    [reply] = [entry for entry in status.trail if entry.step == "reply_received"]
    assert (reply.channel, reply.provider_message_id, reply.outcome) == (
        "sms", "SM" + "1" * 32, "safe")
    assert status.client_safe


async def test_a_forged_or_missing_signature_is_refused_and_changes_nothing(api):
    workflow_id = await open_followup(api)
    before = steps(await api.status(workflow_id))

    forged = await api.twilio_post("/v1/twilio/inbound", client_text("OK"), signature="Zm9yZ2Vk")
    missing = await api.twilio_post("/v1/twilio/inbound", client_text("OK"), signature=None)
    # Signed for other words than the ones sent.
    fields = client_text("CALL")
    tampered = await api.http.post("/v1/twilio/inbound", data=client_text("OK"), headers={
        "X-Twilio-Signature": twilio_signature(api.settings, "/v1/twilio/inbound", fields)})

    assert forged.status_code == missing.status_code == tampered.status_code == 403
    assert missing.json() == {"detail": "X-Twilio-Signature: missing"}
    assert forged.json() == {"detail": "X-Twilio-Signature: does not match this request"}
    await asyncio.sleep(0.5)
    status = await api.status(workflow_id)
    assert steps(status) == before
    assert not status.client_safe


async def test_on_call_texting_ack_with_the_code_acknowledges_then_resolved_resolves(api):
    workflow_id = await open_followup(api, "imminent")
    [page] = await api.until(lambda: api.sms.sent_to(ON_CALL_PHONE), "on-call paged")
    code = re.search(r"ACK (\d{6})", page.body).group(1)
    await api.until_visible(f"AftercareAckCode = '{code}'")

    ack = await api.twilio_post("/v1/twilio/inbound", {
        "From": ON_CALL_PHONE, "Body": f"ack {code}", "MessageSid": "SM" + "2" * 32})
    resolved = await api.twilio_post("/v1/twilio/inbound", {
        "From": ON_CALL_PHONE, "Body": f"RESOLVED {code} reached_client spoke to her",
        "MessageSid": "SM" + "3" * 32})

    assert ack.status_code == 200
    assert f"Ref {code}: acknowledged by t-oncall" in ack.text
    assert f"RESOLVED {code}" in ack.text
    assert f"Ref {code}: resolved by t-oncall" in resolved.text
    status = await api.status(workflow_id)
    assert status.escalation.acknowledged_by == "t-oncall"
    assert status.escalation.outcome == "reached_client"


async def test_ack_from_a_number_not_on_staff_acts_on_nothing(api):
    workflow_id = await open_followup(api, "imminent")
    [page] = await api.until(lambda: api.sms.sent_to(ON_CALL_PHONE), "on-call paged")
    code = re.search(r"ACK (\d{6})", page.body).group(1)
    await api.until_visible(f"AftercareAckCode = '{code}'")

    response = await api.twilio_post("/v1/twilio/inbound", client_text(f"ACK {code}"))

    assert f"No open escalation has ref {code} for this number." in response.text
    assert (await api.status(workflow_id)).escalation.acknowledged_by is None


async def test_stop_opts_the_client_out_at_once_and_twilio_answers_the_keyword(api):
    workflow_id = await open_followup(api)

    response = await api.twilio_post("/v1/twilio/inbound", client_text("STOP"))

    assert response.text == EMPTY_TWIML
    status = await api.until(
        lambda: _opted_out(api, workflow_id), "client opted out")
    assert status.opted_out


async def _opted_out(api, workflow_id):
    status = await api.status(workflow_id)
    return status if status.opted_out else None


async def test_a_text_from_a_number_with_no_open_followup_gets_the_crisis_line(api):
    response = await api.twilio_post("/v1/twilio/inbound", {
        "From": "+15555550177", "Body": "hello?", "MessageSid": "SM" + "4" * 32})
    keyword = await api.twilio_post("/v1/twilio/inbound", {
        "From": "+15555550177", "Body": "HELP", "MessageSid": "SM" + "5" * 32})

    assert "no open check-in for this number" in response.text
    assert "988" in response.text
    assert keyword.text == EMPTY_TWIML


async def test_an_undelivered_checkin_text_falls_back_to_email(api):
    api.sms.send_status_callbacks = True
    api.sms.fail_delivery(CLIENT_PHONE)

    started = await api.send_departure(api.departure())
    workflow_id = started.json()["workflow_id"]

    status = await api.until_step(workflow_id, "channel_fallback")
    assert "checkin_undelivered" in steps(status)
    [mail] = await api.until(lambda: api.mail.sent_to(CLIENT_EMAIL), "check-in email")
    assert "Dana" in mail.text and "988" in mail.text
    assert status.channel == "email"


async def test_status_callbacks_are_signature_checked(api):
    workflow_id = await open_followup(api)
    [sms] = api.sms.sent_to(CLIENT_PHONE)
    path = f"/v1/twilio/status?followup={workflow_id}"
    fields = {"MessageSid": sms.sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}

    forged = await api.twilio_post(path, fields, signature="Zm9yZ2Vk")
    delivered = await api.twilio_post(path, {**fields, "MessageStatus": "delivered"})

    assert forged.status_code == 403
    assert delivered.status_code == 204
    await asyncio.sleep(0.5)
    assert "checkin_undelivered" not in steps(await api.status(workflow_id))
    assert api.mail.messages == []


def test_the_api_refuses_to_start_without_a_twilio_auth_token(tmp_path):
    """No token, no fallback: a public development token would let anyone forge a client's
    "OK". The process stops at once with one line naming the setting."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AFTERCARE_")}
    env.update(AFTERCARE_API_KEYS="c:clinic-key-for-tests",
               AFTERCARE_ENCRYPTION_KEYS=f"k:{'A' * 43}=",
               AFTERCARE_LINK_SECRET="link-secret-for-tests",
               AFTERCARE_LOOKUP_SECRET="lookup-secret-for-tests",
               AFTERCARE_METRICS_TOKEN="metrics-token-for-tests",
               AFTERCARE_PUBLIC_BASE_URL="https://aftercare.example")
    serve = subprocess.run([sys.executable, str(REPO / "starter.py"), "serve"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)

    assert serve.returncode != 0
    assert serve.stderr.strip().splitlines()[-1] == (
        "error: AFTERCARE_TWILIO_AUTH_TOKEN is not set: the Twilio auth token that "
        "signs inbound webhooks (the dev stack sets its own)")


def test_the_api_refuses_every_missing_secret_by_name(api):
    for name in API_REQUIRED_SETTINGS:
        with pytest.raises(MissingSettingError, match=f"^AFTERCARE_{name.upper()} is not set: "):
            create_app(api.settings.model_copy(update={name: None}))


async def test_a_replayed_webhook_is_ignored(api):
    workflow_id = await open_followup(api)
    text = client_text("CALL", "SM" + "6" * 32)

    first = await api.twilio_post("/v1/twilio/inbound", text)
    await api.until_step(workflow_id, "reply_received")
    replayed = await api.twilio_post("/v1/twilio/inbound", text)

    assert first.status_code == replayed.status_code == 200
    assert replayed.text == EMPTY_TWIML
    await asyncio.sleep(0.5)
    assert steps(await api.status(workflow_id)).count("reply_received") == 1


async def test_a_text_is_kept_while_temporal_is_unreachable_and_delivered_when_it_is_back(api):
    workflow_id = await open_followup(api)
    relay = TcpRelay(api.settings.temporal_address)  # not started: Temporal is away
    settings = api.settings.model_copy(update={
        "temporal_address": relay.address, "inbox_retry_seconds": 0.2})
    app = create_app(settings, policies=PolicyBook({"default": {}}))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    text = client_text("CALL", "SM" + "7" * 32)
    headers = {"X-Twilio-Signature": twilio_signature(settings, "/v1/twilio/inbound", text)}
    async with (
        serving(app, sock),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}") as http,
    ):
        while_away = await http.post("/v1/twilio/inbound", data=text, headers=headers)
        [kept] = await inbox_rows(settings)
        await asyncio.sleep(0.5)
        before = await api.status(workflow_id)
        await relay.start()
        status = await api.until_step(workflow_id, "reply_received")
        [delivered] = await api.until(
            lambda: delivered_rows(settings), "the kept webhook marked delivered")
    await relay.stop()

    assert (while_away.status_code, while_away.text) == (200, EMPTY_TWIML)
    assert kept.delivered_at is None
    assert CLIENT_PHONE.encode() not in kept.sealed_request
    assert b"CALL" not in kept.sealed_request, "a client's words wait sealed"
    assert "reply_received" not in steps(before)
    [reply] = [entry for entry in status.trail if entry.step == "reply_received"]
    assert reply.provider_message_id == "SM" + "7" * 32
    assert delivered.sealed_request is None, "nothing of the text is kept once delivered"


async def inbox_rows(settings) -> list:
    store = await AuditStore.open(settings.audit_database_url)
    try:
        async with store.engine.connect() as conn:
            return (await conn.execute(sa.select(inbound_webhooks).where(
                inbound_webhooks.c.message_key == "inbound:SM" + "7" * 32))).all()
    finally:
        await store.close()


async def delivered_rows(settings) -> list:
    return [row for row in await inbox_rows(settings) if row.delivered_at is not None]


async def test_a_webhook_signed_with_the_public_development_token_is_refused(api):
    """The reported forgery: a deployment with its own token once still accepted a
    signature made with the dev outbox's public token."""
    settings = api.settings.model_copy(update={"twilio_auth_token": "the-account-token"})
    app = create_app(settings, policies=PolicyBook({"default": {}}))
    text = client_text("OK", "SM" + "8" * 32)
    forged = twilio_signature(api.settings, "/v1/twilio/inbound", text)  # the dev token
    genuine = twilio_signature(settings, "/v1/twilio/inbound", text)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=api.url) as http:
        refused = await http.post("/v1/twilio/inbound", data=text,
                                  headers={"X-Twilio-Signature": forged})
        accepted = await http.post("/v1/twilio/inbound", data=text,
                                   headers={"X-Twilio-Signature": genuine})
    await app.state.intake.close()

    assert api.settings.twilio_auth_token == DEV_TWILIO_AUTH_TOKEN
    assert refused.status_code == 403
    assert accepted.status_code == 200


async def test_a_replay_while_the_audit_database_is_away_is_not_acted_on_twice(
    api, postgresql_url, tmp_path
):
    """A captured "OK" replayed while the audit database is away waits in the local spool
    and, once the database can tell, is ignored as the replay it is. A call request sent
    meanwhile is acted on at once, and its replay in the same outage is ignored."""
    workflow_id = await open_followup(api)
    url = make_url(postgresql_url)
    audit_database = TcpRelay(f"{url.host}:{url.port}")
    spool = tmp_path / "spool" / "webhooks.db"
    settings = api.settings.model_copy(update={
        "audit_database_url": url.set(host="127.0.0.1", port=audit_database.port)
                                 .render_as_string(hide_password=False),
        "webhook_spool_path": spool,
        "inbox_retry_seconds": 0.2,
    })
    app = create_app(settings, api.client, PolicyBook({"default": {}}))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    safe = client_text("OK", "SM" + "c" * 32)
    call = client_text("CALL", "SM" + "d" * 32)

    async def replies(sid: str) -> int:
        return sum(1 for entry in (await api.status(workflow_id)).trail
                   if entry.step == "reply_received" and entry.provider_message_id == sid)

    await audit_database.start()
    async with (
        serving(app, sock),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}") as http,
    ):
        async def text(fields: dict[str, str]) -> httpx.Response:
            signature = twilio_signature(settings, "/v1/twilio/inbound", fields)
            return await http.post("/v1/twilio/inbound", data=fields,
                                   headers={"X-Twilio-Signature": signature})

        first = await text(safe)
        await api.until(lambda: replies(safe["MessageSid"]), "the first OK acted on")
        await audit_database.stop()
        replayed = await text(safe)
        asked = await text(call)
        await api.until(lambda: replies(call["MessageSid"]), "the call request acted on")
        asked_again = await text(call)
        held = await spool_rows(spool)
        await audit_database.start()
        await api.until(lambda: spool_is_empty(spool), "the spool emptied into the database")
        await asyncio.sleep(1.0)  # time for a wrongly passed-on replay to arrive
        safe_replies, call_replies = await replies(safe["MessageSid"]), await replies(
            call["MessageSid"])
    await audit_database.stop()

    assert first.status_code == replayed.status_code == asked.status_code == 200
    assert asked_again.text == EMPTY_TWIML
    assert (safe_replies, call_replies) == (1, 1)
    assert {row.message_key: row.delivered_at is not None for row in held} == {
        f"inbound:{safe['MessageSid']}": False, f"inbound:{call['MessageSid']}": True}
    assert spool.stat().st_mode & 0o777 == 0o600


async def spool_rows(spool: Path) -> list:
    store = await AuditStore.open(f"sqlite+aiosqlite:///{spool}")
    try:
        async with store.engine.connect() as conn:
            return (await conn.execute(sa.select(inbound_webhooks))).all()
    finally:
        await store.close()


async def spool_is_empty(spool: Path) -> bool:
    return not await spool_rows(spool)
