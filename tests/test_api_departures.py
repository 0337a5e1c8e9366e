"""Clinics' side of the intake service, over real HTTP: departures, reading and acting on
follow-ups, authentication and refusals."""

from __future__ import annotations

import asyncio
import json

import httpx

from aftercare.followups.start import FINGERPRINT_MEMO, event_fingerprint
from tests.fixtures.api import CLINIC_KEY, METRICS_TOKEN, OTHER_CLINIC_KEY, bearer, steps
from tests.followup_harness import CLIENT_PHONE, ON_CALL_PHONE
from workflows.followup import DepartureFollowUp
from workflows.models import (
    DepartureEvent,
    FollowUpInput,
    followup_workflow_id,
    legacy_followup_workflow_id,
)
from workflows.policy import ClinicPolicy


async def test_an_accepted_departure_texts_the_client_a_checkin(api):
    event = api.departure()

    response = await api.send_departure(event)

    assert response.status_code == 202
    body = response.json()
    workflow_id = followup_workflow_id("clinic-42", event["session_id"])
    assert body == {"workflow_id": workflow_id,
                    "status_url": f"{api.url}/v1/followups/{workflow_id}"}
    assert response.headers["Location"] == body["status_url"]
    await api.until_step(workflow_id, "checkin_sent")
    [checkin] = api.sms.sent_to(CLIENT_PHONE)
    assert "Dana" in checkin.body and "988" in checkin.body

    # GET reads the view and trail stored with each batch: one activity behind the workflow.
    for _ in range(100):
        status = await api.http.get(body["status_url"], headers=bearer(CLINIC_KEY))
        if "checkin_sent" in [entry["step"] for entry in status.json().get("trail", [])]:
            break
        await asyncio.sleep(0.1)
    assert status.status_code == 200
    assert status.json()["workflow_id"] == workflow_id
    assert "checkin_sent" in [entry["step"] for entry in status.json()["trail"]]


async def test_the_same_event_twice_is_one_followup(api):
    event = api.departure()

    first = await api.send_departure(event)
    again = await api.send_departure(event)

    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json() == again.json()
    status = await api.until_step(first.json()["workflow_id"], "checkin_sent")
    assert steps(status).count("received") == 1
    assert len(api.sms.sent_to(CLIENT_PHONE)) == 1


async def test_different_content_for_the_same_session_is_a_conflict(api):
    event = api.departure()
    await api.send_departure(event)

    response = await api.send_departure({**event, "risk_level": "high"})

    assert response.status_code == 409
    assert response.json()["detail"].startswith("session_id:")
    assert "different event content" in response.json()["detail"]


async def test_without_a_key_nothing_starts(api):
    event = api.departure()

    missing = await api.http.post("/v1/departures", json=event)
    unknown = await api.send_departure(event, key="not-a-key")

    assert missing.status_code == unknown.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization" in missing.json()["detail"]
    assert "not known" in unknown.json()["detail"]
    await assert_never_started(api, event)


async def test_another_clinics_key_is_refused(api):
    event = api.departure()

    response = await api.send_departure(event, key=OTHER_CLINIC_KEY)

    assert response.status_code == 403
    assert response.json()["detail"] == "clinic_id: this API key is not for clinic 'clinic-42'"
    await assert_never_started(api, event)


async def test_an_invalid_event_names_the_field_and_starts_nothing(api):
    event = api.departure(phone="555-0123")

    response = await api.send_departure(event)

    assert response.status_code == 422
    assert response.json()["detail"].startswith("client.phone: ")
    await assert_never_started(api, event)


