"""No client detail reaches Temporal in clear, and only token holders can read it back
through the codec endpoint: over real HTTP, and with the real ``temporal`` CLI."""

from __future__ import annotations

import base64
import json
import re
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
from workflows.models import Acknowledge, FollowUpInput, Resolve

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
        ("codec:auditor-7", "encode", "followup-clinic--42-s-1 (1 payload); namespace default"),
        ("codec:auditor-7", "encode", "followup-demo-s-2 (1 payload); namespace default"),
        ("codec:auditor-7", "decode", "followup-clinic--42-s-1 (1 payload); namespace default"),
        ("codec:auditor-7", "decode", "followup-clinic--42-s-1 (1 payload), "
                                      "followup-demo-s-2 (1 payload); namespace default"),
    ]
    assert all(r.at.tzinfo is not None for r in records)
    assert CLIENT_PHONE not in str(records)


async def test_a_payload_that_names_no_follow_up_is_recorded_as_unknown_with_the_reason(
    codec_endpoint, codec_settings
):
    auth = {"Authorization": f"Bearer {CODEC_TOKEN}"}
    async with httpx.AsyncClient(base_url=codec_endpoint, headers=auth) as http:
        sealed = (await http.post("/encode", json=payloads_of({"note": "no id here"}))).json()
        await http.post("/decode", json=sealed)

    assert [(r.action, r.target) for r in await access_records(codec_settings)] == [
        ("encode", "unknown follow-up (1 payload: its contents name none, and the protocol "
                   "names no workflow); namespace default"),
        ("decode", "unknown follow-up (1 payload: sealed without its follow-up's name "
                   "(before payloads carried it, or through /encode), and its contents name "
                   "none); namespace default"),
    ]


async def test_a_namespace_the_endpoint_does_not_serve_is_refused_and_never_written(
    codec_endpoint, codec_settings
):
    auth = {"Authorization": f"Bearer {CODEC_TOKEN}"}
    async with httpx.AsyncClient(base_url=codec_endpoint, headers=auth) as http:
        sealed = (await http.post("/encode", json=payloads_of({"phone": CLIENT_PHONE}))).json()
        spoofed = {path: await http.post(path, json=sealed,
                                         headers={"X-Namespace": "prod; admin=yes"})
                   for path in ("/encode", "/decode")}
        unnamed = await http.post("/decode", json=sealed)

    records = await access_records(codec_settings)
    assert {path: answer.status_code for path, answer in spoofed.items()} == {
        "/encode": 403, "/decode": 403}
    assert spoofed["/decode"].json() == {
        "detail": "X-Namespace: this codec endpoint serves namespace 'default' only"}
    assert CLIENT_PHONE not in spoofed["/decode"].text
    assert unnamed.status_code == 200
    assert [r.action for r in records] == ["encode", "decode"]
    assert "admin" not in str(records) and all(
        r.target.endswith("; namespace default") for r in records)


def plain_payloads(value: object) -> list[str]:
    """The text of every payload the CLI showed, decoded from its JSON form."""
    if isinstance(value, dict):
        if isinstance(value.get("data"), str) and "metadata" in value:
            return [base64.b64decode(value["data"]).decode(errors="replace")]
        return [text for item in value.values() for text in plain_payloads(item)]
    if isinstance(value, list):
        return [text for item in value for text in plain_payloads(item)]
    return []


async def access_records(settings: Settings) -> list:
    store = await AuditStore.open(settings.audit_database_url)
    try:
        return await store.access_records()
    finally:
        await store.close()


async def test_every_payload_the_cli_decodes_names_its_follow_up_staff_notes_included(
    followups, codec_endpoint, codec_settings
):
    """Acknowledging and resolving with a note are updates whose payloads hold no workflow
    id in their contents: they are named from what the payload codec sealed beside them."""
    event = make_event("imminent")
    handle = await followups.start(event)
    await followups.until_step(handle, "escalation_started")
    await handle.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id="t-oncall"))
    await handle.execute_update(DepartureFollowUp.resolve, Resolve(
        staff_id="t-oncall", outcome="reached_client", note="Called back, she is with family"))
    await followups.finish(handle)

    address = followups.client.service_client.config.target_host
    code, shown = await temporal_workflow_show(address, handle.id, "--codec-endpoint",
                                               codec_endpoint, "--codec-auth",
                                               f"Bearer {CODEC_TOKEN}")

    assert code == 0, shown
    assert "she is with family" in " ".join(plain_payloads(json.loads(shown)))
    decodes = [r.target for r in await access_records(codec_settings) if r.action == "decode"]
    assert decodes
    named = re.compile(rf"{re.escape(handle.id)} \(\d+ payloads?\); namespace default")
    # The CLI also sends search attributes, which are not encrypted and hold no PHI.
    nothing_read = "no payload holding client details; namespace default"
    assert any(named.fullmatch(target) for target in decodes)
    assert all(named.fullmatch(target) or target == nothing_read for target in decodes), decodes


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
