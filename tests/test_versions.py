"""Version 2 of the follow-up builds in every patch made since version 1: a follow-up the
intake starts now records no patch marker. One started before version 2 (its input has no
version) asks each patch as it did, so follow-ups running when version 2 ships replay, and
act, the way they ran; the saved histories in ``tests/histories/`` hold both kinds."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from aftercare.followups import start
from tests.fixtures.followups import closed_followup
from tests.followup_harness import FollowUpHarness, make_event
from workflows.models import FollowUpInput
from workflows.versions import (
    BEFORE_VERSION_2,
    CURRENT,
    TRAIL_RIDES_SENDS,
    WITHDRAWN_SEND_SETTLES,
)


async def patch_markers(handle: WorkflowHandle) -> list[str]:
    history = await handle.fetch_history()
    return [json.loads(marker.details["patch-data"].payloads[0].data)["id"]
            for event in history.events
            if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            and (marker := event.marker_recorded_event_attributes).marker_name == "core_patch"]


async def steps(handle: WorkflowHandle) -> list[str]:
    return [entry.step for entry in (await handle.result()).trail]


async def started_with_version(followups: FollowUpHarness, handle: WorkflowHandle) -> int:
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    (input,) = await followups.client.data_converter.decode(started.input.payloads,
                                                            [FollowUpInput])
    return input.version


async def test_a_follow_up_started_before_version_2_asks_its_patches_and_acts_the_same(
    followups: FollowUpHarness, monkeypatch,
):
    now = await closed_followup(followups)
    assert await patch_markers(now) == [], "version 2 has every patch built in"

    monkeypatch.setattr(start, "CURRENT", BEFORE_VERSION_2)  # an earlier release's intake
    before = await closed_followup(followups)
    assert await started_with_version(followups, before) == BEFORE_VERSION_2
    assert set(await patch_markers(before)) == {TRAIL_RIDES_SENDS, WITHDRAWN_SEND_SETTLES}
    assert await steps(before) == await steps(now), "the same protocol, step for step"


def test_an_input_without_a_version_is_a_run_from_before_version_2():
    """What an earlier release's intake or hand-on wrote has no version field."""
    written = FollowUpInput.model_validate_json(json.dumps({
        "event": make_event().model_dump(mode="json"), "policy": {"clinic_id": "clinic-1"}}))
    assert written.version == BEFORE_VERSION_2


def test_an_input_from_a_version_this_code_does_not_know_is_refused_by_name():
    """A newer release's run on an older worker: a clear error, not a wrong way taken."""
    with pytest.raises(ValidationError, match="version"):
        FollowUpInput.model_validate({"event": make_event().model_dump(mode="json"),
                                      "policy": {"clinic_id": "clinic-1"},
                                      "version": CURRENT + 1})
