"""A real SMTP server on loopback (aiosmtpd): the dev stack's mailbox and the tests' MTA.

Recipients whose address starts with ``bounce`` are refused at RCPT with a permanent 550,
as a mail server refuses an address that does not exist. Tests can make the next
recipients meet a transient 451 instead, refuse an address from now on with a permanent
5xx (``refuse_address``), have every answer come slowly, or require a
login (``require_login``): then a sender that does not log in meets 530 and wrong
credentials 535, as on a real relay. ``connections`` counts the SMTP sessions clients
opened; tests can close the open ones as a relay closes idle connections
(``close_connections``, with or without a 421 first) or drop the next one in the middle of
a message's DATA (``drop_during_next_data``).
"""

from __future__ import annotations

import asyncio
import email.policy
import logging
import os
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from mailbox import Maildir
from pathlib import Path
from typing import IO

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from devsinks.files import PRIVATE_FILE


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def text(self) -> str:
        # As received over SMTP, lines end in CRLF.
        return self.message.get_body(("plain",)).get_content().replace("\r\n", "\n")


class PrivateMaildir(Maildir):
    """A Maildir whose messages (names and addresses) only their owner can read: the
    folders are 0700 already, each message file is made 0600 before anything is in it."""

    def _create_tmp(self) -> IO[bytes]:
        tmp = super()._create_tmp()
        os.fchmod(tmp.fileno(), PRIVATE_FILE)
        return tmp


class Mailbox:
    """Keeps every message in ``messages`` and, given a folder, in a Maildir there.

    Use as ``async with Mailbox() as mailbox`` (``mailbox.port`` is where it listens)
    or ``await mailbox.start(port=...)``.
    """

    def __init__(self, maildir: Path | None = None) -> None:
        self.maildir = PrivateMaildir(maildir, create=True) if maildir is not None else None
        self.messages: list[ReceivedMail] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._transient_refusals = 0
        self._refused_addresses: dict[str, str] = {}
        self._login: tuple[str, str] | None = None
        self._answer_delay = 0.0
        self._server: asyncio.Server | None = None
        self._sessions: list[SMTP] = []
        self._drop_during_data = 0

    def defer_next(self, count: int = 1) -> None:
        """Answer the next ``count`` recipients with a transient 451 (try again later)."""
        self._transient_refusals += count

    def refuse_address(self, address: str, code: int = 550,
                       message: str = "5.1.1 Mailbox unavailable") -> None:
        """Refuse ``address`` at RCPT with the permanent ``code`` from now on, as a mail
        server does once a mailbox is closed or full for good."""
        self._refused_addresses[address.lower()] = f"{code} {message}"

    def answer_slowly(self, seconds: float) -> None:
        """Take ``seconds`` over each RCPT and DATA answer, as an overloaded relay does."""
        self._answer_delay = seconds

    def require_login(self, username: str, password: str) -> None:
        """From the next connection on, accept mail only after AUTH with these credentials."""
        self._login = (username, password)

    @property
    def connections(self) -> int:
        """How many SMTP connections clients opened."""
        return len(self._sessions)

    def close_connections(self, *, saying_421: bool = False) -> None:
        """Close every open connection, as a relay closes idle ones (optionally announcing
        it with ``421 … closing transmission channel``, as most do)."""
        for session in self._sessions:
            transport = session.transport
            if transport is None or transport.is_closing():
                continue
            if saying_421:
                transport.write(b"421 4.4.2 localhost Idle timeout, closing connection\r\n")
            transport.close()

    def drop_during_next_data(self, count: int = 1) -> None:
        """Cut the connection of the next ``count`` messages after their content arrived
        and before answering: a message the server never accepted."""
        self._drop_during_data += count

    def sent_to(self, address: str) -> list[ReceivedMail]:
        return [mail for mail in self.messages if address in mail.rcpt_tos]

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        # aiosmtpd logs every envelope address at INFO; addresses are PHI.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._session_for(loop), host, port)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        return self.port

    def _session_for(self, loop: asyncio.AbstractEventLoop):  # type: ignore[no-untyped-def]
        def session() -> SMTP:
            if self._login is None:
                smtp = SMTP(self, hostname="localhost", loop=loop)
            else:
                # Plain-text AUTH is what a loopback stand-in for a relay can offer.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    smtp = SMTP(self, hostname="localhost", loop=loop,
                                authenticator=self._authenticate, auth_required=True,
                                auth_require_tls=False)
            self._sessions.append(smtp)
            return smtp
        return session

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: object) -> AuthResult:
        expected = self._login
        given = (auth_data.login.decode(), auth_data.password.decode()) if isinstance(
            auth_data, LoginPassword) else None
        # handled=False: aiosmtpd answers 235 or 535 itself.
        return AuthResult(success=expected is not None and given == expected, handled=False)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Mailbox:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # aiosmtpd handler hooks

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        await asyncio.sleep(self._answer_delay)
        if self._transient_refusals:
            self._transient_refusals -= 1
            return "451 4.3.0 Mailbox temporarily unavailable, try again later"
        if (refusal := self._refused_addresses.get(address.lower())) is not None:
            return refusal
        if address.lower().startswith("bounce"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self._answer_delay)
        if self._drop_during_data:
            self._drop_during_data -= 1
            server.transport.close()
            return "421 4.3.0 connection lost"  # never reaches the client
        content = envelope.content
        message = message_from_bytes(content, policy=email.policy.default)
        self.messages.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message))
        if self.maildir is not None:
            self.maildir.add(content)
        return "250 Message accepted for delivery"
