"""What people read comes from the view each follow-up stores with its trail: with every
worker of these follow-ups stopped, the board, ``GET /v1/followups/{id}`` and
``starter.py status`` still show where each one stands, why staff were paged, and who."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from aftercare.followups.start import start_followup
from aftercare.settings import Settings
from tests.fixtures.api import CLINIC_KEY, OTHER_CLINIC_KEY, bearer
from tests.fixtures.console import ConsoleStack, console_policies, paged
from worker import running_worker
from workflows.models import DepartureEvent, Phase


async def start_on(console: ConsoleStack, settings: Settings, risk: str) -> str:
    event = DepartureEvent.model_validate(console.departure(risk))
    policies = console_policies(console.clinic, console.other_clinic)
    return (await start_followup(console.client, settings, policies, event)).workflow_id


async def escalated_then_workers_stopped(console: ConsoleStack) -> tuple[list[str], str]:
    """Two imminent follow-ups paging the on-call and one waiting for the client's reply,
    run by a worker of their own that then stops: none of them has a worker any more."""
    own_queue = console.settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4()}"})
    async with running_worker(console.client, own_queue):
        imminent = [await start_on(console, own_queue, "imminent") for _ in range(2)]
        waiting = await start_on(console, own_queue, "moderate")
        for workflow_id in imminent:
            await console.until_stored(workflow_id, paged, "the on-call is paged")
        await console.until_stored(waiting, lambda view: view.phase is Phase.AWAITING_REPLY,
                                   "waiting for the client's reply")
    return imminent, waiting


async def test_the_board_shows_phase_reason_and_who_is_paged_with_no_worker_running(
    console: ConsoleStack, page
) -> None:
    imminent, waiting = await escalated_then_workers_stopped(console)

    await console.sign_in_page(page)
    await page.goto(f"{console.url}/console")

    for workflow_id in imminent:
        card = page.locator(".followup", has_text=workflow_id)
        assert await card.locator(".phase").inner_text() == "paging staff"
        assert await card.locator(".reason").inner_text() == "imminent risk"
        assert await card.locator(".paged").inner_text() == "t-oncall"
        assert (await card.locator(".escalated").inner_text()).endswith(" min ago")
    card = page.locator(".followup", has_text=waiting)
    assert await card.locator(".phase").inner_text() == "waiting for the client's reply"
    assert not await card.locator(".reason").count()
    # An escalation nobody has taken comes first.
    assert await page.locator(".followup .title").first.inner_text() in imminent
    assert "Dana" not in await page.content()


async def test_the_api_and_the_cli_read_a_followup_with_no_worker_running(
    console: ConsoleStack,
) -> None:
    (escalated, _), _ = await escalated_then_workers_stopped(console)

    answer = await console.http.get(f"/v1/followups/{escalated}", headers=bearer(CLINIC_KEY))
    assert answer.status_code == 200, answer.text
    followup = answer.json()
    assert followup["phase"] == "escalating"
    assert followup["escalation"]["reason"] == "imminent risk"
    assert [p["target"] for p in followup["escalation"]["paged"]][:1] == ["t-oncall"]
    assert "escalation_started" in [entry["step"] for entry in followup["trail"]]
    assert followup["updated_at"]

    settings = console.settings
    environment = {
        **os.environ,
        "AFTERCARE_TEMPORAL_ADDRESS": settings.temporal_address,
        "AFTERCARE_AUDIT_DATABASE_URL": settings.audit_database_url,
        "AFTERCARE_ENCRYPTION_KEYS": ",".join(f"{k}:{v}"
                                              for k, v in settings.encryption_keys.items()),
    }
    shown = subprocess.run([sys.executable, "starter.py", "status", escalated], env=environment,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == followup


async def test_a_followup_no_worker_has_picked_up_is_being_set_up_and_an_unknown_one_not_found(
    console: ConsoleStack,
) -> None:
    nobody_polls = console.settings.model_copy(update={"task_queue": f"tq-{uuid.uuid4()}"})
    unseen = await start_on(console, nobody_polls, "high")

    answer = await console.http.get(f"/v1/followups/{unseen}", headers=bearer(CLINIC_KEY))
    assert answer.status_code == 404
    assert "is being set up" in answer.json()["detail"]
    assert answer.headers["retry-after"] == "1"

    unknown = unseen + "x"
    answer = await console.http.get(f"/v1/followups/{unknown}", headers=bearer(CLINIC_KEY))
    assert answer.status_code == 404
    assert "has no follow-up" in answer.json()["detail"]


async def test_a_reply_for_review_is_stored_sealed_and_read_back_only_by_its_clinic(
    console: ConsoleStack,
) -> None:
    started = await console.send_departure(console.departure("moderate"))
    workflow_id = started.json()["workflow_id"]
    await console.until_stored(workflow_id, lambda view: view.phase is Phase.AWAITING_REPLY,
                               "waiting for the client's reply")
    words = "not sure how I feel tbh"
    await console.http.post(f"/v1/followups/{workflow_id}/reply", json={"text": words},
                            headers=bearer(CLINIC_KEY))
    await console.until_stored(workflow_id, lambda view: view.escalation is not None,
                               "on-call asked to read the reply")

    stored = await console.store.view(workflow_id)
    assert words not in stored.view.model_dump_json()
    assert words.encode() not in (stored.sealed_reply or b"")
    answer = await console.http.get(f"/v1/followups/{workflow_id}", headers=bearer(CLINIC_KEY))
    assert answer.json()["reply_for_review"] == words
    answer = await console.http.get(f"/v1/followups/{workflow_id}",
                                    headers=bearer(OTHER_CLINIC_KEY))
    assert answer.status_code == 404 and words not in answer.text
