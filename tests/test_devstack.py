"""`make run` keeps its promise: a setting pointing at a real service leaves the embedded
part out, and a part that cannot start stops the whole stack with one line. Every port is
picked free for the test, never the defaults a developer's own stack may be using."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from devsinks.mailbox import Mailbox

EXAMPLE = json.loads(Path("examples/departure-demo.json").read_text())


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class DevStack:
    """`python -m devstack` on ports of its own, with a data folder of its own."""

    def __init__(self, tmp_path: Path, **settings: str) -> None:
        self.data_dir = tmp_path / "data"
        (self.temporal, self.temporal_ui, self.outbox, self.mailbox, self.api,
         self.codec) = free_ports(6)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("AFTERCARE_", "TEMPORAL_"))}
        self.env.update({"AFTERCARE_API_PORT": str(self.api),
                         "AFTERCARE_CODEC_SERVER_PORT": str(self.codec),
                         "AFTERCARE_LOG_LEVEL": "WARNING", **settings})
        self.process: asyncio.subprocess.Process | None = None

    @property
    def ports(self) -> list[int]:
        return [self.temporal, self.temporal_ui, self.outbox, self.mailbox, self.api, self.codec]

    async def start(self) -> asyncio.subprocess.Process:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "devstack", "--data-dir", str(self.data_dir),
            "--temporal-port", str(self.temporal), "--temporal-ui-port", str(self.temporal_ui),
            "--outbox-port", str(self.outbox), "--mailbox-port", str(self.mailbox),
            env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return self.process

    async def until_running(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async def running() -> None:
            while line := await self.process.stdout.readline():
                if b"Aftercare is running" in line:
                    return
            pytest.fail(f"the stack exited: {(await self.process.stderr.read()).decode()}")
        await asyncio.wait_for(running(), timeout=120)

    def cli_environment(self) -> dict[str, str]:
        secrets = dict(line.split("=", 1) for line in
                       (self.data_dir / "dev.env").read_text().splitlines())
        return {**self.env, **secrets,
                "AFTERCARE_TEMPORAL_ADDRESS": f"127.0.0.1:{self.temporal}"}

    async def stop(self) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.process.communicate(), timeout=90)
        return self.process.returncode


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


async def test_a_real_mail_server_gets_the_check_in_and_no_dev_mailbox_starts(tmp_path):
    async with Mailbox() as real_mail_server:
        stack = DevStack(tmp_path, AFTERCARE_SMTP_HOST=real_mail_server.host,
                         AFTERCARE_SMTP_PORT=str(real_mail_server.port))
        await stack.start()
        try:
            await stack.until_running()
            assert not listening(stack.mailbox), "no dev mailbox beside a real mail server"
            event = {**EXAMPLE, "session_id": f"s-{uuid.uuid4().hex[:10]}",
                     "client": {**EXAMPLE["client"], "preferred_channel": "email"}}
            (tmp_path / "event.json").write_text(json.dumps(event))
            starter = await asyncio.create_subprocess_exec(
                sys.executable, "starter.py", "start", str(tmp_path / "event.json"),
                env=stack.cli_environment(), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(starter.communicate(), timeout=60)
            assert starter.returncode == 0, err.decode()

            async def checked_in() -> None:
                while not real_mail_server.sent_to(EXAMPLE["client"]["email"]):
                    await asyncio.sleep(0.2)
            await asyncio.wait_for(checked_in(), timeout=60)
        finally:
            code = await stack.stop()
    assert code == 0
    assert not any(listening(port) for port in stack.ports)
    assert processes_mentioning(f"--port {stack.temporal}") == []


async def test_a_taken_port_stops_every_started_part_with_one_line(tmp_path):
    stack = DevStack(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", stack.api))
        squatter.listen()
        await stack.start()
        out, err = await asyncio.wait_for(stack.process.communicate(), timeout=120)
    assert stack.process.returncode == 1
    errors = [line for line in err.decode().splitlines() if line.startswith("error:")]
    assert errors == [f"error: HTTP API: port 127.0.0.1:{stack.api} is already in use; "
                      "every part started has been stopped"], err.decode()
    assert not any(listening(port) for port in stack.ports)
    assert processes_mentioning(f"--port {stack.temporal}") == []
    assert processes_mentioning(str(stack.data_dir)) == []


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_make_run_keeps_client_details_private_and_signs_with_a_random_token_it_reuses(
    tmp_path,
):
    """What `make run` writes holds clients' numbers and words: its owner's alone. Its Twilio
    token is random per checkout, the outbox signs its receipts with it and the API takes
    them; a second run reuses it."""
    stack = DevStack(tmp_path)
    await stack.start()
    try:
        await stack.until_running()
        env = stack.cli_environment()
        event = {**EXAMPLE, "session_id": f"s-{uuid.uuid4().hex[:10]}"}
        (tmp_path / "event.json").write_text(json.dumps(event))
        starter = await asyncio.create_subprocess_exec(
            sys.executable, "starter.py", "start", str(tmp_path / "event.json"), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(starter.communicate(), timeout=60)
        assert starter.returncode == 0, err.decode()
        metrics_url = f"http://127.0.0.1:{stack.api}/metrics"
        headers = {"Authorization": f"Bearer {env['AFTERCARE_METRICS_TOKEN']}"}
        delivered = 'aftercare_intake_events_total{kind="status",outcome="delivered"}'

        async def receipt_taken() -> str:
            async with httpx.AsyncClient() as http:
                while delivered not in (text := (await http.get(metrics_url,
                                                                headers=headers)).text):
                    await asyncio.sleep(0.5)
            return text
        metrics = await asyncio.wait_for(receipt_taken(), timeout=60)
    finally:
        assert await stack.stop() == 0
    token = env["AFTERCARE_TWILIO_AUTH_TOKEN"]

    assert 'outcome="bad signature"' not in metrics
    assert token != "dev-outbox-token" and len(token) >= 32
    assert mode(stack.data_dir) == 0o700
    for name in ("dev.env", "outbox.jsonl", "audit.db", "temporal.db"):
        assert mode(stack.data_dir / name) == 0o600, name

    await stack.start()
    try:
        await stack.until_running()
    finally:
        assert await stack.stop() == 0
    assert stack.cli_environment()["AFTERCARE_TWILIO_AUTH_TOKEN"] == token
