"""Passwordless staff sign-in: clinic and staff id, then a one-time code by the staff
member's channel in the policy (SMS through the twilio client, or email over SMTP, the
way the send activities send), or the sign-in link in the same message.

The answer to a code request is the same, in content and in time, for any clinic and
staff id: the browser gets a challenge (a random id in a signed cookie) at once, and the
code is made and sent after the response, only for real staff. A challenge can be
answered only once its code went out, for 15 minutes, for three tries, once. Each code
request opens a challenge of its own, so wrong codes kill only the challenge they were
typed into, never the person. Limits live in the audit store and are decided in one
step with the write they guard (``aftercare.trail.console_access``), so they hold across
API processes and under any concurrency: three codes per staff member per 15 minutes,
hence at most nine guesses. When a stranger has used up those codes, each message they
caused still carries a sign-in link that only its recipient has.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from activities.email import EmailActivities
from activities.sms import SmsActivities
from aftercare.logs import get_logger
from aftercare.trail.console_access import CodeCheck, StaffKey
from api.console.security import (
    CHALLENGE_COOKIE,
    SESSION_COOKIE,
    new_session,
    set_cookie,
    staff_actor,
)
from api.console.web import Console, ConsoleDep
from workflows.models import Channel, Delivery, OutboundMessage
from workflows.policy import StaffMember

router = APIRouter(include_in_schema=False)
log = get_logger("aftercare.console.sign_in")

LIMIT_WINDOW = timedelta(minutes=15)
# A code lives as long as the window that counts it: whenever a stranger has used up a
# staff member's codes, the messages they caused are all still live, links included.
CODE_TTL = LIMIT_WINDOW
CODES_PER_WINDOW = 3
TRIES_PER_CODE = 3
CODE_SENT, CODE_WRONG, SIGNED_IN = "console_code_sent", "console_code_wrong", "console_sign_in"
SIGN_IN_LINK_PATH = "/console/sign-in/link/"

CODE_TEXT = {
    "en": "Your Aftercare sign-in code is {code}. It works for 15 minutes where you asked "
          "for it, or sign in with the link below. If you did not ask, ignore this message.",
    "es": "Su código de acceso a Aftercare es {code}. Sirve durante 15 minutos donde lo "
          "pidió, o entre con el enlace de abajo. Si no lo pidió, ignore este mensaje.",
}

LinkToken = Annotated[str, Path(max_length=200)]


def safe_next(target: str | None) -> str:
    """Only a console path: never an open redirect."""
    if target and target.startswith("/console") and "//" not in target and "\\" not in target:
        return target
    return "/console"


@router.get("/console/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request, console: ConsoleDep, clinic: str = "",
                       next: str = "/console") -> HTMLResponse:
    return console.render(request, "sign_in.html", {"clinic": clinic, "next": safe_next(next)})


@router.post("/console/sign-in", response_class=HTMLResponse)
async def request_code(
    request: Request, console: ConsoleDep, background: BackgroundTasks,
    clinic: Annotated[str, Form(max_length=80)] = "",
    staff_id: Annotated[str, Form(max_length=80)] = "",
    next: Annotated[str, Form(max_length=300)] = "/console",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if not console.csrf.accepts(request, csrf_token):
        return console.form_refused(request, None)
    challenge_id = secrets.token_urlsafe(18)
    background.add_task(send_code, console, (clinic.strip(), staff_id.strip()), challenge_id)
    expires = datetime.now(UTC) + CODE_TTL
    response = RedirectResponse(f"/console/sign-in/code?next={safe_next(next)}", status_code=303)
    set_cookie(console.settings, response, CHALLENGE_COOKIE,
               console.signer.sign("challenge", {"n": challenge_id,
                                                 "exp": int(expires.timestamp())}),
               int(CODE_TTL.total_seconds()))
    return response


async def send_code(console: Console, staff: StaffKey, challenge_id: str) -> None:
    """After the response: for real staff under the limit, open the challenge and send its
    code and link. Nobody waits for this, so a failure is logged, never raised."""
    clinic, staff_id = staff
    if clinic not in console.service.policies.clinics:
        return
    member = console.service.policies.for_clinic(clinic).staff.get(staff_id)
    if member is None:
        return
    try:
        now = datetime.now(UTC)
        challenges = await console.challenges()
        code = f"{secrets.randbelow(1_000_000):06d}"
        if not await challenges.issue(challenge_id, staff, code_mac(console, challenge_id, code),
                                      now, now + CODE_TTL, CODES_PER_WINDOW, LIMIT_WINDOW):
            return
        language = member.language if member.language in CODE_TEXT else "en"
        body = f"{CODE_TEXT[language].format(code=code)}\n{sign_in_link(console, challenge_id)}"
        channel = await deliver(console, clinic, member, challenge_id, body)
        if channel is None:
            log.warning("console sign-in code not delivered on any channel", clinic_id=clinic)
            return
        await challenges.sent(challenge_id, datetime.now(UTC))
        store = await console.service.audit_store()
        await store.record_access(staff_actor(clinic, staff_id), CODE_SENT,
                                  f"{channel.value} code", datetime.now(UTC))
    except Exception as err:  # no request is left to answer: log it, never raise
        log.error("console sign-in code not sent", clinic_id=clinic, error=type(err).__name__)


async def deliver(
    console: Console, clinic: str, member: StaffMember, challenge_id: str, body: str
) -> Channel | None:
    """By the staff member's channel, else the other one; the channel that took it."""
    preferred = Channel(member.channel)
    for channel in (preferred, preferred.other):
        to = member.phone if channel is Channel.SMS else member.email
        if not to:
            continue
        message = OutboundMessage(workflow_id=f"console-sign-in-{clinic}",
                                  message_key=challenge_id, channel=channel, to=to, body=body,
                                  subject="Aftercare sign-in code")
        try:
            await send_by(console, channel, message)
        except Exception:  # whatever the provider said: try the other channel
            continue
        return channel
    return None


