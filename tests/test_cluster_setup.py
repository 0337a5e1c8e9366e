"""A namespace without Aftercare's search attributes: the worker and the API refuse to start
and name the setup command; the setup command adds them (and migrates the audit store), a second
run changes nothing; then a follow-up runs."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from aftercare.settings import Settings
from aftercare.temporal.codec import data_converter
from aftercare.temporal.search_attributes import admin_instructions
from aftercare.temporal.startup import unknown_to_visibility
from tests.fixtures.followups import closed_followup, worker_environment
from tests.fixtures.temporal import temporal_cli
from tests.followup_harness import harness


@pytest_asyncio.fixture
async def bare_temporal(encryption_keys) -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of its own, started without any search attribute."""
    env = await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=temporal_cli(),
        dev_server_extra_args=[
            "--dynamic-config-value", "frontend.WorkflowTimeSkippingEnabled=true"],
        data_converter=data_converter(Settings(encryption_keys=encryption_keys)),
    )
    async with env:
        yield env


def run(environment: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *command], env=environment, capture_output=True,
                          text=True, timeout=60)


async def test_worker_refuses_a_namespace_without_search_attributes_until_setup_ran(
    bare_temporal, delivery_settings, sms_outbox, mailbox, booking_sink, sqlite_url,
    encryption_keys,
):
    settings = delivery_settings.model_copy(update={
        "task_queue": f"tq-{uuid.uuid4()}", "audit_database_url": sqlite_url,
        "encryption_keys": encryption_keys, "lookup_secret": "lookup-secret-for-tests",
        "api_keys": {"clinic-42": "clinic-key-for-tests"},
        "metrics_token": "metrics-token-for-tests", "twilio_auth_token": "twilio-token-for-tests",
    })
    address = bare_temporal.client.service_client.config.target_host
    environment = worker_environment(settings, address)

    refusal = [
        "error: namespace default lacks the search attributes AftercareContactKey, "
        "AftercareAckCode, AftercareClinic, AftercarePhase: run python -m aftercare.setup "
        "(or have an administrator add them)"
    ]
    for service in (["worker.py"], ["starter.py", "serve"]):
        refused = run(environment, *service)
        assert refused.returncode == 1, service
        assert refused.stderr.strip().splitlines() == refusal, service

    # The check an identity without operator rights falls back on sees the same gap.
    every = ["AftercareContactKey", "AftercareAckCode", "AftercareClinic", "AftercarePhase"]
    assert await unknown_to_visibility(bare_temporal.client) == every

    first = run(environment, "-m", "aftercare.setup")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "search attributes: added AftercareContactKey, AftercareAckCode, AftercareClinic, "
        "AftercarePhase on namespace default",
        "audit store: schema up to date",
    ]
    again = run(environment, "-m", "aftercare.setup")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "search attributes: already on namespace default",
        "audit store: schema up to date",
    ]

    assert await unknown_to_visibility(bare_temporal.client) == []

    async with harness(bare_temporal, settings, sms_outbox, mailbox, booking_sink) as followups:
        handle = await closed_followup(followups)
        assert (await handle.result()).client_safe


def test_without_permission_the_setup_names_what_an_administrator_must_run():
    text = admin_instructions("clinic.a1b2c", ["AftercareContactKey", "AftercareAckCode"])

    assert ("temporal operator search-attribute create --namespace clinic.a1b2c "
            "--name AftercareContactKey --type KeywordList --name AftercareAckCode "
            "--type Keyword") in text
    assert ("tcld namespace search-attributes add --namespace clinic.a1b2c "
            '--search-attribute "AftercareContactKey=KeywordList" '
            '--search-attribute "AftercareAckCode=Keyword"') in text
    assert text.endswith("then run python -m aftercare.setup again.")
