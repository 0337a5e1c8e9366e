"""The email activity, through aiosmtplib, against the loopback SMTP mailbox."""

import asyncio
import dataclasses
import re
import sqlite3
from datetime import UTC, datetime

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.email import KEEP_CONNECTIONS, MAIL_SERVER_UNAVAILABLE, EmailActivities
from activities.provider_errors import CONFIGURATION_ERRORS_METRIC, PROVIDER_MISCONFIGURED
from aftercare.links.one_click import read_link_token
from aftercare.settings import Settings
from tests.fixtures.sinks import LINK_SECRET, PUBLIC_BASE_URL
from tests.metered import MeteredActivityEnvironment
from workflows.models import PERMANENT_DELIVERY_FAILURE, Channel, LinkAction, OutboundMessage

CLIENT_EMAIL = "dana@example.org"
ON_CALL_EMAIL = "oncall@clinic.example"
WORKFLOW_ID = "followup-clinic-42-s-1"


def checkin(to: str = CLIENT_EMAIL, key: str = "checkin-1") -> OutboundMessage:
    return OutboundMessage(
        workflow_id=WORKFLOW_ID,
        message_key=key,
        channel=Channel.EMAIL,
        to=to,
        subject="Checking in",
        body="Hi Dana, checking in after today. If you are in crisis, call or text 988.",
        links=[
            LinkAction(label="I'm OK", action="reply", value="OK"),
            LinkAction(label="Please call me", action="reply", value="CALL"),
        ],
    )


def attempt_of(number: int) -> ActivityEnvironment:
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(environment.info, attempt=number)
    return environment


async def send(settings, ledger, message: OutboundMessage, attempt: int = 1):
    """One attempt on a worker's activities, which it leaves once the ledger has the
    delivery (or the ledger is found unavailable for too long)."""
    async with EmailActivities(settings, ledger) as email:
        return await attempt_of(attempt).run(email.send_email, message)


class ForgetfulLedger:
    """A ledger that lost its record: what the Message-ID is there for."""

    async def find_delivery(self, workflow_id, message_key):
        return None

    async def record_delivery(self, workflow_id, message_key, delivery):
        pass

    async def provider_message_ids(self, workflow_id):
        return set()


async def test_a_checkin_arrives_with_one_signed_link_per_action(
    delivery_settings, sqlite_store, mailbox
):
    delivery = await send(delivery_settings, sqlite_store, checkin())

    [mail] = mailbox.messages
    assert mail.rcpt_tos == [CLIENT_EMAIL] and mail.mail_from == "aftercare@localhost"
    assert mail.message["Subject"] == "Checking in"
    assert mail.text.startswith(checkin().body)
    assert delivery.provider_message_id == mail.message["Message-ID"]
    links = re.findall(r"^(.+): (\S+)$", mail.text, re.MULTILINE)
    assert [label for label, _ in links] == ["I'm OK", "Please call me"]
    claims = []
    for _, url in links:
        assert url.startswith(f"{PUBLIC_BASE_URL}/r/")
        claims.append(read_link_token(LINK_SECRET, url.rpartition("/")[2], datetime.now(UTC)))
    assert [(c.workflow_id, c.action, c.value) for c in claims] == [
        (WORKFLOW_ID, "reply", "OK"),
        (WORKFLOW_ID, "reply", "CALL"),
    ]


async def test_a_retry_of_a_mail_the_server_accepted_mails_the_client_once(
    delivery_settings, sqlite_store, mailbox
):
    first = await send(delivery_settings, sqlite_store, checkin())
    again = await send(delivery_settings, sqlite_store, checkin(), attempt=2)

    assert len(mailbox.messages) == 1
    assert again.already_sent and again.provider_message_id == first.provider_message_id


async def test_a_copy_sent_without_the_ledger_carries_the_same_message_id(
    delivery_settings, mailbox
):
    await send(delivery_settings, ForgetfulLedger(), checkin())
    await send(delivery_settings, ForgetfulLedger(), checkin(), attempt=2)
    await send(delivery_settings, ForgetfulLedger(), checkin(key="reminder-1"))

    first, copy, reminder = (mail.message["Message-ID"] for mail in mailbox.messages)
    assert first == copy != reminder