def code_mac(console: Console, challenge_id: str, code: str) -> str:
    return console.signer.mac("code", f"{challenge_id}.{code}")


def sign_in_link(console: Console, challenge_id: str) -> str:
    """The link in a code's message: the challenge id (which its requester's cookie shows)
    with a MAC that only the message carries."""
    base = (console.settings.public_base_url or "").rstrip("/")
    tag = console.signer.mac("sign-in-link", challenge_id)
    return f"{base}{SIGN_IN_LINK_PATH}{challenge_id}.{tag}"


async def send_by(console: Console, channel: Channel, message: OutboundMessage) -> Delivery:
    """With the send activities' provider code, outside any workflow. A code belongs to no
    follow-up and is sent once, on request, with no retry: it needs no delivery ledger."""
    settings = console.settings.model_copy(update={"twilio_status_callback": False})
    if channel is Channel.SMS:
        return await SmsActivities(settings, ledger=None)._send(message)
    return await EmailActivities(settings, ledger=None)._send(message)


@router.get("/console/sign-in/code", response_class=HTMLResponse)
async def code_form(request: Request, console: ConsoleDep,
                    next: str = "/console") -> HTMLResponse:
    return console.render(request, "sign_in_code.html", {"next": safe_next(next)})


@router.post("/console/sign-in/code", response_class=HTMLResponse)
async def check_code(
    request: Request, console: ConsoleDep,
    code: Annotated[str, Form(max_length=20)] = "",
    next: Annotated[str, Form(max_length=300)] = "/console",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if not console.csrf.accepts(request, csrf_token):
        return console.form_refused(request, None)
    now = datetime.now(UTC)
    claim = console.signer.read("challenge", request.cookies.get(CHALLENGE_COOKIE), now)
    if claim is None:
        return refused(request, console, next)
    challenges = await console.challenges()
    checked, staff = await challenges.try_code(
        claim["n"], code_mac(console, claim["n"], code.strip()), now, TRIES_PER_CODE)
    if checked is CodeCheck.WRONG:
        store = await console.service.audit_store()
        await store.record_access(staff_actor(*staff), CODE_WRONG, "console sign-in", now)
    if checked is not CodeCheck.RIGHT:
        return refused(request, console, next)
    return await signed_in(request, console, staff, "console", safe_next(next))


async def signed_in(
    request: Request, console: Console, staff: StaffKey, how: str, to: str
) -> Response:
    """A new full session; one this browser held before (from a link, say) ends."""
    await console.end_session(request)
    now = datetime.now(UTC)
    session = new_session(staff[1], staff[0], now)
    store = await console.service.audit_store()
    await store.record_access(session.actor, SIGNED_IN, how, now)
    response = RedirectResponse(to, status_code=303)
    await console.start_session(response, session)
    response.delete_cookie(CHALLENGE_COOKIE, path="/")
    return response


def refused(request: Request, console: Console, next: str) -> HTMLResponse:
    return console.render(request, "sign_in_code.html",
                          {"next": safe_next(next), "refused": True}, status_code=401)


def linked_challenge(console: Console, token: str) -> str | None:
    """The challenge a sign-in link names, if the link is as its message carried it."""
    challenge_id, _, tag = token.partition(".")
    expected = console.signer.mac("sign-in-link", challenge_id)
    return challenge_id if hmac.compare_digest(tag.encode(), expected.encode()) else None


@router.get(SIGN_IN_LINK_PATH + "{token}", response_class=HTMLResponse)
async def open_sign_in_link(token: LinkToken, request: Request,
                            console: ConsoleDep) -> HTMLResponse:
    """Only a button: link previews and mail scanners open links too."""
    if linked_challenge(console, token) is None:
        return console.refusal(request, "link_invalid", "link_invalid_text", 400)
    return console.render(request, "open_link.html", {
        "action": f"{SIGN_IN_LINK_PATH}{token}", "title_key": "sign_in",
        "text_key": "sign_in_link_text", "button_key": "sign_in"})


@router.post(SIGN_IN_LINK_PATH + "{token}", response_class=HTMLResponse)
async def use_sign_in_link(
    token: LinkToken, request: Request, console: ConsoleDep,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if not console.csrf.accepts(request, csrf_token):
        return console.form_refused(request, None)
    challenge_id = linked_challenge(console, token)
    if challenge_id is None:
        return console.refusal(request, "link_invalid", "link_invalid_text", 400)
    staff = await (await console.challenges()).use_by_link(challenge_id, datetime.now(UTC))
    if staff is None:
        return console.refusal(request, "link_expired", "sign_in_link_expired_text", 410)
    return await signed_in(request, console, staff, "console link", "/console")


@router.post("/console/sign-out")
async def sign_out(
    request: Request, console: ConsoleDep, csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if not console.csrf.accepts(request, csrf_token):
        return console.form_refused(request, console.session(request))
    await console.end_session(request)
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
