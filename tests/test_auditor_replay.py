"""``aftercare-auditor replay`` on real follow-ups: a history exported with the real
``temporal`` CLI or fetched from the server, replayed against today's code and the store."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import pwd
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

import auditor
from aftercare.followups import actions
from aftercare.settings import Settings
from tests.changed_followup import CheckInWithoutDelay
from tests.fixtures.databases import tamper_with
from tests.fixtures.followups import closed_followup
from tests.fixtures.temporal import temporal_workflow_show
from tests.followup_harness import FollowUpHarness, make_event
from tests.test_caring_contacts import through_message, unbooked_followup_then_series
from workflows.followup import DepartureFollowUp
from workflows.models import Cancel, ClientReply, Phase


def server_address(followups: FollowUpHarness) -> str:
    return followups.client.service_client.config.target_host


async def export_history(followups: FollowUpHarness, workflow_id: str, path: Path) -> Path:
    code, out = await temporal_workflow_show(server_address(followups), workflow_id)
    assert code == 0, out
    path.write_text(out)
    return path


async def replay(
    followups: FollowUpHarness, *argv: str, settings: Settings | None = None
) -> tuple[int, str]:
    out = io.StringIO()
    code = await auditor.run(
        ["--database-url", followups.store.url, "replay", *argv],
        out=out,
        settings=settings or followups.settings.model_copy(
            update={"temporal_address": server_address(followups)}),
    )
    return code, out.getvalue()


async def test_exported_history_of_a_closed_follow_up_replays_verified(followups, tmp_path):
    handle = await closed_followup(followups)
    exported = await export_history(followups, handle.id, tmp_path / "history.json")

    code, out = await replay(followups, "--history", str(exported))

    stored = await followups.store.entries(handle.id)
    assert (code, out) == (
        0, f"{handle.id}: verified ({len(stored)} entries replayed, matching the stored chain)\n")
    (access,) = await followups.store.access_records()
    assert (access.actor, access.action, access.target) == (
        f"os:{pwd.getpwuid(os.getuid()).pw_name}", "replay", f"history file {exported}")


async def test_history_fetched_from_temporal_replays_verified(followups):
    handle = await closed_followup(followups)

    code, out = await replay(followups, "--workflow", handle.id)

    assert code == 0
    assert out.startswith(f"{handle.id}: verified (")


async def test_code_that_changes_a_decision_is_reported_as_nondeterministic(
    followups, tmp_path, monkeypatch
):
    handle = await closed_followup(followups)
    exported = await export_history(followups, handle.id, tmp_path / "history.json")
    monkeypatch.setattr(auditor, "REPLAYED_WORKFLOWS", (CheckInWithoutDelay,))

    code, out = await replay(followups, "--history", str(exported))

    assert code == 1
    assert out.startswith(f"{handle.id}: nondeterminism: today's workflow code does not match")
    assert "verified" not in out


@pytest.mark.parametrize(
    ("tampering", "found"),
    [
        (
            "UPDATE audit_entries SET outcome = 'no reply' WHERE workflow_id = :w AND seq = 3",
            ["stored chain broken at entry 3: entry 3 was edited: its hash no longer matches",
             "entry 3 (checkin_sent) was altered: stored outcome differs from the history"],
        ),
        (
            "DELETE FROM audit_entries WHERE workflow_id = :w AND seq = 4",
            ["stored chain broken at entry 4: entry 4 is missing (found seq 5)",
             "entry 4 (reply_received) is in the history but not stored"],
        ),
    ],
    ids=["altered", "deleted"],
)
async def test_a_tampered_stored_trail_is_named_against_the_replay(
    followups, tmp_path, tampering, found
):
    handle = await closed_followup(followups)
    exported = await export_history(followups, handle.id, tmp_path / "history.json")
    await tamper_with(followups.store.url, handle.id, tampering)

    code, out = await replay(followups, "--history", str(exported))

    assert code == 1
    assert out.splitlines() == [f"{handle.id}: {line}" for line in found]


async def test_a_history_written_under_an_old_key_replays_after_rotation(
    followups, tmp_path, encryption_keys, capsys
):
    handle = await closed_followup(followups)
    exported = await export_history(followups, handle.id, tmp_path / "history.json")
    new_key = base64.b64encode(os.urandom(32)).decode()
    rotated = followups.settings.model_copy(
        update={"encryption_keys": {"rotated-in": new_key, **encryption_keys}})
    retired = followups.settings.model_copy(update={"encryption_keys": {"rotated-in": new_key}})

    assert (await replay(followups, "--history", str(exported), settings=rotated))[0] == 0
    code, out = await replay(followups, "--history", str(exported), settings=retired)
    assert (code, out) == (2, "")
    assert "encrypted with key histories-test-only, which is not" in capsys.readouterr().err


async def test_a_follow_up_temporal_no_longer_has_is_refused(followups, capsys):
    code, out = await replay(followups, "--workflow", "followup-clinic-42-s-gone")

    assert (code, out) == (1, "")
    assert "Temporal has no history for followup-clinic-42-s-gone" in capsys.readouterr().err


async def test_the_command_replays_in_a_process_of_its_own(followups, tmp_path, encryption_keys):
    """As an auditor runs it: a fresh interpreter, so the workflow sandbox imports the
    workflow's dependencies from scratch instead of finding the worker's already loaded."""
    handle = await closed_followup(followups)
    exported = await export_history(followups, handle.id, tmp_path / "history.json")
    keys = ",".join(f"{key_id}:{key}" for key_id, key in encryption_keys.items())
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "auditor", "--database-url", followups.store.url,
        "replay", "--history", str(exported),
        cwd=Path(auditor.__file__).parent, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "AFTERCARE_ENCRYPTION_KEYS": keys},
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)

    assert (process.returncode, out.decode()) == (
        0, f"{handle.id}: verified ({len(await followups.store.entries(handle.id))} entries "
        "replayed, matching the stored chain)\n")


async def listening_followup(followups: FollowUpHarness):
    """A follow-up the client answered "OK", past its reschedule offer: the protocol is done
    and it listens for days, still running."""
    handle = await followups.start(make_event())
    await followups.advance(handle, timedelta(minutes=10))
    await followups.until_step(handle, "checkin_sent")
    await handle.signal(DepartureFollowUp.client_reply, ClientReply(text="OK", channel="sms"))
    await followups.until_step(handle, "reply_received")
    await followups.advance(handle, timedelta(hours=2))
    await followups.until(handle, lambda s: s.phase is Phase.LISTENING and not s.audit_backlog,
                          "listening, its trail stored")
    return handle


async def test_a_listening_follow_up_is_verified_so_far(followups, tmp_path):
    handle = await listening_followup(followups)
    exported = await export_history(followups, handle.id, tmp_path / "history.json")

    code, out = await replay(followups, "--history", str(exported))

    stored = await followups.store.entries(handle.id)
    assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
    assert (code, out) == (0, (
        f"{handle.id}: verified so far (open): {len(stored)} entries replayed, the stored chain "
        "matching them as far as it goes; 0 in the backlog (sealed in the history, not yet "
        "stored)\n"))


async def test_an_entry_missing_from_the_store_of_a_listening_follow_up_is_backlog(
    followups, tmp_path
):
    handle = await listening_followup(followups)
    exported = await export_history(followups, handle.id, tmp_path / "history.json")
    last = len(await followups.store.entries(handle.id))
    await tamper_with(followups.store.url, handle.id,
                      f"DELETE FROM audit_entries WHERE workflow_id = :w AND seq = {last}")

    code, out = await replay(followups, "--history", str(exported))

    assert code == 0
    assert out.endswith("; 1 in the backlog (sealed in the history, not yet stored)\n")


async def test_an_edited_entry_of_a_listening_follow_up_is_named(followups, tmp_path):
    handle = await listening_followup(followups)
    exported = await export_history(followups, handle.id, tmp_path / "history.json")
    await tamper_with(followups.store.url, handle.id,
                      "UPDATE audit_entries SET outcome = 'no reply' WHERE workflow_id = :w "
                      "AND seq = 3")

    code, out = await replay(followups, "--history", str(exported))

    assert code == 1
    assert out.splitlines() == [
        f"{handle.id}: stored chain broken at entry 3: entry 3 was edited: its hash no "
        "longer matches",
        f"{handle.id}: entry 3 (checkin_sent) was altered: stored outcome differs from the "
        "history",
    ]


async def test_an_escalating_follow_up_is_verified_so_far(followups, tmp_path):
    handle = await followups.start(make_event("high"))
    await followups.advance(handle, timedelta(minutes=40))
    await followups.until(handle, lambda s: s.escalation is not None and s.escalation.paged
                          and not s.audit_backlog, "paging, its trail stored")
    exported = await export_history(followups, handle.id, tmp_path / "history.json")

    code, out = await replay(followups, "--history", str(exported))

    assert code == 0, out
    assert out.startswith(f"{handle.id}: verified so far (open): ")


async def series_between_messages(followups: FollowUpHarness) -> WorkflowHandle:
    """A Caring Contacts series two messages in, waiting for its third, its trail stored."""
    _, series = await unbooked_followup_then_series(followups)
    await through_message(followups, series, 2)
    await followups.until(series, lambda s: not s.audit_backlog, "its trail stored")
    return series


async def test_a_running_caring_contacts_series_is_verified_so_far_and_an_edited_entry_named(
    followups, tmp_path
):
    series = await series_between_messages(followups)
    exported = await export_history(followups, series.id, tmp_path / "series.json")
    stored = await followups.store.entries(series.id)
    assert [e.step for e in stored].count("caring_contact_sent") == 1

    code, out = await replay(followups, "--history", str(exported))

    assert (await series.describe()).status is WorkflowExecutionStatus.RUNNING
    assert (code, out) == (0, (
        f"{series.id}: verified so far (open): {len(stored)} entries replayed, the stored chain "
        "matching them as far as it goes; 0 in the backlog (sealed in the history, not yet "
        "stored)\n"))

    (first_message,) = [e for e in stored if e.step == "caring_first_sent"]
    await tamper_with(followups.store.url, series.id,
                      "UPDATE audit_entries SET channel = 'email' WHERE workflow_id = :w "
                      f"AND seq = {first_message.seq}")

    code, out = await replay(followups, "--history", str(exported))

    n = first_message.seq
    assert code == 1
    assert out.splitlines() == [
        f"{series.id}: stored chain broken at entry {n}: entry {n} was edited: its hash no "
        "longer matches",
        f"{series.id}: entry {n} (caring_first_sent) was altered: stored channel differs from "
        "the history",
    ]
    await actions.stop_caring_contacts(followups.client, series.id,
                                       Cancel(staff_id="t-lead", reason="end of test"))
    await series.result()


async def test_a_finished_caring_contacts_series_last_run_replays_verified(followups, tmp_path):
    """The series continues as new every few messages; the exported history is its last run,
    which carries the whole trail and returns it as the outcome."""
    _, series = await unbooked_followup_then_series(followups)
    outcome = await followups.finish(series, timeout=180)
    assert outcome.trail[-1].step == "closed"
    exported = await export_history(followups, series.id, tmp_path / "series.json")

    code, out = await replay(followups, "--history", str(exported))

    stored = await followups.store.entries(series.id)
    assert stored == outcome.trail
    assert (code, out) == (
        0, f"{series.id}: verified ({len(stored)} entries replayed, matching the stored chain)\n")
