"""``verify`` against a chain rewritten with plain SQL, and the independent verifier script
(scripts/verify_trail.py) agreeing with it on real exported trails."""

from __future__ import annotations

import asyncio
import io
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

import auditor
from aftercare.settings import Settings
from aftercare.trail.schema import audit_entries
from tests.fixtures.databases import tamper_with
from tests.fixtures.followups import closed_followup
from tests.fixtures.sinks import AUDIT_SIGNING_KEYS
from tests.trails import STARTED, new_workflow_id, sealed_trail
from workflows.models import AuditEntry
from workflows.trail import seal

REPO = Path(auditor.__file__).parent
SETTINGS = Settings(audit_signing_keys=AUDIT_SIGNING_KEYS)
OPEN = "no close recorded: still running, or its close is missing"


def closed_trail(workflow_id: str) -> list[AuditEntry]:
    """Five steps and the close: written as three batches, so three checkpoints (3, 5, 6)."""
    trail = sealed_trail(workflow_id)
    return [*trail, seal(workflow_id=workflow_id, seq=6, at=STARTED + timedelta(minutes=5),
                         prev_hash=trail[-1].hash, step="closed", outcome="escalation resolved")]


async def stored_closed_trail(store) -> tuple[str, list[AuditEntry]]:
    workflow_id = new_workflow_id()
    trail = closed_trail(workflow_id)
    for batch in (trail[:3], trail[3:5], trail[5:]):
        await store.append(batch)
    return workflow_id, trail


