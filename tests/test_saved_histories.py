"""Every history saved in tests/histories still replays against today's workflow code and
rebuilds the trail it closed with (a run that handed on: the trail it carried): a change
that would break running follow-ups, or make their stored trails unverifiable, fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from aftercare.settings import Settings, parse_key_list
from aftercare.temporal.codec import data_converter
from aftercare.trail.replay import read_history_file, replay_and_compare
from tests.fixtures.temporal import TEST_ONLY_KEY
from workflows.followup import DepartureFollowUp
from workflows.models import FollowUpInput, FollowUpOutcome, legacy_followup_workflow_id

SAVED = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_saved_histories_to_replay():
    assert SAVED, "tests/histories holds no history: run python -m tests.histories.record"


@pytest.mark.parametrize("path", SAVED, ids=[path.stem for path in SAVED])
async def test_saved_history_replays_to_the_trail_it_closed_with(path):
    keys = parse_key_list(TEST_ONLY_KEY.read_text().strip())
    converter = data_converter(Settings(encryption_keys=keys))
    history = read_history_file(path)
    started = history.events[0].workflow_execution_started_event_attributes
    (given,) = await converter.decode(started.input.payloads, [FollowUpInput])
    last = history.events[-1]
    if last.HasField("workflow_execution_continued_as_new_event_attributes"):
        # A run that handed on: its trail is the one it carried to the next run.
        (handed_on,) = await converter.decode(
            last.workflow_execution_continued_as_new_event_attributes.input.payloads,
            [FollowUpInput])
        recorded_trail = handed_on.carried_over.trail
    else:
        (recorded,) = await converter.decode(
            last.workflow_execution_completed_event_attributes.result.payloads,
            [FollowUpOutcome])
        recorded_trail = recorded.trail
    # Histories recorded before clinic ids' dashes were doubled keep their ids.
    assert history.workflow_id in (given.event.workflow_id, legacy_followup_workflow_id(
        given.event.clinic_id, given.event.session_id))

    report = await replay_and_compare(history, recorded_trail, converter, [DepartureFollowUp])

    assert report.discrepancies == []
    assert report.replayed_entries == len(recorded_trail)
