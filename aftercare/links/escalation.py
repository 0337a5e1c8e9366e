"""Short signed links from a staff page to its escalation in the staff console.

Every page (SMS or email) to a staff member carries one: bound to that staff member,
that follow-up and that escalation's code. The console refuses it once the escalation has
closed or a newer one has opened, 24 hours after the newest page to that staff member,
and after its first use.

A token is ``base64url(JSON [workflow id, staff id, code, nonce]).base64url(MAC)`` with a
128-bit HMAC-SHA256 tag: short enough for a text. It holds no PHI. It is a function of the
message alone (the nonce derives from the follow-up and the message key), so a retried
send writes the same text and the SMS activity can recognise a copy Twilio already took.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from aftercare.links.one_click import InvalidLink, urlsafe_decode, urlsafe_encode
from aftercare.settings import Settings
from workflows.models import AuditEntry, OutboundMessage

ESCALATION_LINK_TTL = timedelta(hours=24)
ESCALATION_LINK_PATH = "/e/"
# Binds the tag to this use: the same secret signs email links for another purpose.
_PURPOSE = b"aftercare-escalation-link-v1."
_TAG_BYTES = 16
_MALFORMED = "malformed escalation link"


@dataclass(frozen=True)
class EscalationLink:
    workflow_id: str
    staff_id: str
    code: str
    nonce: str


def issue_escalation_token(
    secret: str, workflow_id: str, staff_id: str, code: str, message_key: str
) -> str:
    nonce = urlsafe_encode(_tag(secret, f"nonce.{workflow_id}\n{message_key}")[:6])
    claim = [workflow_id, staff_id, code, nonce]
    payload = urlsafe_encode(json.dumps(claim, separators=(",", ":")).encode())
    return f"{payload}.{urlsafe_encode(_tag(secret, payload))}"


def read_escalation_token(secret: str, token: str) -> EscalationLink:
    payload, dot, tag = token.partition(".")
    if not dot or not payload or not tag:
        raise InvalidLink(_MALFORMED)
    if not hmac.compare_digest(urlsafe_decode(tag, malformed=_MALFORMED),
                               _tag(secret, payload)):
        raise InvalidLink("escalation link signature does not match")
    try:
        claim = urlsafe_decode(payload, malformed=_MALFORMED)
        workflow_id, staff_id, code, nonce = json.loads(claim)
    except (ValueError, TypeError) as err:
        raise InvalidLink(_MALFORMED) from err
    return EscalationLink(workflow_id=str(workflow_id), staff_id=str(staff_id), code=str(code),
                          nonce=str(nonce))


def link_expires_at(trail: Sequence[AuditEntry], code: str, staff_id: str) -> datetime | None:
    """24 hours after the newest page to ``staff_id`` since the escalation with ``code``
    started; None while that page is still on its way into the trail."""
    since_seq = max((entry.seq for entry in trail if entry.step == "escalation_started"
                     and entry.detail.get("code") == code), default=0)
    pages = [entry.at for entry in trail
             if entry.seq > since_seq and entry.step == "staff_page_sent"
             and entry.recipient == f"staff:{staff_id}"]
    return max(pages) + ESCALATION_LINK_TTL if pages else None


def with_escalation_link(settings: Settings, message: OutboundMessage) -> str:
    """The message's body, with the escalation page's link on its own line when the
    message is a page (it carries an ``ack`` action naming the staff member and code)."""
    page = next((link for link in message.links if link.action == "ack"), None)
    if page is None or not settings.link_secret or not settings.public_base_url:
        return message.body
    staff_id, _, code = page.value.partition(" ")
    if not staff_id or not code:
        return message.body
    token = issue_escalation_token(settings.link_secret, message.workflow_id, staff_id, code,
                                   message.message_key)
    return f"{message.body}\n{settings.public_base_url.rstrip('/')}{ESCALATION_LINK_PATH}{token}"


def _tag(secret: str, payload: str) -> bytes:
    digest = hmac.new(secret.encode(), _PURPOSE + payload.encode(), hashlib.sha256).digest()
    return digest[:_TAG_BYTES]

