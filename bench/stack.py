"""The benchmark's processes: one Temporal dev server (in memory), the loopback sinks in
this process, and as processes of their own the Aftercare worker (``worker.py``), the bare
worker (``bare.py``) and the HTTP API (``starter.py serve``), so each one's CPU time and
memory can be read from outside, as an operator would. The dev server and worker
processes are the fault suite's (``tests/fault_stack.py``)."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from aftercare.policies import PolicyBook
from aftercare.settings import Settings
from aftercare.temporal.connection import connect
from devsinks.booking import BookingSink
from devsinks.mailbox import Mailbox
from devsinks.sms_outbox import SmsOutbox
from tests.fault_stack import REPO, DevServer, free_port, start_worker, stop_group
from tests.fixtures.followups import worker_environment

BENCH = Path(__file__).parent
# The happy path's clinic; the board's 1,000 seeded views are this clinic's too.
CLINIC = "bench"
ALARM = "alarm"  # no reply and imminent risk: a one-second window, one level paging
STORM = "storm"  # check-ins five minutes after departure
OPEN = "open"  # check-ins a day after departure
ON_CALL = "bench-oncall"
ON_CALL_PHONE = "+15555550100"
CHECKIN_DELAY_STORM_SECONDS = 300
ZERO = {"low": "PT0S", "moderate": "PT0S", "high": "PT0S"}
BARE_QUEUE = "bench-bare"


def bench_policies(booking: BookingSink) -> dict:
    """Seconds timings (``demo``), no quiet hours, a second of listening after the protocol.
    The happy path is offered a reschedule and declines it; the alarm clinic's client has
    a one-second window and no reminder, its on-call is paged and acknowledges."""
    common = {"demo": True, "clinic_name": "Bench Clinic", "quiet_hours": None,
              "listen_after_close": "PT1S"}
    staff = {"staff": {ON_CALL: {"name": "On call", "phone": ON_CALL_PHONE, "channel": "sms"}},
             "rota": {"on_call": [{"staff_id": ON_CALL}]}, "clinic_lead": ON_CALL,
             "escalation": {"ack_timeout": "PT1H", "repeats": 1, "resolve_reminder": "PT1H",
                            "levels": [{"targets": ["on_call"]}]}}
    return {
        "default": {},
        CLINIC: {**common, **staff, "checkin_delay": ZERO, "reschedule": {
            "slots": [{"after": "P1D", "at": "10:00"}], "offer_window": "PT1H",
            "webhook_url": booking.webhook_url(CLINIC), "webhook_private_network": True}},
        ALARM: {**common, **staff, "checkin_delay": ZERO, "reminders": [],
                "response_window": {k: "PT1S" for k in ("low", "moderate", "high", "imminent")},
                "reschedule": {"slots": []}},
        STORM: {**common, **staff, "reschedule": {"slots": []},
                "checkin_delay": {k: f"PT{CHECKIN_DELAY_STORM_SECONDS}S" for k in ZERO}},
        OPEN: {**common, **staff, "reschedule": {"slots": []},
               "checkin_delay": {k: "P1D" for k in ZERO}},
    }


def bench_settings(folder: Path, address: str, outbox: SmsOutbox, mailbox: Mailbox,
                   booking: BookingSink, audit_database_url: str | None = None) -> Settings:
    """Everything named explicitly, so no AFTERCARE_* variable points the bench elsewhere.
    The audit store is a SQLite file in ``folder`` unless ``audit_database_url`` names one."""
    policy_file = folder / "policies.yaml"
    policy_file.write_text(yaml.safe_dump(bench_policies(booking)))
    token = secrets.token_urlsafe
    return Settings(
        temporal_address=address, temporal_namespace="default", task_queue="bench-aftercare",
        policy_file=policy_file,
        audit_database_url=audit_database_url or f"sqlite+aiosqlite:///{folder}/audit.db",
        encryption_keys={"bench": base64.b64encode(os.urandom(32)).decode()},
        twilio_account_sid=None, twilio_auth_token=token(32), twilio_from_number=None,
        twilio_messaging_service_sid=None, twilio_api_base_url=outbox.url,
        twilio_status_callback=False,
        smtp_host=mailbox.host, smtp_port=mailbox.port, smtp_username=None,
        smtp_password=None, smtp_starttls=False,
        public_base_url="http://127.0.0.1",
        link_secret=token(32), lookup_secret=token(32), metrics_token=token(32),
        api_keys={clinic: token(24) for clinic in (CLINIC, ALARM)},
        booking_webhook_secrets={CLINIC: token(24)},
        audit_signing_keys={"bench": token(32)},
    )


def cpu_seconds(pid: int) -> float:
    """A process's user and system CPU time, from /proc (Linux)."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())


