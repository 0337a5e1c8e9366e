"""The staff console's credentials: session cookies, sign-in challenges and CSRF tokens.

Each is a signed claim, keyed from ``AFTERCARE_LINK_SECRET`` with its own purpose, so
the API stays stateless and scales out; what must be remembered across processes (codes
sent, wrong codes, links used) lives in the audit store. Cookies are HttpOnly and
SameSite=Strict, Secure behind https (``AFTERCARE_CONSOLE_SECURE_COOKIES``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
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
    """Who is signed in. ``followup`` set: opened from an escalation link, good for that
    follow-up only; None: signed in with a code, the whole clinic's console."""

    staff_id: str
    clinic_id: str
    expires_at: datetime
    followup: str | None = None

    @property
    def actor(self) -> str:
        """How the access log names this person."""
        return f"staff:{self.clinic_id}/{self.staff_id}"


def read_session(signer: Signer, request: Request, now: datetime) -> StaffSession | None:
    claim = signer.read("session", request.cookies.get(SESSION_COOKIE), now)
    if claim is None:
        return None
    return StaffSession(staff_id=claim["s"], clinic_id=claim["c"],
                        expires_at=datetime.fromtimestamp(claim["exp"], UTC),
                        followup=claim.get("f"))


def start_session(
    signer: Signer, settings: Settings, response: Response, session: StaffSession, now: datetime
) -> None:
    claim = {"s": session.staff_id, "c": session.clinic_id,
             "exp": int(session.expires_at.timestamp()), "f": session.followup}
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