async def test_a_bounced_address_fails_permanently_without_naming_it(
    delivery_settings, sqlite_store, mailbox
):
    with pytest.raises(ApplicationError) as failure:
        await send(delivery_settings, sqlite_store, checkin(to="bounce@example.org"))

    assert failure.value.type == PERMANENT_DELIVERY_FAILURE
    assert failure.value.non_retryable
    assert "bounce" not in str(failure.value) and "example.org" not in str(failure.value)
    assert failure.value.__cause__ is None and failure.value.__suppress_context__
    assert mailbox.messages == []
    assert await sqlite_store.find_delivery(WORKFLOW_ID, "checkin-1") is None


async def test_a_mailbox_busy_for_now_is_retried_and_then_mails_once(
    delivery_settings, sqlite_store, mailbox
):
    mailbox.defer_next()

    with pytest.raises(ApplicationError) as failure:
        await send(delivery_settings, sqlite_store, checkin())
    assert failure.value.type == MAIL_SERVER_UNAVAILABLE
    assert not failure.value.non_retryable
    assert CLIENT_EMAIL not in str(failure.value)

    await send(delivery_settings, sqlite_store, checkin(), attempt=2)
    assert len(mailbox.messages) == 1


async def test_an_unreachable_mail_server_is_retried(delivery_settings, sqlite_store, mailbox):
    await mailbox.stop()

    with pytest.raises(ApplicationError) as failure:
        await send(delivery_settings, sqlite_store, checkin())

    assert failure.value.type == MAIL_SERVER_UNAVAILABLE
    assert not failure.value.non_retryable


async def test_emails_cannot_be_sent_without_a_secret_to_sign_their_links(sqlite_store):
    with pytest.raises(ValueError, match="AFTERCARE_LINK_SECRET"):
        EmailActivities(Settings(link_secret=None), sqlite_store)


@pytest.mark.parametrize(("login", "code"), [(("aftercare", "typo"), 535), (None, 530)],
                         ids=["wrong password", "no login"])
async def test_a_mail_server_refusing_our_login_is_the_operators_to_fix_not_the_clients(
    delivery_settings, sqlite_store, mailbox, caplog, login, code
):
    mailbox.require_login("aftercare", "right-password")
    username, password = login or (None, None)
    settings = delivery_settings.model_copy(
        update={"smtp_username": username, "smtp_password": password})
    environment = MeteredActivityEnvironment()

    with pytest.raises(ApplicationError) as failure:
        async with EmailActivities(settings, sqlite_store) as email:
            await environment.run(email.send_email, checkin())

    assert failure.value.type == PROVIDER_MISCONFIGURED, "retried, never a fallback"
    assert not failure.value.non_retryable and str(code) in str(failure.value)
    [(count, labels)] = environment.counted(CONFIGURATION_ERRORS_METRIC)
    assert count == 1 and {"provider": "smtp", "code": str(code)}.items() <= labels.items()
    [logged] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "smtp refused our account or settings" in logged.getMessage()
    assert CLIENT_EMAIL not in caplog.text

    fixed = settings.model_copy(update={"smtp_password": "right-password",
                                        "smtp_username": "aftercare"})
    await send(fixed, sqlite_store, checkin())
    assert len(mailbox.messages) == 1


async def test_a_mail_server_answering_slowly_gives_up_within_the_whole_conversations_limit(
    delivery_settings, sqlite_store, mailbox
):
    # Each answer comes within the per-command timeout; the conversation as a whole does not.
    mailbox.answer_slowly(0.6)
    settings = delivery_settings.model_copy(update={"smtp_timeout_seconds": 1.0})
    started = asyncio.get_running_loop().time()

    with pytest.raises(ApplicationError) as failure:
        await send(settings, sqlite_store, checkin())

    assert failure.value.type == MAIL_SERVER_UNAVAILABLE and not failure.value.non_retryable
    assert asyncio.get_running_loop().time() - started < 1.5


