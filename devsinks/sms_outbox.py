"""A Twilio-compatible SMS endpoint on loopback: the dev stack's outbox and the tests' Twilio.

It answers ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` as Twilio does for the
official client: HTTP basic auth with the account sid and auth token, a form-encoded
message, the Message resource or Twilio's error JSON back. ``GET`` on the same path lists
the messages it accepted as Twilio's Messages list does: newest first, filtered by ``To``,
``From`` and ``DateSent`` (``DateSent<``, ``DateSent>``), in pages (``PageSize``, ``Page``,
``next_page_uri``). The outbox sends at once, so a listed message is already "sent".
Twilio's magic test numbers fail as Twilio documents them; tests can make more numbers
fail, or the next requests, or run ``on_accept`` the moment a message is accepted. With
``send_status_callbacks`` it then reports each message "sent" and "delivered" (or
"undelivered", for numbers given to ``fail_delivery``) to the message's StatusCallback,
signed with ``X-Twilio-Signature`` as Twilio signs them.

``connections`` counts the TCP connections the Twilio API was called over, so tests can
see a client reuse one.

``GET /outbox`` lists what was sent as JSON; ``GET /`` shows it (and the dev mailbox,
when one is attached) as a page.
"""

from __future__ import annotations

import asyncio
import html
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from aiohttp import BasicAuth, web
from twilio.request_validator import RequestValidator

from aftercare.settings import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN
from devsinks.files import private_file
from devsinks.http import HttpSink
from devsinks.mailbox import Mailbox

API_VERSION = "2010-04-01"


@dataclass(frozen=True)
class TwilioError:
    code: int
    message: str
    status: int = 400

    def response(self) -> web.Response:
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        return web.json_response(body, status=self.status)


