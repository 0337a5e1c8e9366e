"""The staff console's credentials: session cookies, sign-in challenges and CSRF tokens.

Each is a signed claim, keyed from ``AFTERCARE_LINK_SECRET`` with its own purpose, so
the API keeps no state of its own and scales out; what must be remembered across processes
(challenges and their tries, sessions and whether they ended, links used) lives in the
audit store (``aftercare.trail.console_access``). Cookies are HttpOnly and
SameSite=Strict, Secure behind https (``AFTERCARE_CONSOLE_SECURE_COOKIES``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request, Response

from aftercare.settings import Settings

SESSION_COOKIE = "aftercare_staff"
CHALLENGE_COOKIE = "aftercare_sign_in"
CSRF_COOKIE = "aftercare_csrf"
SESSION_TTL = timedelta(hours=12)


class Signer:
    """Signs and reads small JSON claims; a claim read back past its ``exp`` is None."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"aftercare-console-v1", hashlib.sha256).digest()

    def mac(self, purpose: str, text: str) -> str:
        digest = hmac.new(self._key, f"{purpose}.{text}".encode(), hashlib.sha256).digest()
        return _b64encode(digest)

    def sign(self, purpose: str, claim: dict[str, Any]) -> str:
        payload = _b64encode(json.dumps(claim, separators=(",", ":")).encode())
        return f"{payload}.{self.mac(purpose, payload)}"

    def read(self, purpose: str, token: str | None, now: datetime) -> dict[str, Any] | None:
        payload, _, mac = (token or "").partition(".")
        expected = self.mac(purpose, payload).encode()
        if not payload or not hmac.compare_digest(mac.encode(), expected):
            return None
        try:
            claim = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            expires = datetime.fromtimestamp(int(claim["exp"]), UTC)
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        return claim if now < expires else None


@dataclass(frozen=True)
class StaffSession:
    """Who is signed in. ``followups`` None: signed in with a code, the whole clinic's
    console; otherwise opened from escalation links, good for those follow-ups only.
    ``session_id`` names it in the audit store, which ends it at sign-out."""

    staff_id: str
    clinic_id: str
    expires_at: datetime
    session_id: str
    followups: tuple[str, ...] | None = None

    @property
    def actor(self) -> str:
        """How the access log names this person."""
        return staff_actor(self.clinic_id, self.staff_id)

    @property
    def followup(self) -> str | None:
        """For a session opened from links, the follow-up of the newest one."""
        return self.followups[-1] if self.followups else None

    def may_open(self, workflow_id: str) -> bool:
        return self.followups is None or workflow_id in self.followups

    def with_followup(self, workflow_id: str) -> StaffSession:
        """The same session, also good for ``workflow_id`` (a full session already is)."""
        if self.may_open(workflow_id):
            return self
        return replace(self, followups=(*(self.followups or ()), workflow_id))


def staff_actor(clinic_id: str, staff_id: str) -> str:
    return f"staff:{clinic_id}/{staff_id}"


def new_session(staff_id: str, clinic_id: str, now: datetime,
                followup: str | None = None) -> StaffSession:
    return StaffSession(staff_id, clinic_id, now + SESSION_TTL, secrets.token_urlsafe(24),
                        None if followup is None else (followup,))


def read_session(signer: Signer, request: Request, now: datetime) -> StaffSession | None:
    """The session the cookie claims; whether it has ended is the audit store's to say."""
    claim = signer.read("session", request.cookies.get(SESSION_COOKIE), now)
    if claim is None or "sid" not in claim:
        return None
    followups = claim.get("f")
    return StaffSession(staff_id=claim["s"], clinic_id=claim["c"],
                        expires_at=datetime.fromtimestamp(claim["exp"], UTC),
                        session_id=claim["sid"],
                        followups=None if followups is None else tuple(followups))


def set_session_cookie(
    signer: Signer, settings: Settings, response: Response, session: StaffSession, now: datetime
) -> None:
    claim = {"sid": session.session_id, "s": session.staff_id, "c": session.clinic_id,
             "exp": int(session.expires_at.timestamp()), "f": session.followups}
    set_cookie(settings, response, SESSION_COOKIE, signer.sign("session", claim),
               int((session.expires_at - now).total_seconds()))


def set_cookie(
    settings: Settings, response: Response, name: str, value: str, max_age: int
) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="strict", secure=settings.console_cookies_secure)


class Csrf:
    """Signed double-submit: a random cookie, and in every form its MAC. A form posted from
    another site carries no token; a form posted without its field is refused too."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    def cookie_for(self, request: Request) -> tuple[str, bool]:
        """The browser's CSRF cookie, or a new one; True when it must be set."""
        cookie = request.cookies.get(CSRF_COOKIE)
        return (cookie, False) if cookie else (secrets.token_urlsafe(24), True)

    def token(self, cookie: str) -> str:
        return self._signer.mac("csrf", cookie)

    def accepts(self, request: Request, submitted: str | None) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE)
        if not cookie or not submitted:
            return False
        return hmac.compare_digest(submitted.encode(), self.token(cookie).encode())


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
