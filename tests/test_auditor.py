import asyncio
import csv
import io
import json
import os
import pwd
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import auditor
from aftercare.settings import Settings
from tests.fixtures.databases import tamper_with
from tests.fixtures.sinks import AUDIT_SIGNING_KEYS
from tests.trails import STARTED, new_workflow_id, sealed_trail
from workflows.models import AuditEntry
from workflows.trail import seal

REPO = Path(auditor.__file__).parent


AUDITOR_SETTINGS = Settings(audit_signing_keys=AUDIT_SIGNING_KEYS)
OS_ACCOUNT = f"os:{pwd.getpwuid(os.getuid()).pw_name}"


async def audit(store, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await auditor.run(["--database-url", store.url, *argv], out=out,
                             settings=AUDITOR_SETTINGS)
    return code, out.getvalue()


@pytest.fixture
async def stored_trail(sqlite_store) -> list[AuditEntry]:
    trail = sealed_trail(new_workflow_id())
    await sqlite_store.append(trail)
    return trail


async def test_jsonl_export_is_one_parseable_entry_per_line(sqlite_store, stored_trail):
    code, out = await audit(sqlite_store, "export", "--workflow", stored_trail[0].workflow_id)

    assert code == 0
    assert [AuditEntry.model_validate_json(line) for line in out.splitlines()] == stored_trail


async def test_csv_export_parses_with_the_csv_module(sqlite_store, stored_trail):
    workflow_id = stored_trail[0].workflow_id

    code, out = await audit(sqlite_store, "export", "--workflow", workflow_id, "--format", "csv")

    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert [(row["workflow_id"], row["seq"], row["step"]) for row in rows] == [
        (workflow_id, str(entry.seq), entry.step) for entry in stored_trail
    ]
    assert json.loads(rows[4]["detail"]) == stored_trail[4].detail
    assert [row["hash"] for row in rows] == [entry.hash for entry in stored_trail]


async def test_a_csv_cell_starting_like_a_formula_is_escaped(sqlite_store):
    workflow_id = new_workflow_id()
    trail = sealed_trail(workflow_id, length=1)
    formula = seal(workflow_id=workflow_id, seq=2, at=STARTED + timedelta(minutes=1),
                   prev_hash=trail[0].hash, step="booking_confirmed",
                   outcome='=HYPERLINK("https://evil.example","open")',
                   provider_message_id="+1555 is not a number", detail={"note": "@SUM(A1)"})
    await sqlite_store.append([*trail, formula])

    code, out = await audit(sqlite_store, "export", "--workflow", workflow_id, "--format", "csv")

    row = list(csv.DictReader(io.StringIO(out)))[1]
    assert code == 0
    assert row["outcome"] == """'=HYPERLINK("https://evil.example","open")"""
    assert row["provider_message_id"] == "'+1555 is not a number"
    assert row["detail"] == '{"note": "@SUM(A1)"}', "a JSON cell starts with { and stays exact"
    assert row["step"] == "booking_confirmed"


async def test_exports_withhold_a_staff_cancel_reason_but_a_verification_export_keeps_it(
    sqlite_store,
):
    workflow_id = new_workflow_id()
    trail = sealed_trail(workflow_id, length=1)
    reason = "client is at her sister's place on Elm St"
    cancelled = seal(workflow_id=workflow_id, seq=2, at=STARTED, prev_hash=trail[0].hash,
                     step="cancelled", actor="staff", outcome=reason)
    closed = seal(workflow_id=workflow_id, seq=3, at=STARTED, prev_hash=cancelled.hash,
                  step="closed", outcome=f"cancelled: {reason}")
    await sqlite_store.append([*trail, cancelled, closed])

    outputs = {fmt: (await audit(sqlite_store, "export", "--workflow", workflow_id, "--format",
                                 fmt))[1] for fmt in ("jsonl", "csv", "fhir")}
    _, exact = await audit(sqlite_store, "export", "--workflow", workflow_id,
                           "--for-verification")

    assert all("Elm St" not in text for text in outputs.values())
    withheld = [AuditEntry.model_validate_json(line) for line in outputs["jsonl"].splitlines()]
    assert [e.outcome for e in withheld[1:]] == [
        "[staff text withheld]", "cancelled: [staff text withheld]"]
    assert reason in exact
    assert [AuditEntry.model_validate_json(line) for line in exact.splitlines()
            if "checkpoint" not in json.loads(line)] == [*trail, cancelled, closed]


async def test_fhir_export_is_a_bundle_of_complete_audit_events(sqlite_store, stored_trail):
    workflow_id = stored_trail[0].workflow_id

    code, out = await audit(sqlite_store, "export", "--workflow", workflow_id, "--format", "fhir")

    bundle = json.loads(out)
    events = [item["resource"] for item in bundle["entry"]]
    assert code == 0
    assert bundle["resourceType"] == "Bundle"
    assert len(events) == len(stored_trail)
    for event, entry in zip(events, stored_trail, strict=True):
        assert event["resourceType"] == "AuditEvent"
        assert event["type"]["code"]
        assert event["subtype"][0]["code"] == entry.step
        assert event["recorded"] == entry.at.isoformat()
        assert event["agent"] and all("requestor" in agent for agent in event["agent"])
        assert event["source"]["observer"]
        assert event["entity"][0]["what"]["identifier"]["value"] == workflow_id
    details = {d["type"]: d["valueString"] for d in events[4]["entity"][0]["detail"]}
    assert details["hash"] == stored_trail[4].hash
    assert details["detail.basis"] == "client consent"


async def test_period_export_keeps_to_the_period_and_clinic(sqlite_store):
    ours, theirs = new_workflow_id("clinic-7"), new_workflow_id("clinic-8")
    await sqlite_store.append(sealed_trail(ours))
    await sqlite_store.append(sealed_trail(theirs))
    next_day = STARTED + timedelta(days=1)
    await sqlite_store.append(sealed_trail(new_workflow_id("clinic-7"), started=next_day))

    code, out = await audit(
        sqlite_store, "export", "--from", "2026-11-21", "--to", "2026-11-21", "--clinic", "clinic-7"
    )

    exported = [AuditEntry.model_validate_json(line) for line in out.splitlines()]
    assert code == 0
    assert {entry.workflow_id for entry in exported} == {ours}
    assert len(exported) == len(sealed_trail(ours))


async def test_clinic_export_is_an_exact_match(sqlite_store):
    """``--clinic riverside`` once returned riverside-east's trails too."""
    trails = {clinic: new_workflow_id(clinic)
              for clinic in ("riverside", "riverside-east", "riverside_", "riverside-e")}
    for workflow_id in trails.values():
        await sqlite_store.append(sealed_trail(workflow_id))

    for clinic, workflow_id in trails.items():
        code, out = await audit(sqlite_store, "export", "--from", "2026-11-21", "--to",
                                "2026-11-21", "--clinic", clinic)
        exported = {AuditEntry.model_validate_json(line).workflow_id for line in out.splitlines()}
        assert (code, exported) == (0, {workflow_id}), clinic


async def test_exporting_an_unknown_follow_up_says_so_and_fails(sqlite_store, capsys):
    code, out = await audit(sqlite_store, "export", "--workflow", "followup-clinic-1-nope")

    assert code == 1
    assert out == ""
    assert "no audit trail stored for followup-clinic-1-nope" in capsys.readouterr().err


async def test_a_period_needs_both_ends(sqlite_store, capsys):
    with pytest.raises(SystemExit) as usage:
        await audit(sqlite_store, "export", "--from", "2026-11-21")

    assert usage.value.code == 2
    assert "--from needs --to" in capsys.readouterr().err


async def test_verify_reports_an_intact_chain_as_verified(sqlite_store, stored_trail):
    workflow_id = stored_trail[0].workflow_id

    code, out = await audit(sqlite_store, "verify", "--workflow", workflow_id)

    assert (code, out) == (0, f"{workflow_id}: verified (5 entries; no close recorded: still "
                              "running, or its close is missing)\n")


async def test_verify_all_names_the_broken_chain_and_its_first_bad_link(sqlite_store, stored_trail):
    tampered = new_workflow_id()
    await sqlite_store.append(sealed_trail(tampered))
    await tamper_with(
        sqlite_store.url,
        tampered,
        "UPDATE audit_entries SET step = 'nothing_happened' WHERE workflow_id = :w AND seq = 4",
    )

    code, out = await audit(sqlite_store, "verify", "--all")

    assert code == 1
    assert f"{stored_trail[0].workflow_id}: verified (5 entries;" in out
    assert f"{tampered}: broken at entry 4: entry 4 was edited" in out
    assert out.endswith("1 of 2 chains verified\n")


async def test_verify_of_a_follow_up_without_a_trail_fails(sqlite_store):
    code, out = await audit(sqlite_store, "verify", "--workflow", "followup-clinic-1-nope")

    assert (code, out) == (1, "followup-clinic-1-nope: no audit trail stored\n")


async def test_every_use_is_in_the_access_log_under_an_identity_not_self_asserted(
    sqlite_store, stored_trail, monkeypatch, capsys
):
    workflow_id = stored_trail[0].workflow_id
    monkeypatch.setenv("USER", "someone-else")

    await audit(sqlite_store, "export", "--workflow", workflow_id, "--format", "csv")
    await audit(sqlite_store, "verify", "--all")
    with pytest.raises(SystemExit):
        await audit(sqlite_store, "--auditor", "someone-else", "verify", "--all")

    records = await sqlite_store.access_records()
    assert [(r.actor, r.action, r.target) for r in records] == [
        (OS_ACCOUNT, "export", f"workflow {workflow_id} as csv"),
        (OS_ACCOUNT, "verify", "all chains"),
    ]
    assert "invalid choice: 'someone-else'" in capsys.readouterr().err, "no --auditor to claim"
    assert all(r.at.tzinfo is not None for r in records)


async def test_the_command_line_exits_1_once_an_entry_is_deleted(sqlite_store, stored_trail):
    workflow_id = stored_trail[0].workflow_id

    async def verify_all() -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "auditor", "--database-url", sqlite_store.url, "verify", "--all",
            cwd=REPO, stdout=asyncio.subprocess.PIPE, env={
                **os.environ, "AFTERCARE_AUDIT_SIGNING_KEYS": "test-1:" + AUDIT_SIGNING_KEYS[
                    "test-1"]},
        )
        out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        return process.returncode, out.decode()

    assert await verify_all() == (
        0,
        f"{workflow_id}: verified (5 entries; no close recorded: still running, or its close "
        "is missing)\n1 of 1 chains verified\n",
    )
    await tamper_with(
        sqlite_store.url,
        workflow_id,
        "DELETE FROM audit_entries WHERE workflow_id = :w AND seq = 2",
    )
    code, out = await verify_all()
    assert code == 1
    assert f"{workflow_id}: broken at entry 2: entry 2 is missing (found seq 3)" in out


