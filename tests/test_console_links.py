"""Escalation links: what the send activities add to a staff page, and what the console
accepts back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from activities.email import EmailActivities
from aftercare.console_links import (
    issue_escalation_token,
    read_escalation_token,
    with_escalation_link,
)
from aftercare.links import ExpiredLink, InvalidLink
from aftercare.settings import Settings
from tests.fixtures.console import ConsoleStack
from tests.followup_harness import BACKUP_EMAIL
from workflows.models import Channel, LinkAction, OutboundMessage

SECRET = "link-secret-for-tests"
NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
SETTINGS = Settings(link_secret=SECRET, public_base_url="https://aftercare.test")


def page(channel: Channel = Channel.SMS, links: list[LinkAction] | None = None) -> OutboundMessage:
    return OutboundMessage(
        workflow_id="followup-clinic-42-s-1", message_key="3-staff_page", channel=channel,
        to="+15555550111", body="Aftercare Test Clinic: a client follow-up needs you.",
        links=[LinkAction(label="Acknowledge", action="ack", value="t-oncall 123456")]
        if links is None else links)


def test_a_page_carries_a_short_link_bound_to_the_staff_member_and_escalation() -> None:
    body = with_escalation_link(SETTINGS, page(), NOW)
    first, link = body.split("\n")
    assert first == page().body and link.startswith("https://aftercare.test/e/")
    assert len(link) < 160
    found = read_escalation_token(SECRET, link.rsplit("/", 1)[1], NOW)
    assert (found.workflow_id, found.staff_id, found.code) == (
        "followup-clinic-42-s-1", "t-oncall", "123456")
    assert found.expires_at == NOW + timedelta(hours=24)


def test_messages_that_are_not_pages_are_left_as_they_are() -> None:
    assert with_escalation_link(SETTINGS, page(links=[]), NOW) == page().body
    reply = [LinkAction(label="I'm OK", action="reply", value="OK")]
    assert with_escalation_link(SETTINGS, page(links=reply), NOW) == page().body


def test_an_expired_or_altered_link_is_refused() -> None:
    token = issue_escalation_token(SECRET, "followup-clinic-42-s-1", "t-oncall", "123456", NOW)
    with pytest.raises(ExpiredLink):
        read_escalation_token(SECRET, token, NOW + timedelta(hours=24))
    payload, tag = token.split(".")
    with pytest.raises(InvalidLink):
        read_escalation_token(SECRET, f"{payload}x.{tag}", NOW)
    with pytest.raises(InvalidLink):
        read_escalation_token("another secret", token, NOW)


def test_an_emailed_page_carries_the_link_too() -> None:
    composed = EmailActivities(SETTINGS, ledger=None)._compose(page(Channel.EMAIL), NOW)
    assert "https://aftercare.test/e/" in composed.get_content()


async def test_spanish_speaking_staff_get_the_console_in_spanish(console: ConsoleStack) -> None:
    await console.imminent_followup()
    async with console.browser_client() as http:
        await console.post_form(http, "/console/sign-in",
                                {"clinic": console.clinic, "staff_id": "t-backup"})

        def mailed_code() -> str | None:
            texts = [m.text for m in console.mail.sent_to(BACKUP_EMAIL) if "acceso" in m.text]
            return texts[-1].split("es ")[1][:6] if texts else None

        code = await console.until(mailed_code, "a code in Spanish by email")
        board = await console.post_form(http, "/console/sign-in/code", {"code": code})
    assert '<html lang="es">' in board.text and "Seguimientos abiertos" in board.text