async def test_a_body_that_is_not_json_is_a_bad_request(api):
    response = await api.http.post(
        "/v1/departures", content=b"{not json", headers={
            **bearer(CLINIC_KEY), "Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json() == {"detail": "body: not valid JSON"}


async def test_an_oversized_body_is_refused_whether_declared_or_streamed(api):
    event = api.departure()
    event["client"]["first_name"] = "D" * 70_000
    payload = json.dumps(event).encode()

    async def chunks():
        for start in range(0, len(payload), 8192):
            yield payload[start:start + 8192]

    declared = await api.send_departure(event)
    streamed = await api.http.post("/v1/departures", content=chunks(), headers={
        **bearer(CLINIC_KEY), "Content-Type": "application/json"})

    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json() == {"detail": "body: larger than the 65536-byte limit"}
    await assert_never_started(api, event)


async def test_a_followup_is_read_only_with_its_clinics_key(api):
    started = await api.send_departure(api.departure())
    status_url = started.json()["status_url"]

    others = await api.http.get(status_url, headers=bearer(OTHER_CLINIC_KEY))
    unknown = await api.http.get("/v1/followups/followup-clinic-42-s-nobody",
                                 headers=bearer(CLINIC_KEY))

    assert others.status_code == unknown.status_code == 404
    assert others.json()["detail"].startswith("workflow_id: clinic 'clinic-7' has no follow-up")
    assert "s-nobody" in unknown.json()["detail"]


async def test_staff_acknowledge_then_resolve_by_api_and_a_second_ack_is_refused(api):
    started = await api.send_departure(api.departure("imminent"))
    workflow_id = started.json()["workflow_id"]
    await api.until(lambda: api.sms.sent_to(ON_CALL_PHONE), "on-call paged")
    actions = f"/v1/followups/{workflow_id}"

    ack = await api.http.post(f"{actions}/acknowledge", json={"staff_id": "t-oncall"},
                              headers=bearer(CLINIC_KEY))
    again = await api.http.post(f"{actions}/acknowledge", json={"staff_id": "t-backup"},
                                headers=bearer(CLINIC_KEY))
    resolved = await api.http.post(
        f"{actions}/resolve", json={"staff_id": "t-oncall", "outcome": "reached_client"},
        headers=bearer(CLINIC_KEY))

    assert ack.status_code == 200
    assert ack.json()["message"] == "acknowledged by t-oncall"
    assert again.status_code == 409
    assert again.json() == {"detail": "already acknowledged by t-oncall"}
    assert resolved.status_code == 200
    assert resolved.json()["message"].startswith("resolved by t-oncall")
    status = await api.status(workflow_id)
    assert status.escalation.acknowledged_by == status.escalation.resolved_by == "t-oncall"


async def test_a_bad_action_body_names_the_field(api):
    started = await api.send_departure(api.departure())

    response = await api.http.post(
        f"/v1/followups/{started.json()['workflow_id']}/resolve",
        json={"staff_id": "t-oncall", "outcome": "fine"}, headers=bearer(CLINIC_KEY))

    assert response.status_code == 422
    assert response.json()["detail"].startswith("outcome: ")


async def test_a_reply_by_api_reaches_the_followup_and_cancel_closes_it(api):
    started = await api.send_departure(api.departure())
    workflow_id = started.json()["workflow_id"]
    await api.until_step(workflow_id, "checkin_sent")

    reply = await api.http.post(f"/v1/followups/{workflow_id}/reply", json={"text": "OK"},
                                headers=bearer(CLINIC_KEY))
    status = await api.until_step(workflow_id, "reply_received")
    cancelled = await api.http.post(
        f"/v1/followups/{workflow_id}/cancel",
        json={"staff_id": "t-oncall", "reason": "client came back"}, headers=bearer(CLINIC_KEY))
    await api.until_step(workflow_id, "closed")
    after_close = await api.http.post(
        f"/v1/followups/{workflow_id}/cancel",
        json={"staff_id": "t-oncall", "reason": "again"}, headers=bearer(CLINIC_KEY))

    assert reply.status_code == 202
    assert status.client_safe
    assert cancelled.status_code == 200
    assert after_close.status_code == 409
    assert "closed" in after_close.json()["detail"]


async def assert_never_started(api, event) -> None:
    workflow_id = followup_workflow_id("clinic-42", event["session_id"])
    response = await api.http.get(f"/v1/followups/{workflow_id}", headers=bearer(CLINIC_KEY))
    assert response.status_code == 404, "the event must not have reached Temporal"
    assert api.sms.messages == []


async def test_health_readiness_metrics_and_docs(api):
    await api.send_departure(api.departure())

    health = await api.http.get("/healthz")
    ready = await api.http.get("/readyz")
    metrics = await api.http.get("/metrics", headers=bearer(METRICS_TOKEN))
    unauthorised = await api.http.get("/metrics")
    with_a_clinic_key = await api.http.get("/metrics", headers=bearer(CLINIC_KEY))
    docs = await api.http.get("/docs")

    assert health.json() == {"status": "ok"}
    assert ready.json() == {"status": "ready"}
    assert 'aftercare_intake_events_total{kind="departure",outcome="started"}' in metrics.text
    assert 'route="/v1/departures"' in metrics.text
    assert "CLIENT_PHONE" not in metrics.text and "+1555" not in metrics.text
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert unauthorised.status_code == with_a_clinic_key.status_code == 401
    assert "aftercare_" not in unauthorised.text + with_a_clinic_key.text


async def test_not_ready_while_temporal_is_unreachable(api):
    from api.app import create_app

    settings = api.settings.model_copy(update={"temporal_address": "127.0.0.1:1"})
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        ready = await http.get("/readyz")
        departure = await http.post("/v1/departures", json=api.departure(),
                                    headers=bearer(CLINIC_KEY))

    assert ready.status_code == departure.status_code == 503
    assert ready.json()["detail"].startswith("temporal: unreachable at 127.0.0.1:1")


async def test_ids_that_collided_across_clinics_are_distinct_and_odd_ids_refused(api):
    """Clinic "a" session "b-c" and clinic "a-b" session "c" once shared an id, and the
    second clinic got 409 forever. An id that could break the scheme is refused."""
    assert followup_workflow_id("a", "b-c") == "followup-a-b-c"
    assert followup_workflow_id("a-b", "c") == "followup-a--b-c"
    assert followup_workflow_id("clinic-42", "s-1") == "followup-clinic--42-s-1"

    refused = {}
    for field, value in (("session_id", "-b-c"), ("clinic_id", "a/b"), ("session_id", "s 1"),
                         ("session_id", "s?x=1")):
        event = {**api.departure(), field: value}
        refused[value] = (await api.send_departure(event)).json()["detail"]

    assert all(detail.split(":")[0] in ("session_id", "clinic_id") for detail in refused.values())
    assert "may hold only letters, digits" in refused["-b-c"]
    assert api.sms.messages == []


async def test_a_repeat_finds_a_follow_up_started_under_the_old_id(api):
    """Follow-ups started before clinic ids' dashes were doubled keep their ids: a repeat
    of their event answers 200 with that id and starts no second follow-up."""
    event = api.departure()
    parsed = DepartureEvent.model_validate(event)
    legacy_id = legacy_followup_workflow_id("clinic-42", event["session_id"])
    policy = ClinicPolicy(clinic_id="clinic-42")
    await api.client.start_workflow(
        DepartureFollowUp.run, FollowUpInput(event=parsed, policy=policy), id=legacy_id,
        task_queue=api.settings.task_queue,
        memo={FINGERPRINT_MEMO: event_fingerprint(parsed)})

    repeat = await api.send_departure(event)

    async def readable() -> bool:
        answer = await api.http.get(f"/v1/followups/{legacy_id}", headers=bearer(CLINIC_KEY))
        return answer.status_code == 200

    assert (repeat.status_code, repeat.json()["workflow_id"]) == (200, legacy_id)
    await api.until(readable, "the follow-up under its old id reads from its stored view")
    new_id = followup_workflow_id("clinic-42", event["session_id"])
    assert (await api.client.count_workflows(f"WorkflowId = '{new_id}'")).count == 0