async def test_disclosures_lists_an_emergency_contact_notice_in_every_format(sqlite_store):
    ours, theirs = new_workflow_id("riverside"), new_workflow_id("riverside-east")
    await sqlite_store.append(sealed_trail(ours))
    await sqlite_store.append(sealed_trail(theirs))
    period = ["--from", "2026-11-21", "--to", "2026-11-21", "--clinic", "riverside"]

    code, text = await audit(sqlite_store, "disclosures", *period)
    _, as_csv = await audit(sqlite_store, "disclosures", *period, "--format", "csv")
    _, as_jsonl = await audit(sqlite_store, "disclosures", *period, "--format", "jsonl")
    _, next_day = await audit(sqlite_store, "disclosures", "--from", "2026-11-22", "--to",
                              "2026-11-22")

    assert code == 0
    assert text == (f"2026-11-21T14:51:00+00:00  {ours}  to emergency_contact  why: no_reply  "
                    "basis: client consent  (entry 5)\n1 disclosure\n")
    [row] = list(csv.DictReader(io.StringIO(as_csv)))
    assert (row["workflow_id"], row["to_whom"], row["why"], row["basis"], row["audit_seq"]) == (
        ours, "emergency_contact", "no_reply", "client consent", "5")
    assert [json.loads(line)["workflow_id"] for line in as_jsonl.splitlines()] == [ours]
    assert next_day == "0 disclosures\n"
    [*_, record] = await sqlite_store.access_records()
    assert (record.action, record.target) == (
        "disclosures", "disclosures 2026-11-22T00:00:00+00:00..2026-11-23T00:00:00+00:00 as text")
