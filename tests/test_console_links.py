"""Escalation links: what the send activities add to a staff page, and what the console
accepts back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from activities.email import EmailActivities
from aftercare.links.escalation import (
    issue_escalation_token,
    link_expires_at,
    read_escalation_token,
    with_escalation_link,
)
from aftercare.links.one_click import InvalidLink
from aftercare.settings import Settings
from tests.fixtures.console import ConsoleStack
from tests.followup_harness import BACKUP_EMAIL
from workflows.models import Channel, LinkAction, OutboundMessage
from workflows.trail import TrailBuilder

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
    body = with_escalation_link(SETTINGS, page())
    first, link = body.split("\n")
    assert first == page().body and link.startswith("https://aftercare.test/e/")
    assert len(link) < 160
    found = read_escalation_token(SECRET, link.rsplit("/", 1)[1])
    assert (found.workflow_id, found.staff_id, found.code) == (
        "followup-clinic-42-s-1", "t-oncall", "123456")


def test_a_retried_send_writes_the_same_text_and_another_page_another_link() -> None:
    assert with_escalation_link(SETTINGS, page()) == with_escalation_link(SETTINGS, page())
    later = page().model_copy(update={"message_key": "7-staff_page"})
    assert with_escalation_link(SETTINGS, later) != with_escalation_link(SETTINGS, page())


def test_messages_that_are_not_pages_are_left_as_they_are() -> None:
    assert with_escalation_link(SETTINGS, page(links=[])) == page().body
    reply = [LinkAction(label="I'm OK", action="reply", value="OK")]
    assert with_escalation_link(SETTINGS, page(links=reply)) == page().body


def test_an_altered_link_is_refused() -> None:
    token = issue_escalation_token(SECRET, "followup-clinic-42-s-1", "t-oncall", "123456",
                                   "3-staff_page")
    payload, tag = token.split(".")
    with pytest.raises(InvalidLink):
        read_escalation_token(SECRET, f"{payload}x.{tag}")
    with pytest.raises(InvalidLink):
        read_escalation_token("another secret", token)


def test_a_link_lasts_a_day_after_the_newest_page_to_its_staff_member() -> None:
    trail = TrailBuilder("followup-clinic-42-s-1")
    trail.add(NOW, "escalation_started", detail={"code": "111111"})
    trail.add(NOW, "staff_page_sent", recipient="staff:t-oncall")
    trail.add(NOW + timedelta(hours=3), "staff_page_sent", recipient="staff:t-backup")
    trail.add(NOW + timedelta(hours=5), "staff_page_sent", recipient="staff:t-oncall")
    trail.add(NOW + timedelta(hours=6), "escalation_started", detail={"code": "222222"})
    assert link_expires_at(trail.entries, "111111", "t-oncall") == NOW + timedelta(hours=29)
    assert link_expires_at(trail.entries, "111111", "t-backup") == NOW + timedelta(hours=27)
    assert link_expires_at(trail.entries, "222222", "t-oncall") is None


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
    # Where the follow-up stands and why, in words: no identifier like "escalating".
    assert "avisando al personal" in board.text and "riesgo inminente" in board.text
