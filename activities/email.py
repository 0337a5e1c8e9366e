"""Emails clients and on-call staff over SMTP.

Each one-click action becomes a line "label: {public_base_url}/r/{signed token}". The
Message-ID derives from the follow-up and message key, so should a message ever go out
twice both copies carry the same id. A 5xx from the mail server (no such mailbox,
refused) fails the activity as a non-retryable ``PERMANENT_DELIVERY_FAILURE`` so the
workflow falls back to SMS; a 4xx, a timeout or a lost connection fails it retryably. So
does a refusal of our own login or sender (535 and its kin, a refused MAIL FROM): that is
the operator's to fix, logged as an error and counted, never "this person can't be reached".

A worker keeps a few connections to the mail server open between sends and replaces one the
server closed; what the server accepted reaches the delivery ledger behind the send, never
before it (see activities/delivery_ledger.py).
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.audit import TrailBatches, carrying_trail
from activities.delivery_ledger import DeliveryLedger, DeliveryRecorder, deliver_once
from activities.provider_errors import provider_misconfigured
from aftercare.links.escalation import with_escalation_link
from aftercare.links.one_click import issue_link_token
from aftercare.settings import Settings
from workflows.models import PERMANENT_DELIVERY_FAILURE, Channel, Delivery, OutboundMessage

MAIL_SERVER_UNAVAILABLE = "MailServerUnavailable"
DEFAULT_SUBJECT = "A message from your care team"

# Authentication required (530), mechanism too weak (534), credentials rejected (535),
# encryption required to authenticate (538): the server refuses us, not the recipient.
CONFIGURATION_SMTP_CODES = frozenset({530, 534, 535, 538})

KEEP_CONNECTIONS = 4
"""Idle connections a worker keeps to the mail server; a burst opens more, then closes them."""
# After the server accepted a message, how long the activity waits for the delivery ledger
# to record it before returning all the same (the store may be locked: see
# activities/delivery_ledger.py). Mail's retries have only the ledger to go by.
RECORD_WAIT_SECONDS = 1.0
# Saying goodbye to the server never holds up a send or a worker's shutdown for long.
QUIT_SECONDS = 2.0


class EmailActivities:
    """The email activity. In a worker, ``async with EmailActivities(...)`` keeps
    connections to the mail server open between sends (``SmtpConnections``), and on the
    way out gives the deliveries not yet in the ledger a bounded time to be written.
    Outside one (the console's sign-in codes), each send has a connection of its own."""

    def __init__(self, settings: Settings, ledger: DeliveryLedger | None,
                 trail: TrailBatches | None = None) -> None:
        if not settings.link_secret:
            raise ValueError("set AFTERCARE_LINK_SECRET: it signs the one-click links in emails")
        self.settings = settings
        self.recorder = DeliveryRecorder(ledger)
        self.trail = trail  # what a follow-up's message carries of its trail is stored here
        self._connections: SmtpConnections | None = None

    async def open(self) -> None:
        """Keep the worker's connections to the mail server from now on."""
        self._connections = SmtpConnections(self.settings, keep=KEEP_CONNECTIONS)

    async def close(self) -> None:
        """Give unwritten deliveries a bounded time to reach the ledger; close the kept
        connections."""
        await self.recorder.close()
        if self._connections is not None:
            await self._connections.close()
        self._connections = None

    async def __aenter__(self) -> EmailActivities:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @activity.defn
    async def send_email(self, message: OutboundMessage) -> Delivery:
        return await carrying_trail(self.trail, message, deliver_once(
            self.recorder, message, lambda: self._send(message),
            # Mail has no list to ask: a retry has only the ledger (or, failing it, the
            # Message-ID) to go by, so the activity gives the record a moment.
            wait_for_record=RECORD_WAIT_SECONDS,
            crash_after_accept=self.settings.test_crash_after == "provider_accepts",
        ))

    async def _send(self, message: OutboundMessage) -> Delivery:
        email = self._compose(message, datetime.now(UTC))
        connections = self._connections or SmtpConnections(self.settings, keep=0)
        try:
            # aiosmtplib's timeout is per command; the whole conversation, a reconnection
            # included, must also fit in the activity's budget.
            async with asyncio.timeout(self.settings.smtp_timeout_seconds):
                await connections.send(email)
        # The server's own text may quote the address: only the reply code goes further.
        except aiosmtplib.SMTPRecipientsRefused as err:
            raise _classified(err.recipients[0].code) from None
        except aiosmtplib.SMTPSenderRefused as err:
            if err.code < 500:
                raise _classified(err.code) from None
            raise provider_misconfigured(
                "smtp", f"mail server refused the sender with {err.code}", code=str(err.code)
            ) from None
        except aiosmtplib.SMTPResponseException as err:
            raise _classified(err.code) from None
        except (aiosmtplib.SMTPException, OSError) as err:
            raise ApplicationError(
                f"mail server unreachable: {type(err).__name__}", type=MAIL_SERVER_UNAVAILABLE
            ) from None
        finally:
            if connections is not self._connections:
                await connections.close()
        activity.logger.info("Email accepted as %s (%s)", email["Message-ID"], message.message_key)
        return Delivery(channel=Channel.EMAIL, provider_message_id=email["Message-ID"])

    def _compose(self, message: OutboundMessage, now: datetime) -> EmailMessage:
        ttl = timedelta(hours=self.settings.link_ttl_hours)
        base_url = self.settings.public_base_url.rstrip("/")
        lines = [with_escalation_link(self.settings, message)]
        if message.links:
            lines.append("")
        for link in message.links:
            token = issue_link_token(
                self.settings.link_secret, message.workflow_id, link.action, link.value, ttl, now
            )
            lines.append(f"{link.label}: {base_url}/r/{token}")

        email = EmailMessage()
        email["From"] = self.settings.mail_from
        email["To"] = message.to
        email["Subject"] = message.subject or DEFAULT_SUBJECT
        email["Date"] = format_datetime(now)
        email["Message-ID"] = self._message_id(message)
        email.set_content("\n".join(lines) + "\n")
        return email

    def _message_id(self, message: OutboundMessage) -> str:
        digest = hashlib.sha256(f"{message.workflow_id}\n{message.message_key}".encode())
        domain = parseaddr(self.settings.mail_from)[1].rpartition("@")[2] or "aftercare"
        return f"<{digest.hexdigest()[:40]}@{domain}>"


def _classified(code: int) -> ApplicationError:
    detail = f"mail server answered {code}"
    if code in CONFIGURATION_SMTP_CODES:
        return provider_misconfigured("smtp", detail, code=str(code))
    if 500 <= code < 600:
        return ApplicationError(detail, type=PERMANENT_DELIVERY_FAILURE, non_retryable=True)
    return ApplicationError(detail, type=MAIL_SERVER_UNAVAILABLE)


class SmtpConnections:
    """Connections to the mail server, kept open between sends.

    A send takes an idle connection, or opens one when every kept one is busy (a send never
    waits for another), and gives it back once the server accepted the message; at most
    ``keep`` idle ones are kept, the rest are closed. A kept connection is checked with
    NOOP before it carries a message: one the server closed while idle (a timeout, a
    restart, a 421 "closing") is dropped and a new one opened, before anything was sent. A
    connection that failed mid-message is closed, never reused: its state is unknown, and
    the message, not accepted, is the activity's to retry.
    """

    def __init__(self, settings: Settings, keep: int) -> None:
        self.settings = settings
        self.keep = keep
        self._idle: list[aiosmtplib.SMTP] = []

    async def send(self, email: EmailMessage) -> None:
        smtp = await self._take()
        try:
            await smtp.send_message(email)
        except BaseException:
            smtp.close()
            raise
        await self._give_back(smtp)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(smtp) for smtp in idle))

    async def _take(self) -> aiosmtplib.SMTP:
        while self._idle:
            smtp = self._idle.pop()
            try:
                await smtp.noop()
                return smtp
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()
            except BaseException:
                smtp.close()
                raise
        settings = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )
        await smtp.connect()  # closes itself on failure
        return smtp

    async def _give_back(self, smtp: aiosmtplib.SMTP) -> None:
        if len(self._idle) < self.keep and smtp.is_connected:
            self._idle.append(smtp)
        else:
            await _quit(smtp)


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    """Say goodbye if the server still listens; close the connection either way."""
    try:
        async with asyncio.timeout(QUIT_SECONDS):
            await smtp.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        smtp.close()