async def test_a_page_mailed_while_the_store_is_locked_goes_out_and_the_ledger_catches_up(
    delivery_settings, sqlite_store, mailbox, tmp_path
):
    holder = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        async with EmailActivities(delivery_settings, sqlite_store) as email:
            page = await attempt_of(1).run(email.send_email, checkin(to=ON_CALL_EMAIL,
                                                                     key="page"))
            [mail] = mailbox.messages
            assert page.provider_message_id == mail.message["Message-ID"]
            assert await sqlite_store.find_delivery(WORKFLOW_ID, "page") is None
            holder.execute("ROLLBACK")
    finally:
        holder.close()

    recorded = await sqlite_store.find_delivery(WORKFLOW_ID, "page")
    assert recorded.provider_message_id == mail.message["Message-ID"]


async def test_a_worker_mails_over_one_kept_connection(delivery_settings, sqlite_store, mailbox):
    async with EmailActivities(delivery_settings, sqlite_store) as email:
        for n in range(5):
            await attempt_of(1).run(email.send_email, checkin(key=f"reminder-{n}"))

    assert len(mailbox.messages) == 5
    assert len({mail.message["Message-ID"] for mail in mailbox.messages}) == 5
    assert mailbox.connections == 1


@pytest.mark.parametrize("saying_421", [False, True], ids=["closed", "421 then closed"])
async def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_next_mail(
    delivery_settings, sqlite_store, mailbox, saying_421
):
    async with EmailActivities(delivery_settings, sqlite_store) as email:
        await attempt_of(1).run(email.send_email, checkin(key="checkin-1"))
        mailbox.close_connections(saying_421=saying_421)
        await asyncio.sleep(0.1)  # the close reaches the client's side
        delivery = await attempt_of(1).run(email.send_email, checkin(key="reminder-1"))
        await attempt_of(1).run(email.send_email, checkin(key="reminder-2"))

    assert not delivery.already_sent
    assert len(mailbox.sent_to(CLIENT_EMAIL)) == 3
    assert len({mail.message["Message-ID"] for mail in mailbox.messages}) == 3
    assert mailbox.connections == 2, "one new connection, then kept again"


async def test_a_connection_lost_mid_message_fails_the_attempt_and_the_retry_mails_once(
    delivery_settings, sqlite_store, mailbox
):
    async with EmailActivities(delivery_settings, sqlite_store) as email:
        await attempt_of(1).run(email.send_email, checkin(key="checkin-1"))
        mailbox.drop_during_next_data()
        with pytest.raises(ApplicationError) as failure:
            await attempt_of(1).run(email.send_email, checkin(key="reminder-1"))
        assert failure.value.type == MAIL_SERVER_UNAVAILABLE
        assert not failure.value.non_retryable
        retried = await attempt_of(2).run(email.send_email, checkin(key="reminder-1"))
        again = await attempt_of(3).run(email.send_email, checkin(key="reminder-1"))

    assert not retried.already_sent and again.already_sent
    assert [m.message["Message-ID"] for m in mailbox.messages] == [
        m.message["Message-ID"] for m in mailbox.messages[:1]] + [retried.provider_message_id]
    assert mailbox.connections == 2


async def test_mails_sent_at_once_each_get_a_connection_and_the_worker_keeps_a_few(
    delivery_settings, sqlite_store, mailbox
):
    async with EmailActivities(delivery_settings, sqlite_store) as email:
        await asyncio.gather(*(attempt_of(1).run(email.send_email, checkin(key=f"page-{n}"))
                               for n in range(8)))
        after_burst = mailbox.connections
        for n in range(KEEP_CONNECTIONS):
            await attempt_of(1).run(email.send_email, checkin(key=f"reminder-{n}"))

    assert len(mailbox.messages) == 8 + KEEP_CONNECTIONS
    assert mailbox.connections == after_burst, "later mail goes over the kept connections"