# Twilio's test credentials answer these "To" numbers with these errors.
MAGIC_NUMBERS = {
    "+15005550001": TwilioError(21211, "The 'To' number {to} is not a valid phone number."),
    "+15005550002": TwilioError(
        21612, "The 'To' phone number: {to}, is not currently reachable via SMS."
    ),
    "+15005550004": TwilioError(21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": TwilioError(21614, "'To' number {to} is not a valid mobile number"),
}

_UNAUTHENTICATED = TwilioError(20003, "Authenticate", status=401)
_STATUS_CALLBACK_DELAY_SECONDS = 0.2


@dataclass
class SentSms:
    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    date_created: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_dict(self) -> dict[str, str | None]:
        return {
            "sid": self.sid,
            "to": self.to,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "body": self.body,
            "status_callback": self.status_callback,
            "date_created": self.date_created.isoformat(),
        }

    def resource(self, account_sid: str, sent: bool = False) -> dict[str, object]:
        """The Message resource as Twilio's API returns it: just accepted, or later, once
        ``sent``."""
        uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{self.sid}"
        created = format_datetime(self.date_created)
        # Twilio reports a Messaging Service send as "accepted" until it picks a sender.
        status = "sent" if sent else "accepted" if self.messaging_service_sid else "queued"
        return {
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": created,
            "date_sent": created if sent else None,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(max(1, -(-len(self.body) // 153))),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": self.to,
            "uri": f"{uri}.json",
        }


class SmsOutbox(HttpSink):
    """Keeps every accepted message in ``messages`` and, given a file, appends it there
    as a JSON line. Use as ``async with SmsOutbox() as outbox`` or ``await start()``."""

    def __init__(
        self,
        account_sid: str = DEV_TWILIO_ACCOUNT_SID,
        auth_token: str = DEV_TWILIO_AUTH_TOKEN,
        outbox_file: Path | None = None,
        mailbox: Mailbox | None = None,
        send_status_callbacks: bool = False,
        callback_token: str | None = None,
    ) -> None:
        """``callback_token`` signs the status callbacks, as Twilio signs with the account's
        token: the API's ``AFTERCARE_TWILIO_AUTH_TOKEN`` (by default ``auth_token``, which the
        SMS activity presents when it talks to the outbox)."""
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.callback_token = callback_token or auth_token
        self.outbox_file = outbox_file
        self.mailbox = mailbox
        self.send_status_callbacks = send_status_callbacks
        self.messages: list[SentSms] = []
        self._next_failures: list[TwilioError] = []
        self._failing_numbers: dict[str, TwilioError] = {}
        self._undeliverable: dict[str, int] = {}
        self._held: dict[str, asyncio.Event] = {}
        self._callbacks: set[asyncio.Task] = set()
        self.on_accept: Callable[[SentSms], None] | None = None
        self._peers: set[tuple[str, int]] = set()
        self.down = False  # while True every send answers 503, as in a Twilio outage

    def hold(self, number: str) -> None:
        """Keep sends to ``number`` waiting, unanswered, until ``release``: a provider slow to
        answer while the message is already on its way."""
        self._held[number] = asyncio.Event()

    def release(self, number: str) -> None:
        self._held.pop(number).set()

    def fail_next(self, count: int = 1, status: int = 503, code: int | None = None) -> None:
        """Answer the next ``count`` sends with an HTTP ``status`` (a 5xx or 429)."""
        error = TwilioError(code or 20000 + status, "Simulated outage", status)
        self._next_failures.extend([error] * count)

    def fail_number(self, number: str, code: int, message: str = "", status: int = 400) -> None:
        """Refuse every send to ``number`` with Twilio error ``code``."""
        self._failing_numbers[number] = TwilioError(
            code, message or f"Simulated Twilio error {code}", status
        )

    def fail_delivery(self, number: str, code: int = 30003) -> None:
        """Accept sends to ``number``, then report them undelivered with ``code``, as a
        carrier does for an unreachable handset (30003) or a landline (30006)."""
        self._undeliverable[number] = code

    async def stop(self) -> None:
        for task in list(self._callbacks):
            task.cancel()
        await asyncio.gather(*self._callbacks, return_exceptions=True)
        await super().stop()

    def sent_to(self, number: str) -> list[SentSms]:
        return [sms for sms in self.messages if sms.to == number]

    @property
    def connections(self) -> int:
        """How many TCP connections the Twilio API (sends and lists) was called over."""
        return len(self._peers)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", self._create),
            web.get(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", self._read),
            web.get("/outbox", self._list),
            web.get("/", self._page),
        ]

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authenticated(request):
            return _UNAUTHENTICATED.response()
        if request.match_info["account_sid"] != self.account_sid:
            return TwilioError(20404, "The requested resource was not found", 404).response()
        if self.down:
            return TwilioError(20503, "Service unavailable", 503).response()
        if self._next_failures:
            return self._next_failures.pop(0).response()

        form = await request.post()
        to, body = form.get("To"), form.get("Body")
        if (held := self._held.get(to)) is not None:
            await held.wait()
        from_, service = form.get("From"), form.get("MessagingServiceSid")
        if not to:
            return TwilioError(21604, "A 'To' phone number is required.").response()
        if not body:
            return TwilioError(21602, "Message body is required.").response()
        if not from_ and not service:
            return TwilioError(21603, "A 'From' phone number is required.").response()
        refusal = self._failing_numbers.get(to) or MAGIC_NUMBERS.get(to)
        if refusal:
            message = refusal.message.format(to=to)
            return TwilioError(refusal.code, message, refusal.status).response()

        sms = SentSms(
            sid="SM" + secrets.token_hex(16),
            to=to,
            from_=from_,
            messaging_service_sid=service,
            body=body,
            status_callback=form.get("StatusCallback"),
        )
        self.messages.append(sms)
        if self.on_accept is not None:
            self.on_accept(sms)
        if self.outbox_file is not None:
            # Numbers and words of clients: readable by this user only.
            with open(self.outbox_file, "a", encoding="utf-8", opener=private_file) as outbox:
                outbox.write(json.dumps(sms.as_dict()) + "\n")
        if self.send_status_callbacks and sms.status_callback:
            task = asyncio.create_task(self._report_status(sms))
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)
        return web.json_response(sms.resource(self.account_sid), status=201)

    async def _read(self, request: web.Request) -> web.Response:
        if not self._authenticated(request):
            return _UNAUTHENTICATED.response()
        account_sid = request.match_info["account_sid"]
        if account_sid != self.account_sid:
            return TwilioError(20404, "The requested resource was not found", 404).response()
        query = request.query
        try:
            page = int(query.get("Page", "0"))
            page_size = min(int(query.get("PageSize", "50")), 1000)
            sent_on = _twilio_date(query.get("DateSent"))
            sent_before = _twilio_date(query.get("DateSent<"))
            sent_after = _twilio_date(query.get("DateSent>"))
        except ValueError:
            return TwilioError(20001, "Invalid paging or date parameter").response()
        if page < 0 or page_size < 1:
            return TwilioError(20001, "Invalid paging parameter").response()

        def wanted(sms: SentSms) -> bool:
            return (
                query.get("To") in (None, sms.to)
                and query.get("From") in (None, sms.from_)
                and (sent_on is None or _same_day(sms.date_created, sent_on))
                and (sent_before is None or _on_or_before(sms.date_created, sent_before))
                and (sent_after is None or _on_or_before(sent_after, sms.date_created))
            )

        found = [sms for sms in reversed(self.messages) if wanted(sms)]
        start = page * page_size
        shown = found[start:start + page_size]
        path = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"
        filters = {k: v for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}

        def page_uri(number: int) -> str:
            return f"{path}?{urlencode({**filters, 'PageSize': page_size, 'Page': number})}"

        return web.json_response({
            "messages": [sms.resource(account_sid, sent=True) for sms in shown],
            "page": page,
            "page_size": page_size,
            "start": start,
            "end": start + max(len(shown) - 1, 0),
            "uri": page_uri(page),
            "first_page_uri": page_uri(0),
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            "next_page_uri": page_uri(page + 1) if start + page_size < len(found) else None,
        })

    async def _report_status(self, sms: SentSms) -> None:
        error_code = self._undeliverable.get(sms.to)
        if error_code:
            outcome = {"MessageStatus": "undelivered", "ErrorCode": str(error_code)}
        else:
            outcome = {"MessageStatus": "delivered"}
        validator = RequestValidator(self.callback_token)
        # As from Twilio, receipts come after the send's own answer, never before it.
        await asyncio.sleep(_STATUS_CALLBACK_DELAY_SECONDS)
        async with aiohttp.ClientSession() as http:
            for update in ({"MessageStatus": "sent"}, outcome):
                params = {
                    "AccountSid": self.account_sid,
                    "ApiVersion": API_VERSION,
                    "From": sms.from_ or "",
                    "MessageSid": sms.sid,
                    "SmsSid": sms.sid,
                    "SmsStatus": update["MessageStatus"],
                    "To": sms.to,
                    **update,
                }
                signature = validator.compute_signature(sms.status_callback, params)
                headers = {"X-Twilio-Signature": signature}
                try:
                    async with http.post(sms.status_callback, data=params, headers=headers):
                        pass
                except aiohttp.ClientError:
                    return  # nobody listening: Twilio, too, gives up on a callback

    def _authenticated(self, request: web.Request) -> bool:
        # A client's connection is its address and port, unique while it stays open.
        if (peer := request.transport and request.transport.get_extra_info("peername")):
            self._peers.add(tuple(peer[:2]))
        try:
            auth = BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            return False
        return secrets.compare_digest(auth.login, self.account_sid) and secrets.compare_digest(
            auth.password, self.auth_token
        )

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response([sms.as_dict() for sms in self.messages])

    async def _page(self, request: web.Request) -> web.Response:
        sms_rows = "".join(
            _row(sms.date_created.isoformat(timespec="seconds"), sms.to, sms.body)
            for sms in reversed(self.messages)
        )
        mail_rows = "".join(
            _row(
                mail.received_at.isoformat(timespec="seconds"),
                ", ".join(mail.rcpt_tos),
                f"{mail.message['Subject']}\n\n{mail.text}",
            )
            for mail in reversed(self.mailbox.messages if self.mailbox else [])
        )
        page = _PAGE.format(sms_rows=sms_rows or _EMPTY, mail_rows=mail_rows or _EMPTY)
        return web.Response(text=page, content_type="text/html")


def _twilio_date(value: str | None) -> date | datetime | None:
    """A DateSent filter: a day (``2026-11-22``), as Twilio documents, or a moment
    (``2026-11-22T20:00:00Z``), as the twilio client sends a datetime."""
    if value is None:
        return None
    if "T" not in value:
        return date.fromisoformat(value)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _same_day(moment: datetime, day: date | datetime) -> bool:
    return moment.astimezone(UTC).date() == (
        day.astimezone(UTC).date() if isinstance(day, datetime) else day)


def _on_or_before(earlier: date | datetime, later: date | datetime) -> bool:
    if isinstance(earlier, datetime) and isinstance(later, datetime):
        return earlier <= later
    def as_day(value: date | datetime) -> date:
        return value.astimezone(UTC).date() if isinstance(value, datetime) else value
    return as_day(earlier) <= as_day(later)


def _row(when: str, to: str, body: str) -> str:
    cells = (html.escape(when), html.escape(to), html.escape(body))
    return "<tr><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>".format(*cells)


_EMPTY = "<tr><td colspan=3><em>nothing yet</em></td></tr>"
_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>Aftercare dev outbox</title>
<style>body{{font-family:sans-serif;margin:2em}}td{{vertical-align:top;padding:.3em 1em}}
pre{{white-space:pre-wrap;margin:0}}</style></head>
<body><h1>Aftercare dev outbox</h1>
<p>What Aftercare sent on this machine, newest first. Nothing here left the machine.</p>
<h2>SMS</h2><table><tr><th>when</th><th>to</th><th>message</th></tr>{sms_rows}</table>
<h2>Email</h2><table><tr><th>when</th><th>to</th><th>message</th></tr>{mail_rows}</table>
</body></html>
"""
