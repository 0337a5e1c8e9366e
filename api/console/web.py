"""What every console page shares: templates, the signed credentials, who is signed in
(a signed cookie naming a session the audit store holds open), and the refusal pages.

Pages are server-rendered Jinja2 with plain forms; the little script they use is served
from this package (nothing from a CDN). Every response says ``no-store`` and sends no
referrer, so a page with contact details is neither cached nor leaked to another site.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from aftercare.trail.console_access import ConsoleSessions, SignInChallenges
from api.console.i18n import browser_language, phase_in, reason_in, risk_in, words
from api.console.security import (
    CSRF_COOKIE,
    SESSION_TTL,
    Csrf,
    Signer,
    StaffSession,
    read_session,
    set_cookie,
    set_session_cookie,
)
from api.intake import Intake, intake

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


def local_time(at: datetime, zone: str) -> str:
    """A time as the clinic reads it: its own zone, to the minute."""
    return at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


templates.env.filters["local"] = local_time
templates.env.filters["reason_in"] = lambda reason, language: reason_in(language, reason)
templates.env.filters["phase_in"] = lambda phase, language: phase_in(language, phase)
templates.env.filters["risk_in"] = lambda risk, language: risk_in(language, risk)


def age(then: datetime, now: datetime) -> str:
    """How long ago, to the minute: "2 h 05 min", "7 min"."""
    minutes = max(0, int((now - then).total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


templates.env.filters["age"] = age

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'",
}


class Console:
    def __init__(self, service: Intake) -> None:
        if not service.settings.link_secret:
            raise ValueError("set AFTERCARE_LINK_SECRET: it signs the staff console's links "
                             "and sessions")
        self.service = service
        self.settings = service.settings
        self.signer = Signer(service.settings.link_secret)
        self.csrf = Csrf(self.signer)

    def session(self, request: Request) -> StaffSession | None:
        """Who is signed in, as the ``console`` dependency found it for this request."""
        session: StaffSession | None = request.state.staff_session
        if session is None:
            return None
        # Staff removed from the policy lose the console at once, whatever their cookie says.
        if session.staff_id not in self.service.policies.for_clinic(session.clinic_id).staff:
            return None
        return session

    async def open_session(self, request: Request) -> StaffSession | None:
        """The session the cookie names, while the audit store holds it open (not signed
        out of, not expired)."""
        now = datetime.now(UTC)
        session = read_session(self.signer, request, now)
        if session is None or not await (await self.sessions()).live(session.session_id, now):
            return None
        return session

    async def start_session(self, response: Response, session: StaffSession) -> None:
        now = datetime.now(UTC)
        await (await self.sessions()).start(session.session_id, session.actor, now,
                                            session.expires_at)
        set_session_cookie(self.signer, self.settings, response, session, now)

    async def end_session(self, request: Request) -> None:
        """The session this request's cookie names ends in the store: a copy of the cookie,
        saved anywhere, opens nothing."""
        session: StaffSession | None = request.state.staff_session
        if session is not None:
            await (await self.sessions()).end(session.session_id, datetime.now(UTC))

    async def sessions(self) -> ConsoleSessions:
        return ConsoleSessions(await self.service.audit_store())

    async def challenges(self) -> SignInChallenges:
        return SignInChallenges(await self.service.audit_store())

    def language_of(self, request: Request, session: StaffSession | None) -> str:
        if session is None:
            return browser_language(request)
        member = self.service.policies.for_clinic(session.clinic_id).staff[session.staff_id]
        return member.language if member.language in ("en", "es") else "en"

    def render(
        self, request: Request, template: str, context: dict[str, Any], status_code: int = 200,
        session: StaffSession | None = None,
    ) -> HTMLResponse:
        language = self.language_of(request, session)
        cookie, new = self.csrf.cookie_for(request)
        response = templates.TemplateResponse(
            request, template,
            {"t": words(language), "lang": language, "session": session,
             "csrf_token": self.csrf.token(cookie), **context},
            status_code=status_code, headers=PAGE_HEADERS,
        )
        if new:
            set_cookie(self.settings, response, CSRF_COOKIE, cookie,
                       int(SESSION_TTL.total_seconds()))
        return response

    def refusal(
        self, request: Request, title_key: str = "refused", text_key: str = "refused_text",
        status_code: int = 403, session: StaffSession | None = None,
    ) -> HTMLResponse:
        """The same page for whatever was refused: it shows no client detail."""
        return self.render(request, "refusal.html",
                           {"title_key": title_key, "text_key": text_key},
                           status_code=status_code, session=session)

    def form_refused(self, request: Request, session: StaffSession | None) -> HTMLResponse:
        return self.refusal(request, "form_refused", "form_refused_text", 403, session)


async def console(request: Request, service: Annotated[Intake, Depends(intake)]) -> Console:
    found = getattr(request.app.state, "console", None)
    if found is None:
        found = request.app.state.console = Console(service)
    request.state.staff_session = await found.open_session(request)
    return found


def to_sign_in(request: Request) -> Response:
    return RedirectResponse(f"/console/sign-in?next={request.url.path}", status_code=303)


ConsoleDep = Annotated[Console, Depends(console)]
