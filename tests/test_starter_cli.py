"""The starter CLI: an invalid event gets one line naming the field and starts nothing;
a valid one prints its workflow id, and the same event again starts nothing new."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.service import RPCError

EXAMPLE = json.loads(Path("examples/departure-demo.json").read_text())


def event_with(**changes) -> dict:
    event = json.loads(json.dumps(EXAMPLE))
    event["session_id"] = f"s-{uuid.uuid4().hex[:10]}"
    for path, value in changes.items():
        target = event
        *parents, leaf = path.split("__")
        for part in parents:
            target = target[part]
        if value is ...:
            del target[leaf]
        else:
            target[leaf] = value
    return event


def run_cli(tmp_path: Path, environment: dict[str, str], *args: str, event: dict | None = None):
    if event is not None:
        path = tmp_path / "event.json"
        path.write_text(json.dumps(event))
        args = (*args, str(path))
    return subprocess.run([sys.executable, "starter.py", *args], env=environment,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def cli_environment(temporal_env, encryption_keys) -> dict[str, str]:
    import os

    return {
        **os.environ,
        "AFTERCARE_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "AFTERCARE_ENCRYPTION_KEYS": ",".join(f"{k}:{v}" for k, v in encryption_keys.items()),
        "AFTERCARE_TASK_QUEUE": f"tq-{uuid.uuid4()}",
        "AFTERCARE_POLICY_FILE": "policies.example.yaml",
    }


INVALID_EVENTS = [
    ({"client__phone": "555-0123"}, "client.phone"),
    ({"client__phone": "+1555"}, "client.phone"),
    ({"client__timezone": "Mars/Olympus_Mons"}, "client.timezone"),
    ({"departed_at": "2026-11-21T09:47:00"}, "departed_at"),
    ({"risk_level": "severe"}, "risk_level"),
    ({"client__preferred_channel": "email", "client__email": None}, "client"),
    ({"emergency_contact__phone": None, "emergency_contact__email": None}, "emergency_contact"),
    ({"clinic_id": ...}, "clinic_id"),
]


@pytest.mark.parametrize(("changes", "field"), INVALID_EVENTS,
                         ids=[field for _, field in INVALID_EVENTS])
async def test_invalid_event_names_the_field_and_starts_nothing(
    tmp_path, cli_environment, temporal_env, changes, field
):
    event = event_with(**changes)
    result = run_cli(tmp_path, cli_environment, "start", event=event)

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {field}"), lines[0]
    assert result.stdout == ""
    workflow_id = f"followup-{event.get('clinic_id', 'demo')}-{event['session_id']}"
    with pytest.raises(RPCError):
        await temporal_env.client.get_workflow_handle(workflow_id).describe()


async def test_valid_event_starts_once_and_a_changed_repeat_is_refused(
    tmp_path, cli_environment, temporal_env
):
    event = event_with()
    expected = f"followup-demo-{event['session_id']}"
    handle = temporal_env.client.get_workflow_handle(expected)
    first = run_cli(tmp_path, cli_environment, "start", event=event)
    assert (first.returncode, first.stdout.strip()) == (0, expected), first.stderr
    first_run = (await handle.describe()).run_id
    again = run_cli(tmp_path, cli_environment, "start", event=event)
    assert (again.returncode, again.stdout.strip()) == (0, expected), again.stderr
    assert (await handle.describe()).run_id == first_run, "the repeat started nothing"
    changed = dict(event, risk_level="high")
    conflict = run_cli(tmp_path, cli_environment, "start", event=changed)
    assert conflict.returncode != 0 and "different event content" in conflict.stderr
    await handle.terminate("test over")


def test_unreadable_event_file_is_one_clear_line(tmp_path, cli_environment):
    result = run_cli(tmp_path, cli_environment, "start", str(tmp_path / "missing.json"))
    assert result.returncode != 0
    assert result.stderr.strip().startswith("error: cannot read")
    assert len(result.stderr.strip().splitlines()) == 1
