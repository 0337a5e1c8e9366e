"""All the dev sinks together, for ``make run``: one HTTP server, one SMTP server.

The HTTP server is Twilio for the SMS activity (``AFTERCARE_TWILIO_API_BASE_URL``), every
clinic's booking webhook (``/clinics/{clinic_id}/bookings``) and, at ``/``, a page of all
that was "sent". The SMTP server is the mailbox (``AFTERCARE_SMTP_PORT``). Sent SMS are
appended to ``outbox.jsonl`` and emails kept as a Maildir, both in the data folder.

As a process: ``python -m devsinks [--data-dir .data] [--http-port 8030] [--smtp-port N]``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from aftercare.settings import Settings, get_settings
from devsinks.booking import BookingSink
from devsinks.files import private_folder
from devsinks.http import serve
from devsinks.mailbox import Mailbox
from devsinks.sms_outbox import SmsOutbox

DEFAULT_HTTP_PORT = 8030


@dataclass
class DevSinks:
    outbox: SmsOutbox
    mailbox: Mailbox | None
    booking: BookingSink
    url: str
    _runner: web.AppRunner

    async def stop(self) -> None:
        await self.outbox.stop()
        await self._runner.cleanup()
        if self.mailbox is not None:
            await self.mailbox.stop()


async def start_dev_sinks(
    data_dir: Path,
    clinic_secrets: Mapping[str, str],
    host: str = "127.0.0.1",
    http_port: int = DEFAULT_HTTP_PORT,
    smtp_port: int | None = 8025,
    twilio_auth_token: str | None = None,
) -> DevSinks:
    """Start the sinks on ``host``; port 0 picks a free one (see ``.url``, ``.mailbox.port``).
    ``smtp_port=None`` leaves the mailbox out, for a stack that mails through a real server.
    ``twilio_auth_token`` signs the outbox's status callbacks, as the API checks them.
    What they keep in ``data_dir`` is readable by this user only."""
    private_folder(data_dir)
    mailbox = Mailbox(data_dir / "mail") if smtp_port is not None else None
    outbox = SmsOutbox(
        outbox_file=data_dir / "outbox.jsonl", mailbox=mailbox, send_status_callbacks=True,
        callback_token=twilio_auth_token,
    )
    booking = BookingSink(clinic_secrets)
    if mailbox is not None:
        await mailbox.start(host, smtp_port)
    try:
        runner, url = await serve([*outbox.routes(), *booking.routes()], host, http_port)
    except BaseException:
        if mailbox is not None:
            await mailbox.stop()
        raise
    outbox.url = booking.url = url
    return DevSinks(outbox, mailbox, booking, url, runner)


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m devsinks", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".data"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT)
    parser.add_argument("--smtp-port", type=int, default=settings.smtp_port)
    parser.add_argument("--without-mailbox", action="store_true",
                        help="mail goes to a real SMTP server: start no dev mailbox")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve_until_stopped(args, settings))
    except KeyboardInterrupt:
        pass


async def _serve_until_stopped(args: argparse.Namespace, settings: Settings) -> None:
    smtp_port = None if args.without_mailbox else args.smtp_port
    sinks = await start_dev_sinks(
        args.data_dir, settings.booking_webhook_secrets, args.host, args.http_port, smtp_port,
        settings.twilio_auth_token,
    )
    print(f"dev outbox (Twilio API, booking webhooks, sent messages): {sinks.url}", flush=True)
    if sinks.mailbox is not None:
        print(f"dev mailbox (SMTP): {sinks.mailbox.host}:{sinks.mailbox.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sinks.stop()