async def verify(store, workflow_id: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await auditor.run(["--database-url", store.url, "verify", "--workflow", workflow_id],
                             out=out, settings=SETTINGS)
    return code, out.getvalue()


async def insert_rows(url: str, entries: list[AuditEntry]) -> None:
    """Insert entries as someone with database access could (INSERT is not refused)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for entry in entries:
                await conn.execute(audit_entries.insert().values(entry.model_dump()))
    finally:
        await engine.dispose()


def resealed_from(trail: list[AuditEntry], seq: int, **changes: str) -> list[AuditEntry]:
    """The trail from ``seq`` on, with entry ``seq`` changed and every later hash redone."""
    rewritten = []
    prev_hash = trail[seq - 2].hash
    for entry in trail[seq - 1:]:
        fields = entry.model_dump(exclude={"hash", "prev_hash"})
        if entry.seq == seq:
            fields.update(changes)
        entry = seal(**{**fields, "prev_hash": prev_hash})
        rewritten.append(entry)
        prev_hash = entry.hash
    return rewritten


async def test_an_intact_closed_chain_verifies_as_closed(audit_store):
    workflow_id, _ = await stored_closed_trail(audit_store)

    assert await verify(audit_store, workflow_id) == (
        0, f"{workflow_id}: verified (6 entries, closed)\n")
    assert [c.seq for c in await audit_store.checkpoints(workflow_id)] == [3, 5, 6]
    assert (await audit_store.checkpoints(workflow_id))[-1].closed


async def test_verify_names_a_truncation_and_the_missing_close(audit_store):
    """Deleting the last entries (the close among them) left a chain that verified."""
    workflow_id, _ = await stored_closed_trail(audit_store)
    await tamper_with(audit_store.url, workflow_id,
                      "DELETE FROM audit_entries WHERE workflow_id = :w AND seq >= 5")

    assert await verify(audit_store, workflow_id) == (1, (
        f"{workflow_id}: truncated after entry 4: a signed checkpoint vouches for entries up "
        "to the close (entry 6)\n"))


async def test_verify_names_a_resealed_chain_and_where_the_rewrite_starts(audit_store):
    """Rewriting entry 4 and recomputing every later hash left a chain that verified."""
    workflow_id, trail = await stored_closed_trail(audit_store)
    await tamper_with(audit_store.url, workflow_id,
                      "DELETE FROM audit_entries WHERE workflow_id = :w AND seq >= 4")
    await insert_rows(audit_store.url, resealed_from(trail, 4, outcome="nobody was paged"))

    assert await verify(audit_store, workflow_id) == (1, (
        f"{workflow_id}: re-sealed: entry 5 is not the entry signed for it; the rewrite "
        "starts after entry 3 and at or before entry 5\n"))


async def test_verify_names_entries_after_the_close_and_unsigned_ones(audit_store):
    workflow_id, trail = await stored_closed_trail(audit_store)
    after_close = seal(workflow_id=workflow_id, seq=7, at=STARTED + timedelta(minutes=9),
                       prev_hash=trail[-1].hash, step="emergency_contact_notified")
    await insert_rows(audit_store.url, [after_close])

    code, out = await verify(audit_store, workflow_id)

    assert (code, out.splitlines()) == (1, [
        f"{workflow_id}: entry 7 follows the close at entry 6: a closed chain ends there, "
        "or is reopened",
        f"{workflow_id}: entries 7 to 7 are not covered by a signed checkpoint: the service "
        "did not write them",
    ])


async def test_verify_names_a_forged_checkpoint_and_an_open_chain_without_close(audit_store):
    workflow_id = new_workflow_id()
    await audit_store.append(sealed_trail(workflow_id))
    assert await verify(audit_store, workflow_id) == (0, f"{workflow_id}: verified (5 entries; "
                                                         f"{OPEN})\n")
    await tamper_with(audit_store.url, workflow_id,
                      "UPDATE audit_checkpoints SET closed = true WHERE workflow_id = :w")

    assert await verify(audit_store, workflow_id) == (1, (
        f"{workflow_id}: checkpoint at entry 5 does not hold: its signature was forged or its "
        "fields altered\n"))


async def test_verify_without_the_signing_key_cannot_run(sqlite_store, capsys):
    workflow_id, _ = await stored_closed_trail(sqlite_store)

    code = await auditor.run(["--database-url", sqlite_store.url, "verify", "--workflow",
                              workflow_id], out=io.StringIO(), settings=Settings())

    assert code == 2
    assert "AFTERCARE_AUDIT_SIGNING_KEYS is not set" in capsys.readouterr().err


async def exported(store_url: str, workflow_id: str, settings: Settings) -> str:
    out = io.StringIO()
    code = await auditor.run(["--database-url", store_url, "export", "--workflow", workflow_id,
                              "--for-verification"], out=out, settings=settings)
    assert code == 0
    return out.getvalue()


async def independent_verdict(export: str, keys: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "scripts" / "verify_trail.py"), "-",
        *[arg for key_id, secret in keys.items() for arg in ("--key", f"{key_id}:{secret}")],
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env={"PATH": ""})
    out, _ = await asyncio.wait_for(process.communicate(export.encode()), timeout=60)
    return process.returncode, out.decode()


async def test_the_independent_verifier_agrees_with_verify_on_a_real_exported_trail(
    followups,
):
    handle = await closed_followup(followups)
    settings = followups.settings
    url = followups.store.url
    trail = await followups.store.entries(handle.id)
    verdicts = []

    async def both() -> None:
        ours = await verify(followups.store, handle.id)
        theirs = await independent_verdict(await exported(url, handle.id, settings),
                                           settings.audit_signing_keys)
        assert theirs == ours
        verdicts.append(ours)

    await both()
    await tamper_with(url, handle.id,
                      f"DELETE FROM audit_entries WHERE workflow_id = :w AND seq = {len(trail)}")
    await both()
    await tamper_with(url, handle.id, "DELETE FROM audit_entries WHERE workflow_id = :w "
                                      "AND seq >= 3")
    await insert_rows(url, resealed_from(trail, 3, outcome="altered")[:-1])
    await both()
    await tamper_with(url, handle.id, "UPDATE audit_entries SET actor = 'staff' "
                                      "WHERE workflow_id = :w AND seq = 2")
    await both()

    assert [code for code, _ in verdicts] == [0, 1, 1, 1]
    assert verdicts[0][1] == f"{handle.id}: verified ({len(trail)} entries, closed)\n"
    assert "truncated after entry" in verdicts[1][1] and "the close" in verdicts[1][1]
    assert "re-sealed" in verdicts[2][1]
    assert "broken at entry 2: entry 2 was edited" in verdicts[3][1]


@pytest.mark.parametrize("edit", ["at", "detail"])
def test_the_readme_canonical_form_is_what_the_service_hashes(edit):
    """An auditor's own script follows the README; here, the README's recipe by hand."""
    import hashlib
    import json
    from datetime import UTC, datetime

    fields = {"detail": {"why": "no_reply", "basis": "consent"}} if edit == "detail" else {}
    entry = seal(workflow_id="followup-demo-s-1", seq=1,
                 at=datetime(2026, 11, 21, 9, 47, 0, 250000).astimezone(UTC),
                 prev_hash="0" * 64, step="received", **fields)
    exported_entry = json.loads(entry.model_dump_json())

    recipe = {name: value for name, value in exported_entry.items() if name != "hash"}
    recipe["at"] = datetime.fromisoformat(recipe["at"]).astimezone(UTC).isoformat()
    canonical = json.dumps(recipe, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    assert hashlib.sha256(canonical.encode("utf-8")).hexdigest() == entry.hash
