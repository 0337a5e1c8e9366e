"""Real processes for the fault suite: a Temporal dev server of its own on a database file
(stopped and restarted on it), worker processes to kill, a policy file with seconds timings,
and the figures every fault test prints and asserts."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from aftercare.settings import Settings
from aftercare.temporal.codec import data_converter
from aftercare.temporal.search_attributes import dev_server_flags
from aftercare.trail.replay import replay_and_compare
from aftercare.trail.store import AuditStore
from devsinks.mailbox import Mailbox
from devsinks.sms_outbox import SmsOutbox
from tests.fixtures.temporal import temporal_cli
from workflows.followup import DepartureFollowUp
from workflows.trail import first_break

REPO = Path(__file__).parents[1]
UNREPLAYABLE_DIR = REPO / ".test-results" / "unreplayable"
ON_CALL_PHONE = "+15555550100"  # the demo clinic's on-call
ON_CALL_EMAIL = "oncall@demo.example"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def seconds_policy_file(folder: Path, webhook_url: str, offer_window: str = "PT3S",
                        ack_timeout: str = "PT60S", **demo: Any) -> Path:
    """policies.example.yaml with the demo clinic's seconds timings, its booking webhook on
    the loopback sink, a short reschedule offer and ``demo`` overrides (e.g. a short
    listening window). The ack timeout is long enough for a test to acknowledge the first
    page before the chain pages anyone again (a re-page repeats the page's text by design)."""
    book = yaml.safe_load((REPO / "policies.example.yaml").read_text())
    book["demo"]["reschedule"]["webhook_url"] = webhook_url
    book["demo"]["reschedule"]["offer_window"] = offer_window
    book["demo"]["escalation"]["ack_timeout"] = ack_timeout
    book["demo"].update(demo)
    path = folder / "policies.yaml"
    path.write_text(yaml.safe_dump(book))
    return path


def stop_group(process: subprocess.Popen | None, sig: int = signal.SIGKILL,
               timeout: float = 30.0) -> None:
    """Signal a process's whole group and reap it; SIGKILL if it outlives ``timeout``."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class DevServer:
    """``temporal server start-dev`` on 127.0.0.1, a free port and a database file, so it can
    be stopped (SIGTERM or SIGKILL) and started again on the same state; or, with
    ``in_memory``, no file at all (the benchmark's server)."""

    def __init__(self, folder: Path, in_memory: bool = False) -> None:
        self.database = None if in_memory else folder / "temporal.db"
        self.log = folder / "temporal.log"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    async def start(self, timeout: float = 60.0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [temporal_cli(), "server", "start-dev", "--ip", "127.0.0.1",
                 "--port", str(self.port), "--headless",
                 *(["--db-filename", str(self.database)] if self.database else []),
                 "--log-level", "error",
                 *dev_server_flags()],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        await self.until_ready(timeout)

    async def until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log.read_text()[-2000:]
                raise RuntimeError(f"the Temporal dev server exited: {tail}")
            try:
                client = await asyncio.wait_for(Client.connect(self.address), 5)
                await asyncio.wait_for(client.count_workflows(""), 5)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_group(self.process, sig)
        self.process = None

    async def client(self, settings: Settings) -> Client:
        return await Client.connect(self.address, data_converter=data_converter(settings))


def start_worker(environment: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "worker.py"], env=environment, cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@dataclass
class Figures:
    """What a fault run counts: the zeros the suite asserts, and how late pages were."""

    name: str
    followups: int = 0
    failed: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    broken_chains: list[str] = field(default_factory=list)
    unreplayable: list[str] = field(default_factory=list)
    late_pages: list[str] = field(default_factory=list)
    pages: int = 0
    max_lateness: float = 0.0

    def line(self) -> str:
        return (f"{self.name}: follow-ups {self.followups}, failed {len(self.failed)}, "
                f"silent {len(self.silent)}, duplicates {len(self.duplicates)}, "
                f"broken chains {len(self.broken_chains)}, "
                f"histories not replaying {len(self.unreplayable)}, pages {self.pages}, "
                f"late pages {len(self.late_pages)}, max lateness {self.max_lateness:.1f} s")

    def assert_zeros(self) -> None:
        print(self.line())
        for name in ("failed", "silent", "duplicates", "broken_chains", "unreplayable",
                     "late_pages"):
            for problem in getattr(self, name):
                print(f"  {name}: {problem}")
        assert self.failed == [], f"follow-ups failed: {self.failed}"
        assert self.silent == [], f"clients nobody paged about: {self.silent}"
        assert self.duplicates == [], f"sent twice: {self.duplicates}"
        assert self.broken_chains == [], f"stored trails: {self.broken_chains}"
        assert self.unreplayable == [], f"histories that do not replay: {self.unreplayable}"
        assert self.late_pages == [], f"late pages: {self.late_pages}"


def duplicates(sms: SmsOutbox, mail: Mailbox) -> list[str]:
    """Every (recipient, body) that reached a provider more than once."""
    sent = Counter((m.to, m.body) for m in sms.messages)
    sent += Counter((rcpt, m.text) for m in mail.messages for rcpt in m.rcpt_tos)
    return [f"{to}: {body[:60]!r} x{n}" for (to, body), n in sent.items() if n > 1]


def first_page_at(sms: SmsOutbox, mail: Mailbox, code: str) -> datetime | None:
    """When the first page carrying the escalation's code reached the outbox or mailbox."""
    times = [m.date_created for m in sms.messages
             if m.to == ON_CALL_PHONE and code in m.body]
    times += [m.received_at for m in mail.messages
              if ON_CALL_EMAIL in m.rcpt_tos and code in m.text]
    return min(times, default=None)


async def check_trail(handle: WorkflowHandle, store: AuditStore) -> str | None:
    """None when the stored chain verifies and equals the workflow's own trail."""
    stored = await store.entries(handle.id)
    if (found := first_break(stored)) is not None:
        return f"{handle.id}: stored chain broken at {found}"
    status = await handle.query(DepartureFollowUp.status)
    if [e.hash for e in stored] != [e.hash for e in status.trail]:
        return (f"{handle.id}: stored {len(stored)} entries, the workflow holds "
                f"{len(status.trail)} (backlog {status.audit_backlog})")
    return None


async def until_trail_stored(handle: WorkflowHandle, store: AuditStore,
                             timeout: float = 60.0) -> str | None:
    """Wait (bounded) for the trail to catch up; the last problem if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        problem = await check_trail(handle, store)
        if problem is None or time.monotonic() > deadline:
            return problem
        await asyncio.sleep(0.5)


async def failed(handle: WorkflowHandle) -> bool:
    described = await handle.describe()
    return described.status in (WorkflowExecutionStatus.FAILED,
                                WorkflowExecutionStatus.TERMINATED,
                                WorkflowExecutionStatus.TIMED_OUT)


async def replays(client: Client, handle: WorkflowHandle, store: AuditStore,
                  settings: Settings) -> list[str]:
    """Discrepancies between the fetched history replayed on today's code and the store."""
    history = await client.get_workflow_handle(handle.id).fetch_history()
    stored = await store.entries(handle.id)
    report = await replay_and_compare(history, stored, data_converter(settings),
                                      [DepartureFollowUp])
    if report.discrepancies:
        # Kept for whoever reads the failure: `temporal workflow show --output json` form.
        kept = UNREPLAYABLE_DIR / f"{handle.id}.json"
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(history.to_json())
        return [*report.discrepancies, f"history kept in {kept.relative_to(REPO)}"]
    return report.discrepancies