def _stat_cpu_seconds(stat: str) -> float:
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_of_processes(name: str) -> float:
    """The user and system CPU time of every process named ``name`` that this user may
    read (a local database server's, say), from /proc (Linux)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone, or not ours to read
        if text.partition("(")[2].rpartition(")")[0] == name:
            total += _stat_cpu_seconds(text)
    return total


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


@dataclass
class Stack:
    folder: Path
    server: DevServer
    outbox: SmsOutbox
    mailbox: Mailbox
    settings: Settings
    policies: PolicyBook
    client: Client  # Aftercare's converter and codec
    bare_client: Client  # the default converter
    worker: subprocess.Popen | None = None
    bare_worker: subprocess.Popen | None = None
    api: subprocess.Popen | None = None
    api_url: str = ""

    def environment(self) -> dict[str, str]:
        return {**worker_environment(self.settings, self.server.address),
                "AFTERCARE_POLICY_FILE": str(self.settings.policy_file),
                "AFTERCARE_TWILIO_STATUS_CALLBACK": "false", **self.bytecode_cache()}

    @property
    def database_server(self) -> str | None:
        """The name of the audit store's server processes, when it has its own (PostgreSQL,
        on this machine), so the bench can count their CPU too."""
        return "postgres" if self.settings.audit_database_url.startswith("postgresql") else None

    def bytecode_cache(self) -> dict[str, str]:
        """The sandbox re-imports a workflow's module for every new workflow unless it is passed
        through (the bare arm's is not, Aftercare's are): both arms load their modules from
        cached bytecode, as the image does, kept outside the source tree."""
        return {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(self.folder / "pycache")}

    async def start_worker(self) -> None:
        self.worker = self.spawn_worker(aftercare=True)
        await until_polled(self.client, self.settings.task_queue, self.worker,
                           self.folder / "worker.log")

    def stop_worker(self) -> None:
        stop_group(self.worker, signal.SIGTERM)
        self.worker = None

    async def start_bare_worker(self) -> None:
        self.bare_worker = self.spawn_worker(aftercare=False)
        await until_polled(self.bare_client, BARE_QUEUE, self.bare_worker,
                           self.folder / "bare.log")

    def spawn_worker(self, aftercare: bool) -> subprocess.Popen:
        """One more worker process of an arm, polling its task queue beside any other."""
        if aftercare:
            return start_worker(self.environment(), self.folder / "worker.log")
        with (self.folder / "bare.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, str(BENCH / "bare.py"), "--address", self.server.address,
                 "--task-queue", BARE_QUEUE, "--outbox-url", self.outbox.url],
                cwd=BENCH, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **self.bytecode_cache()})

    async def start_api(self) -> None:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        with (self.folder / "api.log").open("ab") as log:
            self.api = subprocess.Popen(
                [sys.executable, "starter.py", "serve"], cwd=REPO, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                env={**self.environment(), "AFTERCARE_API_PORT": str(port)})
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if self.api.poll() is not None:
                    raise SystemExit(f"the API exited; see {self.folder / 'api.log'}")
                try:
                    if (await http.get(f"{self.api_url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the API did not answer within 60 s")
                await asyncio.sleep(0.3)

    def stop(self) -> None:
        for process in (self.api, self.worker, self.bare_worker):
            stop_group(process, signal.SIGTERM)
        self.server.stop()


async def until_polled(client: Client, task_queue: str, process: subprocess.Popen, log: Path,
                       timeout: float = 60.0) -> None:
    """Until a worker polls ``task_queue`` for workflow tasks."""
    request = DescribeTaskQueueRequest(namespace=client.namespace,
                                       task_queue=TaskQueue(name=task_queue))
    deadline = time.monotonic() + timeout
    while not (await client.workflow_service.describe_task_queue(request)).pollers:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{process.args[1]} did not start: {log.read_text()[-2000:]}")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def bench_stack(folder: Path, *, api: bool = True, bare: bool = True,
                      aftercare: bool = True,
                      audit_database_url: str | None = None) -> AsyncIterator[Stack]:
    """A dev server, the sinks, an Aftercare worker, a bare worker and (``api``) the API;
    the audit store in ``folder`` unless ``audit_database_url`` names one."""
    async with AsyncExitStack() as exits:
        server = DevServer(folder, in_memory=True)
        exits.callback(server.stop)
        await server.start()
        outbox = await exits.enter_async_context(SmsOutbox())
        mailbox = await exits.enter_async_context(Mailbox())
        booking = await exits.enter_async_context(BookingSink({}))
        settings = bench_settings(folder, server.address, outbox, mailbox, booking,
                                  audit_database_url)
        booking.clinic_secrets.update(settings.booking_webhook_secrets)
        stack = Stack(folder, server, outbox, mailbox, settings,
                      PolicyBook.load(settings.policy_file), await connect(settings),
                      await Client.connect(server.address))
        exits.callback(stack.stop)
        if aftercare:
            await stack.start_worker()
        if bare:
            await stack.start_bare_worker()
        if api:
            await stack.start_api()
        yield stack
