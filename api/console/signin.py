"""Passwordless staff sign-in: clinic and staff id, then a one-time code by the staff
member's channel in the policy (SMS through the twilio client, or email over SMTP, the
way the send activities send).

An unknown staff id, a code that was not sent, a wrong or expired code and a locked
sign-in all look the same. Limits, counted in the audit store's access log so they hold
across API processes: three codes per staff member per 15 minutes; five wrong codes lock
sign-in for 15 minutes. The code travels in a signed cookie only as a MAC, and each
challenge signs in once.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from activities.email import EmailActivities
from activities.sms import SmsActivities
from api.console.security import (
    CHALLENGE_COOKIE,
    SESSION_COOKIE,
    SESSION_TTL,
    StaffSession,
    set_cookie,
    start_session,
)
from api.console.web import Console, ConsoleDep
from workflows.models import Channel, Delivery, OutboundMessage

router = APIRouter(include_in_schema=False)

CODE_TTL = timedelta(minutes=10)
LIMIT_WINDOW = timedelta(minutes=15)
CODES_PER_WINDOW = 3
WRONG_CODES_TO_LOCK = 5
CODE_SENT, CODE_WRONG, SIGNED_IN = "console_code_sent", "console_code_wrong", "console_sign_in"

CODE_TEXT = {
    "en": "Your Aftercare sign-in code is {code}. It works for 10 minutes. "
          "If you did not ask for it, ignore this message.",
    "es": "Su código de acceso a Aftercare es {code}. Sirve durante 10 minutos. "
          "Si no lo pidió, ignore este mensaje.",
}


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
    request: Request, console: ConsoleDep,
    clinic: Annotated[str, Form(max_length=80)] = "",
    staff_id: Annotated[str, Form(max_length=80)] = "",
    next: Annotated[str, Form(max_length=300)] = "/console",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if not console.csrf.accepts(request, csrf_token):
        return console.form_refused(request, None)
    now = datetime.now(UTC)
    clinic, staff_id = clinic.strip(), staff_id.strip()
    code = f"{secrets.randbelow(1_000_000):06d}"
    nonce = secrets.token_urlsafe(12)
    if clinic in console.service.policies.clinics:
        member = console.service.policies.for_clinic(clinic).staff.get(staff_id)
        if member is not None:
            await send_code(console, clinic, staff_id, code, nonce, now)
    claim = {"c": clinic, "s": staff_id, "n": nonce, "exp": int((now + CODE_TTL).timestamp()),
             "h": console.signer.mac("code", f"{nonce}.{code}")}
    response = RedirectResponse(f"/console/sign-in/code?next={safe_next(next)}", status_code=303)
    challenge = console.signer.sign("challenge", claim)
    set_cookie(console.settings, response, CHALLENGE_COOKIE, challenge,
               int(CODE_TTL.total_seconds()))
    return response


async def send_code(
    console: Console, clinic: str, staff_id: str, code: str, nonce: str, now: datetime
) -> None:
    store = await console.service.audit_store()
    actor = StaffSession(staff_id, clinic, now).actor
    if await store.access_count(actor, CODE_SENT, now - LIMIT_WINDOW) >= CODES_PER_WINDOW:
        return
    policy = console.service.policies.for_clinic(clinic)
    member = policy.staff[staff_id]
    language = member.language if member.language in CODE_TEXT else "en"
    body = CODE_TEXT[language].format(code=code)
    preferred = Channel(member.channel)
    for channel in (preferred, preferred.other):
        to = member.phone if channel is Channel.SMS else member.email
        if not to:
            continue
        message = OutboundMessage(workflow_id=f"console-sign-in-{clinic}", message_key=nonce,
                                  channel=channel, to=to, body=body,
                                  subject="Aftercare sign-in code")
        try:
            await send_by(console, channel, message)
        except Exception:  # whatever the provider said: try the other channel
            continue
        await store.record_access(actor, CODE_SENT, f"{channel.value} code", now)
        return


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
    store = await console.service.audit_store()
    actor = StaffSession(claim["s"], claim["c"], now).actor
    known = claim["c"] in console.service.policies.clinics and (
        claim["s"] in console.service.policies.for_clinic(claim["c"]).staff)
    locked = await store.access_count(actor, CODE_WRONG, now - LIMIT_WINDOW) >= WRONG_CODES_TO_LOCK
    right = secrets.compare_digest(console.signer.mac("code", f"{claim['n']}.{code.strip()}"),
                                   claim["h"])
    if not known:
        return refused(request, console, next)
    if locked or not right:
        await store.record_access(actor, CODE_WRONG, "console sign-in", now)
        return refused(request, console, next)
    if not await store.use_link(f"sign-in:{claim['n']}", f"console-sign-in-{claim['c']}",
                                "sign_in", now):
        return refused(request, console, next)
    await store.record_access(actor, SIGNED_IN, "console", now)
    session = StaffSession(claim["s"], claim["c"], now + SESSION_TTL)
    response = RedirectResponse(safe_next(next), status_code=303)
    start_session(console.signer, console.settings, response, session, now)
    response.delete_cookie(CHALLENGE_COOKIE, path="/")
    return response


def refused(request: Request, console: Console, next: str) -> HTMLResponse:
    return console.render(request, "sign_in_code.html",
                          {"next": safe_next(next), "refused": True}, status_code=401)


@router.post("/console/sign-out")
async def sign_out(
    request: Request, console: ConsoleDep, csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if not console.csrf.accepts(request, csrf_token):
        return console.form_refused(request, console.session(request))
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
