"""No client detail reaches Temporal in clear, and only token holders can read it back
through the codec endpoint: over real HTTP, and with the real ``temporal`` CLI."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle

from aftercare.settings import Settings
from aftercare.temporal.codec import ENCRYPTED_ENCODING, data_converter
from aftercare.temporal.codec_server import create_app
from aftercare.trail.store import AuditStore
from tests.fixtures.api import serving
from tests.fixtures.temporal import temporal_workflow_show
from tests.followup_harness import (
    CLIENT_EMAIL,
    CLIENT_PHONE,
    CONTACT_PHONE,
    FollowUpHarness,
    make_event,
)
from workflows.followup import DepartureFollowUp
from workflows.models import FollowUpInput, Resolve

CODEC_TOKEN = "codec-token-for-tests"
UI_ORIGIN = "http://127.0.0.1:8233"
# Longer than the harness's "Sam": a three-letter name can turn up in ciphertext by chance.
CONTACT_NAME = "Samantha"


async def followup_that_reached_the_emergency_contact(
    followups: FollowUpHarness,
) -> WorkflowHandle:
    """Imminent risk: on-call paged, then backup and the emergency contact; resolved."""
    event = make_event("imminent")
    event = event.model_copy(update={
        "emergency_contact": event.emergency_contact.model_copy(update={"name": CONTACT_NAME})})
    handle = await followups.start(event)
    await followups.advance(handle, timedelta(minutes=10))
    await followups.until_step(handle, "emergency_contact_notified")
    await handle.execute_update(DepartureFollowUp.resolve,
                                Resolve(staff_id="t-oncall", outcome="reached_client"))
    await followups.finish(handle)
    return handle


async def test_raw_history_holds_no_client_or_contact_detail_in_clear(followups):
    handle = await followup_that_reached_the_emergency_contact(followups)
    assert followups.texts_to(CONTACT_PHONE), "the emergency contact was texted"

    codec_free = await Client.connect(followups.client.service_client.config.target_host)
    history = await codec_free.get_workflow_handle(handle.id).fetch_history()

    raw = b"".join(event.SerializeToString() for event in history.events)
    for detail in ("Dana", CLIENT_PHONE, CLIENT_EMAIL, CONTACT_NAME, CONTACT_PHONE):
        assert detail.encode() not in raw, f"{detail!r} is stored in clear"
    started = history.events[0].workflow_execution_started_event_attributes
    (sealed,) = started.input.payloads
    assert sealed.metadata["encoding"] == ENCRYPTED_ENCODING
    (opened,) = await data_converter(followups.settings).decode([sealed], [FollowUpInput])
    assert (opened.event.client.first_name, opened.event.emergency_contact.name) == (
        "Dana", CONTACT_NAME), "with the key, the same history reads in full"


@pytest.fixture
def codec_settings(encryption_keys, sqlite_url) -> Settings:
    return Settings(encryption_keys=encryption_keys, audit_database_url=sqlite_url,
                    codec_auth_tokens={"auditor-7": CODEC_TOKEN}, codec_ui_origin=UI_ORIGIN)


@pytest.fixture
async def codec_endpoint(codec_settings) -> AsyncIterator[str]:
    settings = codec_settings
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    async with serving(create_app(settings), sock):
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def payloads_of(value: object) -> dict:
    data = base64.b64encode(json.dumps(value).encode()).decode()
    return {"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                          "data": data}]}


@pytest.mark.parametrize("path", ["/encode", "/decode"])
@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Basic YXVkaXRvcjpzZWNyZXQ=", 401), ("Bearer not-the-token", 403)],
    ids=["none", "not-bearer", "wrong-token"],
)
async def test_codec_endpoint_refuses_callers_without_a_valid_token(
    codec_endpoint, path, authorization, status
):
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(base_url=codec_endpoint) as http:
        response = await http.post(path, json=payloads_of({"phone": CLIENT_PHONE}),
                                   headers=headers)

    assert response.status_code == status
    assert CLIENT_PHONE not in response.text


async def test_codec_endpoint_encrypts_and_decrypts_for_a_token_holder(codec_endpoint):
    plain = payloads_of({"phone": CLIENT_PHONE, "first_name": "Dana"})
    auth = {"Authorization": f"Bearer {CODEC_TOKEN}"}
    async with httpx.AsyncClient(base_url=codec_endpoint, headers=auth) as http:
        encoded = (await http.post("/encode", json=plain)).json()
        decoded = await http.post("/decode", json=encoded, headers={"X-Namespace": "default"})

    (sealed,) = encoded["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == ENCRYPTED_ENCODING
    assert CLIENT_PHONE.encode() not in base64.b64decode(sealed["data"])
    assert decoded.status_code == 200
    assert decoded.json() == plain


async def test_codec_endpoint_answers_a_payload_it_cannot_open_without_its_contents(
    codec_endpoint
):
    async with httpx.AsyncClient(base_url=codec_endpoint,
                                 headers={"Authorization": f"Bearer {CODEC_TOKEN}"}) as http:
        sealed = (await http.post("/encode", json=payloads_of("x"))).json()
        sealed["payloads"][0]["data"] = base64.b64encode(b"\0" * 40).decode()
        response = await http.post("/decode", json=sealed)

    assert response.status_code == 400
    assert "failed authentication" in response.json()["detail"]


async def test_every_decode_is_in_the_access_log_with_holder_and_follow_up(
    codec_endpoint, codec_settings
):
    message = {"workflow_id": "followup-clinic--42-s-1", "to": CLIENT_PHONE, "body": "Hi"}
    event = {"event": {"clinic_id": "demo", "session_id": "s-2", "client": {"phone": "x"}}}
    auth = {"Authorization": f"Bearer {CODEC_TOKEN}", "X-Namespace": "default"}
    async with httpx.AsyncClient(base_url=codec_endpoint, headers=auth) as http:
        first = (await http.post("/encode", json=payloads_of(message))).json()
        second = (await http.post("/encode", json=payloads_of(event))).json()
        await http.post("/decode", json=first)
        await http.post("/decode", json={"payloads": first["payloads"] + second["payloads"]})
        refused = await http.post("/decode", json=first,
                                  headers={"Authorization": "Bearer not-the-token"})

    store = await AuditStore.open(codec_settings.audit_database_url)
    try:
        records = await store.access_records()
    finally:
        await store.close()
    assert refused.status_code == 403
    assert [(r.actor, r.action, r.target) for r in records] == [
        ("codec:auditor-7", "decode",
         "workflow followup-clinic--42-s-1 (1 payloads, namespace default)"),
        ("codec:auditor-7", "decode", "workflow followup-clinic--42-s-1, followup-demo-s-2 "
                                      "(2 payloads, namespace default)"),
    ]
    assert all(r.at.tzinfo is not None for r in records)
    assert CLIENT_PHONE not in str(records)


@pytest.mark.parametrize(("origin", "allowed"), [(UI_ORIGIN, True), ("https://evil.test", False)])
async def test_cors_lets_in_only_the_configured_web_ui(codec_endpoint, origin, allowed):
    async with httpx.AsyncClient(base_url=codec_endpoint) as http:
        preflight = await http.options("/decode", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace"})

    assert (preflight.headers.get("access-control-allow-origin") == origin) is allowed
    assert preflight.status_code == (200 if allowed else 400)


async def test_the_temporal_cli_reads_a_history_only_with_a_codec_token(
    followups, codec_endpoint
):
    handle = await followup_that_reached_the_emergency_contact(followups)

    address = followups.client.service_client.config.target_host
    code, shown = await temporal_workflow_show(address, handle.id, "--codec-endpoint",
                                               codec_endpoint, "--codec-auth",
                                               f"Bearer {CODEC_TOKEN}")
    refused, without = await temporal_workflow_show(address, handle.id,
                                                    "--codec-endpoint", codec_endpoint)

    assert code == 0, shown
    started = json.loads(shown)["events"][0]["workflowExecutionStartedEventAttributes"]
    (payload,) = started["input"]["payloads"]
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
    event = json.loads(base64.b64decode(payload["data"]))["event"]
    assert (event["client"]["phone"], event["emergency_contact"]["name"]) == (
        CLIENT_PHONE, CONTACT_NAME)
    assert refused != 0
    assert CONTACT_NAME not in without and CLIENT_PHONE not in without
