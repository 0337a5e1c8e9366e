"""One-click links from emails: "I'm OK", "Please call me", "Book slot A", "Acknowledge".

Opening a link (GET) only shows what it will do, with one button; the button (POST) does
it. Mail scanners and link previews open every link in an email: were GET to act, a
scanner could tell the clinic a client is safe before the client has read the message.
A link works once and until it expires; a used, expired or altered one gets a 4xx page
and records nothing. A link is spent only by an action that happened (or that the
follow-up refused): when passing it on fails, the link works again and the page says so.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import HTMLResponse

from aftercare.followups import actions
from aftercare.followups.errors import ActionRefused, FollowUpNotFound
from aftercare.links.one_click import ExpiredLink, InvalidLink, LinkClaim, read_link_token
from aftercare.logs import get_logger
from api.intake import Intake, intake
from api.metrics import intake_events, one_of
from api.pages import confirm_page, page
from api.problems import PROBLEM_CONTENT, problems
from workflows.models import Acknowledge, ClientReply, clinic_of_followup

router = APIRouter(tags=["email links"])
log = get_logger("aftercare.api.links")

Service = Annotated[Intake, Depends(intake)]
# The shape is checked here, not by FastAPI, so a link cut short gets a page, not JSON.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
Token = Annotated[str, Path(
    max_length=2000, description="The signed token from the email",
    json_schema_extra={"pattern": f"^{TOKEN_SHAPE.pattern}$"})]

_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
PAGES = {
    200: {**_HTML, "description": "What the link does, or that it was done"},
    400: {**_HTML, "description": "Not the shape of a link: it was cut short"},
    403: {**_HTML, "description": "The link was altered or is not one of ours"},
    409: {**_HTML, "description": "The link was used already, or the follow-up refused it"},
    410: {**_HTML, "description": "The link has expired, or its follow-up has closed"},
    **problems(422),
    503: {
        "content": {**_HTML["content"], **PROBLEM_CONTENT},
        "description": "Temporal is unreachable, or the answer could not be passed on "
        "(a page: the link still works)",
    },
}

_WHAT_IT_DOES = {
    ("reply", "OK"): ("I'm OK", "Let your care team know you are OK."),
    ("reply", "CALL"): ("Please call me", "Ask your care team to call you."),
    ("ack", ""): ("Acknowledge", "Take this escalation: the next level will not be paged."),
    ("reschedule", ""): ("Book this time", "Book the session time offered as option {value}."),
}

LINK_ACTIONS = frozenset(action for action, _ in _WHAT_IT_DOES)


def what_it_does(claim: LinkClaim) -> tuple[str, str]:
    button, text = (_WHAT_IT_DOES.get((claim.action, claim.value))
                    or _WHAT_IT_DOES.get((claim.action, ""), ("Send", "Send your answer.")))
    return button, text.format(value=claim.value)


async def usable_claim(service: Intake, token: str) -> LinkClaim | HTMLResponse:
    """The link's claim, or the page explaining why it cannot be used."""
    secret = service.settings.link_secret
    if not secret:
        return page("Links are switched off", "This service signs no links.", 503)
    if not TOKEN_SHAPE.fullmatch(token):
        return not_valid_page(400)
    try:
        claim = read_link_token(secret, token, datetime.now(UTC))
    except ExpiredLink:
        intake_events.labels("link", "expired").inc()
        return page("This link has expired",
                    "Please reply to the message instead, or call your care team.", 410)
    except InvalidLink:
        return not_valid_page(403)
    if await (await service.audit_store()).link_used(claim.jti):
        return used_page()
    return claim


def not_valid_page(status_code: int) -> HTMLResponse:
    """400: not the shape of a link (cut short); 403: the shape, but not signed by us."""
    intake_events.labels("link", "invalid").inc()
    return page("This link is not valid",
                "It may have been cut short or changed. Please reply to the message instead, "
                "or call your care team.", status_code)


def used_page() -> HTMLResponse:
    intake_events.labels("link", "reused").inc()
    return page("This link was already used",
                "Your answer was received the first time: nothing more is needed.", 409)


@router.get("/r/{token}", response_class=HTMLResponse, responses=PAGES)
async def open_link(token: Token, service: Service) -> HTMLResponse:
    """Show what the link will do, with a button to do it."""
    claim = await usable_claim(service, token)
    if isinstance(claim, HTMLResponse):
        return claim
    button, text = what_it_does(claim)
    return confirm_page(button, text, button, f"/r/{token}")


@router.post("/r/{token}", response_class=HTMLResponse, responses=PAGES)
async def use_link(token: Token, service: Service) -> HTMLResponse:
    """Do what the link says, once."""
    claim = await usable_claim(service, token)
    if isinstance(claim, HTMLResponse):
        return claim
    client = await service.temporal()  # unreachable → 503 before the link is spent
    store = await service.audit_store()
    if not await store.use_link(claim.jti, claim.workflow_id, claim.action, datetime.now(UTC)):
        return used_page()
    try:
        if claim.action == "ack":
            staff_id, _, code = claim.value.partition(" ")
            result = await actions.acknowledge(
                client, claim.workflow_id, Acknowledge(staff_id=staff_id, code=code or None))
            done = result.message
        else:
            await actions.send_reply(
                client, claim.workflow_id, ClientReply(text=claim.value, channel="link"))
            done = "Thank you. Your care team has your answer."
    except ActionRefused as err:
        return page("Nothing was changed", str(err), 409)
    except FollowUpNotFound:
        return page("This follow-up has closed", "Nothing more is needed from you.", 410)
    except Exception as err:  # noqa: BLE001 - whatever failed, the answer did not arrive
        # A "Please call me" must not vanish behind "your answer was received": the link
        # works again, and the page says so and who to call meanwhile.
        await store.release_link(claim.jti)
        log.warning("link action failed; link released", action=claim.action,
                    error=type(err).__name__)
        intake_events.labels("link", "failed").inc()
        return not_passed_on_page(service, claim)
    intake_events.labels("link", one_of(claim.action, LINK_ACTIONS)).inc()
    return page("Done", done)


def not_passed_on_page(service: Intake, claim: LinkClaim) -> HTMLResponse:
    clinic_id = clinic_of_followup(claim.workflow_id) or "default"
    policy = service.policies.for_clinic(clinic_id)
    call = (f" If it cannot wait, call {policy.clinic_name} at {policy.clinic_phone}."
            if policy.clinic_phone else "")
    return page(
        "Your answer did not reach your care team",
        "Something went wrong on our side and nothing was recorded. Please press the "
        f"button again in a few minutes: this link still works.{call} "
        + policy.crisis_line_for(policy.default_language),
        503,
    )
