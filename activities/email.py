"""Emails clients and on-call staff over SMTP.

Each one-click action becomes a line "label: {public_base_url}/r/{signed token}". The
Message-ID derives from the follow-up and message key, so should a message ever go out
twice both copies carry the same id. A 5xx from the mail server (no such mailbox,
refused) fails the activity as a non-retryable ``PERMANENT_DELIVERY_FAILURE`` so the
workflow falls back to SMS; a 4xx, a timeout or a lost connection fails it retryably. So
does a refusal of our own login or sender (535 and its kin, a refused MAIL FROM): that is
the operator's to fix, logged as an error and counted, never "this person can't be reached".
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

from activities.delivery_ledger import DeliveryLedger, deliver_once
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


class EmailActivities:
    def __init__(self, settings: Settings, ledger: DeliveryLedger) -> None:
        if not settings.link_secret:
            raise ValueError("set AFTERCARE_LINK_SECRET: it signs the one-click links in emails")
        self.settings = settings
        self.ledger = ledger

    @activity.defn
    async def send_email(self, message: OutboundMessage) -> Delivery:
        return await deliver_once(
            self.ledger, message, lambda: self._send(message),
            crash_after_accept=self.settings.test_crash_after == "provider_accepts",
        )

    async def _send(self, message: OutboundMessage) -> Delivery:
        email = self._compose(message, datetime.now(UTC))
        settings = self.settings
        try:
            # aiosmtplib's timeout is per command; the whole conversation must also fit in
            # the activity's budget, beside the ledger's write (see activities/sms.py).
            async with asyncio.timeout(settings.smtp_timeout_seconds):
                await aiosmtplib.send(
                    email,
                    hostname=settings.smtp_host,
                    port=settings.smtp_port,
                    username=settings.smtp_username,
                    password=settings.smtp_password,
                    start_tls=settings.smtp_starttls,
                    timeout=settings.smtp_timeout_seconds,
                )
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
