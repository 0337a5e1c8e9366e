"""Fail at start, not at 2 am: a mistake in the policy file or a missing secret stops the
worker and the API at start-up with one line naming the clinic and the key. Real
processes, started as an operator starts them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from aftercare.preflight import api_problems, worker_problems
from aftercare.settings import Settings
from workflows.templates import DEFAULT_TEMPLATES

ROOT = Path(__file__).parents[1]
WORKER = [sys.executable, str(ROOT / "worker.py")]
API = [sys.executable, str(ROOT / "starter.py"), "serve"]
CLINIC = "clinic-7"


def policy_file(tmp_path: Path, **clinic_changes: Any) -> Path:
    clinic: dict[str, Any] = {
        "staff": {"t-1": {"name": "Dr. One", "phone": "+15555550142", "channel": "sms"},
                  "t-2": {"name": "Dr. Two", "email": "two@clinic.example", "channel": "email"}},
        "rota": {"on_call": [{"staff_id": "t-1"}], "backup": [{"staff_id": "t-2"}]},
        "clinic_lead": "t-2",
        **clinic_changes,
    }
    document = {
        "default": {"crisis_line": {"en": "Call or text 988.", "es": "Llama al 988."}},
        CLINIC: clinic,
    }
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def environment(policy: Path, **changes: str | None) -> dict[str, str]:
    settings = {
        "AFTERCARE_POLICY_FILE": str(policy),
        "AFTERCARE_ENCRYPTION_KEYS": "k1:" + "A" * 43 + "=",
        "AFTERCARE_LINK_SECRET": "link-secret-for-tests",
        "AFTERCARE_LOOKUP_SECRET": "lookup-secret-for-tests",
        "AFTERCARE_API_KEYS": f"{CLINIC}:clinic-key-for-tests",
        "AFTERCARE_TWILIO_AUTH_TOKEN": "twilio-token-for-tests",
        "AFTERCARE_METRICS_TOKEN": "metrics-token-for-tests",
        "AFTERCARE_PUBLIC_BASE_URL": "https://aftercare.example",
        "AFTERCARE_AUDIT_SIGNING_KEYS": "s1:audit-signing-secret",
        "AFTERCARE_BOOKING_WEBHOOK_SECRETS": "",
        "AFTERCARE_TWILIO_API_BASE_URL": "http://127.0.0.1:9",
        "AFTERCARE_TEMPORAL_ADDRESS": "127.0.0.1:9",
        "AFTERCARE_AUDIT_DATABASE_URL": f"sqlite+aiosqlite:///{policy.parent / 'audit.db'}",
        **changes,
    }
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AFTERCARE_")}
    return {**inherited, **{k: v for k, v in settings.items() if v is not None}}


def refusal(command: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """The error lines of a process that must refuse to start; fails if it starts."""
    try:
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command[-1]} started instead of refusing")
    assert done.returncode == 2, done.stderr
    return done.stderr.strip().splitlines()


def with_template(language: str, **changes: str) -> dict[str, Any]:
    return {lang: {**t.model_dump(), **(changes if lang == language else {})}
            for lang, t in DEFAULT_TEMPLATES.items()}


POLICY_MISTAKES = {
    "staff channel written Email": (
        {"staff": {"t-1": {"name": "Dr. One", "phone": "+15555550142", "channel": "Email"}}},
        f"{CLINIC}.staff.t-1.channel: Input should be 'sms' or 'email'",
    ),
    "staff phone not in E.164": (
        {"staff": {"t-1": {"name": "Dr. One", "phone": "555-0142", "channel": "sms"}}},
        f"{CLINIC}.staff.t-1.phone: not an E.164 phone number",
    ),
    "rota day after Sunday": (
        {"rota": {"on_call": [{"staff_id": "t-1", "days": [0, 7]}]}},
        f"{CLINIC}.rota.on_call.0.days.1: Input should be less than or equal to 6",
    ),
    "language without a crisis line": (
        {"default_language": "fr", "templates": {"fr": DEFAULT_TEMPLATES["en"].model_dump()}},
        f"{CLINIC}: crisis_line has no entry for 'fr', a language with templates",
    ),
    "unknown template placeholder": (
        {"templates": with_template("en", checkin="Hi {firstname}, checking in.")},
        f"{CLINIC}.templates.en.checkin: unknown placeholder {{firstname}}; this message can "
        "use {clinic}, {first_name}",
    ),
}


@pytest.mark.parametrize("command", [WORKER, API], ids=["worker", "api"])
@pytest.mark.parametrize("mistake", POLICY_MISTAKES)
def test_a_policy_mistake_stops_the_process_with_one_line_naming_clinic_and_key(
    tmp_path, command, mistake
):
    changes, expected = POLICY_MISTAKES[mistake]
    policy = policy_file(tmp_path, **changes)

    [line] = refusal(command, environment(policy), tmp_path)

    assert line.startswith(f"error: {policy}: {expected}")


RISKY_POLICIES = {
    "a gap in the on-call rota": (
        {"rota": {"on_call": [{"staff_id": "t-1", "days": [0, 1, 2, 3, 4]}],
                  "backup": [{"staff_id": "t-2"}]}},
        f"{CLINIC}.rota.on_call: nobody on call Sat 00:00–Mon 00:00 (America/New_York)",
    ),
    "an ack timeout of seconds in a production clinic": (
        {"escalation": {"ack_timeout": "PT5S", "levels": [{"targets": ["on_call"]}]}},
        f"{CLINIC}.escalation.ack_timeout: PT5S is shorter than PT2M",
    ),
    "a level that reaches nobody": (
        {"clinic_lead": None},
        f"{CLINIC}.escalation.levels.2: nobody reachable: clinic_lead: clinic_lead is not set",
    ),
    "a three-segment Spanish template": (
        {"templates": with_template("es", checkin=(
            "Hola {first_name}, somos {clinic}. ¿Cómo estás después de hoy? Responde OK si "
            "estás bien, o LLAMAR si quieres que te llamemos."))},
        f"{CLINIC}.templates.es.checkin: 3 SMS segments",
    ),
}


@pytest.mark.parametrize("command", [WORKER, API], ids=["worker", "api"])
@pytest.mark.parametrize("risk", RISKY_POLICIES)
def test_a_policy_the_check_refuses_stops_the_process_with_its_line(tmp_path, command, risk):
    changes, expected = RISKY_POLICIES[risk]
    policy = policy_file(tmp_path, **changes)

    [line] = refusal(command, environment(policy), tmp_path)

    assert line.startswith(f"error: {policy}: {expected}")


def test_the_api_refuses_to_start_without_the_lookup_secret(tmp_path):
    env = environment(policy_file(tmp_path), AFTERCARE_LOOKUP_SECRET=None)

    [line] = refusal(API, env, tmp_path)

    assert line.startswith("error: AFTERCARE_LOOKUP_SECRET is not set")


def test_the_api_refuses_a_clinic_with_a_key_but_no_policy(tmp_path):
    policy = policy_file(tmp_path)
    env = environment(
        policy, AFTERCARE_API_KEYS=f"{CLINIC}:clinic-key-for-tests,clinic-9:other-key-for-tests")

    [line] = refusal(API, env, tmp_path)

    assert line == (f"error: AFTERCARE_API_KEYS: clinic 'clinic-9' has an API key but no "
                    f"entry in {policy}")


def test_the_worker_refuses_a_booking_webhook_it_cannot_sign(tmp_path):
    policy = policy_file(tmp_path, reschedule={"webhook_url": "https://clinic.example/book"})

    [line] = refusal(WORKER, environment(policy), tmp_path)

    assert line.startswith(f"error: AFTERCARE_BOOKING_WEBHOOK_SECRETS: no secret for clinic "
                           f"'{CLINIC}'")


def test_every_problem_is_named_not_only_the_first(tmp_path):
    policy = policy_file(
        tmp_path, staff={"t-1": {"name": "Dr. One", "phone": "555-0142", "channel": "Email"}})
    env = environment(policy, AFTERCARE_LOOKUP_SECRET=None)

    lines = refusal(API, env, tmp_path)

    assert [line.split(": ")[2] for line in lines[:2]] == [
        f"{CLINIC}.staff.t-1.phone", f"{CLINIC}.staff.t-1.channel"]
    assert lines[2].startswith("error: AFTERCARE_LOOKUP_SECRET")


def test_the_worker_refuses_to_start_without_its_audit_store(tmp_path):
    env = environment(policy_file(tmp_path), AFTERCARE_AUDIT_DATABASE_URL=(
        "postgresql+asyncpg://aftercare:secret@127.0.0.1:9/audit"))

    [line] = refusal(WORKER, env, tmp_path)

    assert line == ("error: AFTERCARE_AUDIT_DATABASE_URL: cannot open the audit database "
                    "postgresql+asyncpg://aftercare:***@127.0.0.1:9/audit (ConnectionRefusedError)")


LINK, LOOKUP = "link-secret-for-tests", "lookup-secret-for-tests"
OTHER_SECRETS = {"twilio_auth_token": "twilio-token-for-tests",
                 "metrics_token": "metrics-token-for-tests",
                 "public_base_url": "https://aftercare.example",
                 "audit_signing_keys": {"s1": "audit-signing-secret"}}


def test_a_sound_configuration_passes_both_checks(tmp_path):
    settings = Settings(
        policy_file=policy_file(tmp_path), encryption_keys={"k1": "A" * 43 + "="},
        link_secret=LINK, lookup_secret=LOOKUP, api_keys={CLINIC: "clinic-key-for-tests"},
        twilio_api_base_url="http://127.0.0.1:9", **OTHER_SECRETS,
        audit_database_url=f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}",
    )

    assert worker_problems(settings) == []
    assert api_problems(settings) == []


def test_the_example_policy_file_passes_with_make_runs_secrets(tmp_path):
    settings = Settings(
        audit_database_url=f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}",
        encryption_keys={"k1": "A" * 43 + "="}, link_secret=LINK, lookup_secret=LOOKUP,
        api_keys={"demo": "demo-key-for-tests", "clinic-42": "clinic-key-for-tests"},
        twilio_api_base_url="http://127.0.0.1:9",
        booking_webhook_secrets={"demo": "booking-secret-demo", "clinic-42": "booking-secret-42"},
        **OTHER_SECRETS,
    )

    assert worker_problems(settings) == []
    assert api_problems(settings) == []


CODEC_ENDPOINT = [sys.executable, "-m", "aftercare.temporal.codec_server"]
MAKE_ONE = "set a random value, e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
GUESSABLE = {
    # What .env.example ships, copied unchanged into a production .env.
    "placeholder from .env.example": (
        API, "AFTERCARE_LINK_SECRET", "change-me-link-secret",
        "AFTERCARE_LINK_SECRET: looks like a placeholder from an example file",
    ),
    "placeholder in a key list": (
        API, "AFTERCARE_API_KEYS", f"{CLINIC}:change-me-demo-key",
        f"AFTERCARE_API_KEYS: the secret for {CLINIC!r} looks like a placeholder from an "
        "example file",
    ),
    "the development Twilio token": (
        API, "AFTERCARE_TWILIO_AUTH_TOKEN", "dev-outbox-token",
        "AFTERCARE_TWILIO_AUTH_TOKEN: is a development value published with the code",
    ),
    "a short metrics token": (
        API, "AFTERCARE_METRICS_TOKEN", "hunter2",
        "AFTERCARE_METRICS_TOKEN: is shorter than 16 characters",
    ),
    "a worker's audit signing key": (
        WORKER, "AFTERCARE_AUDIT_SIGNING_KEYS", "s1:REPLACE-WITH-A-SECRET",
        "AFTERCARE_AUDIT_SIGNING_KEYS: the secret for 's1' looks like a placeholder from an "
        "example file",
    ),
    "a codec token": (
        CODEC_ENDPOINT, "AFTERCARE_CODEC_AUTH_TOKENS", "ops:change-me-codec-token",
        "AFTERCARE_CODEC_AUTH_TOKENS: the secret for 'ops' looks like a placeholder from an "
        "example file",
    ),
}


@pytest.mark.parametrize("case", GUESSABLE)
def test_a_guessable_secret_stops_the_process_with_one_line_naming_the_setting(tmp_path, case):
    command, name, value, expected = GUESSABLE[case]
    env = environment(policy_file(tmp_path), **{name: value})

    lines = refusal(command, env, tmp_path)

    assert lines == [f"error: {expected}; {MAKE_ONE}"]
    assert value.split(":")[-1] not in lines[0]  # the secret itself is never printed
