"""Signed, expiring one-click links for emails: reply "I'm OK", acknowledge, pick a slot.

A token is ``base64url(compact JSON claim).base64url(HMAC-SHA256)``. The claim holds the
workflow id, the action, its value, the expiry and a random nonce (``jti``) so the HTTP
layer can honour each link once. It holds no PHI: anyone holding the email can read it.
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

# Binds the signature to this use, so the same secret could never sign something else
# that reads as a link.
_PURPOSE = b"aftercare-link-v1."


class InvalidLink(ValueError):
    """The token was not issued by us, was altered, or is not a token at all."""


class ExpiredLink(InvalidLink):
    """The token is genuine but its time is up."""


@dataclass(frozen=True)
class LinkClaim:
    workflow_id: str
    action: str
    value: str
    expires_at: datetime
    jti: str


def issue_link_token(
    secret: str, workflow_id: str, action: str, value: str, ttl: timedelta, now: datetime
) -> str:
    claim = {
        "wf": workflow_id,
        "act": action,
        "val": value,
        "exp": int((now + ttl).timestamp()),
        "jti": secrets.token_urlsafe(12),
    }
    payload = urlsafe_encode(json.dumps(claim, separators=(",", ":")).encode())
    return f"{payload}.{urlsafe_encode(_sign(secret, payload))}"


def read_link_token(secret: str, token: str, now: datetime) -> LinkClaim:
    payload, dot, signature = token.partition(".")
    if not dot or not payload or not signature:
        raise InvalidLink("malformed link token")
    if not hmac.compare_digest(urlsafe_decode(signature), _sign(secret, payload)):
        raise InvalidLink("link token signature does not match")
    try:
        claim = json.loads(urlsafe_decode(payload))
        parsed = LinkClaim(
            workflow_id=str(claim["wf"]),
            action=str(claim["act"]),
            value=str(claim["val"]),
            expires_at=datetime.fromtimestamp(int(claim["exp"]), UTC),
            jti=str(claim["jti"]),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidLink("malformed link token") from err
    if now >= parsed.expires_at:
        raise ExpiredLink("link token has expired")
    return parsed


def _sign(secret: str, payload: str) -> bytes:
    return hmac.new(secret.encode(), _PURPOSE + payload.encode(), hashlib.sha256).digest()


def urlsafe_encode(data: bytes) -> str:
    """URL-safe base64 without padding, as the links carry it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def urlsafe_decode(text: str, *, malformed: str = "malformed link token") -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as err:
        raise InvalidLink(malformed) from err
