"""The fault suite: follow-ups run by real processes (a Temporal dev server on its own
database, worker processes, the loopback SMS outbox and mail server) while those processes
are killed, restarted or refuse mail. Each test prints one line of figures and asserts the
zeros: no follow-up failed, no silent client (nobody paged about a client who never
answered), no message sent twice, every stored chain verifying, every page on time."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from temporalio.client import Client, WorkflowHandle

from activities.delivery_ledger import CRASH_EXIT_CODE
from aftercare.followups import actions
from aftercare.followups.start import start_followup
from aftercare.policies import PolicyBook
from aftercare.trail.store import AuditStore
from tests.fault_stack import (
    ON_CALL_PHONE,
    DevServer,
    Figures,
    check_trail,
    duplicates,
    failed,
    first_page_at,
    replays,
    seconds_policy_file,
    start_worker,
    stop_group,
    until_trail_stored,
)
from tests.fixtures.followups import worker_environment
from tests.followup_harness import CLIENT_EMAIL, CLIENT_PHONE, FollowUpHarness, make_event
from workflows.followup import DepartureFollowUp
from workflows.models import (
    Acknowledge,
    ClientReply,
    DepartureEvent,
    FollowUpStatus,
    Resolve,
    RiskLevel,
)
from workflows.trail import first_break

# The demo clinic's seconds timings at high risk: check-in 3 s after departure, a 15 s window.
CHECKIN_DELAY = timedelta(seconds=3)
RESPONSE_WINDOW = timedelta(seconds=15)
TIMER_TICK = 2.0  # seconds: a timer firing, its workflow task and the send
# A task handed to a worker that then died waits this long before another worker gets it.
WORKFLOW_TASK_TIMEOUT = 10.0


def demo_event(number: int = 0) -> DepartureEvent:
    """A high-risk departure at the demo clinic; each ``number`` has its own client and
    emergency contact, so identical texts to one number can only be duplicates."""
    event = make_event("high", phone=f"+1555555{2000 + number}",
                       email=f"client{number}@example.org")
    contact = event.emergency_contact.model_copy(update={"phone": f"+1555555{3000 + number}"})
    return event.model_copy(update={"clinic_id": "demo", "emergency_contact": contact})


@pytest.fixture
def fault_settings(tmp_path, delivery_settings, sqlite_url, encryption_keys, booking_sink):
    policy = seconds_policy_file(tmp_path, booking_sink.webhook_url("demo"),
                                 listen_after_close="PT2S")
    return delivery_settings.model_copy(update={
        "task_queue": f"tq-{uuid.uuid4()}", "audit_database_url": sqlite_url,
        "encryption_keys": encryption_keys, "lookup_secret": "lookup-secret-for-tests",
        "policy_file": policy,
    })


def environment(settings, address: str) -> dict[str, str]:
    return {**worker_environment(settings, address),
            "AFTERCARE_POLICY_FILE": str(settings.policy_file)}


async def status_of(handle: WorkflowHandle) -> FollowUpStatus:
    return await asyncio.wait_for(handle.query(DepartureFollowUp.status), 15)


async def until(check, what: str, timeout: float):  # noqa: ANN001, ANN201
    """Poll ``check()`` (async, returns a value or None) in real time, bounded."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            found = await check()
        except Exception as err:  # noqa: BLE001 - a server or worker coming back answers late
            found, last_error = None, err
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"never happened within {timeout:.0f} s: {what}"
                        + (f" (last error: {last_error})" if last_error else ""))
        await asyncio.sleep(0.3)


async def step_seen(handle: WorkflowHandle, step: str) -> FollowUpStatus | None:
    status = await status_of(handle)
    return status if step in [e.step for e in status.trail] else None


def page_due(status: FollowUpStatus) -> datetime:
    """When the no-reply page falls due by the protocol: the response window counts from the
    check-in's acceptance; a check-in no channel took pages at the end of the window it was
    planned for (the trail records the plan in ``checkin_scheduled``)."""
    accepted = [e.at for e in status.trail if e.step == "checkin_sent"]
    if accepted:
        return accepted[0] + RESPONSE_WINDOW
    [scheduled] = [e for e in status.trail if e.step == "checkin_scheduled"]
    return datetime.fromisoformat(scheduled.detail["due"]) + RESPONSE_WINDOW


async def ack_and_resolve(handle: WorkflowHandle) -> None:
    await asyncio.wait_for(handle.execute_update(
        DepartureFollowUp.acknowledge, Acknowledge(staff_id="oncall-demo")), 30)
    await asyncio.wait_for(handle.execute_update(
        DepartureFollowUp.resolve, Resolve(staff_id="oncall-demo", outcome="reached_client")), 30)


async def test_temporal_killed_and_restarted_on_its_database_mid_wait(
    tmp_path: Path, fault_settings, sms_outbox, mailbox,
):
    settings = fault_settings
    server = DevServer(tmp_path)
    worker = None
    store = await AuditStore.open(settings.audit_database_url)
    figures = Figures("Temporal restarted", followups=1)
    try:
        await server.start()
        worker = start_worker(environment(settings, server.address), tmp_path / "worker.log")
        client = await server.client(settings)
        started = await start_followup(client, settings, PolicyBook.load(settings.policy_file),
                                       demo_event())
        handle = client.get_workflow_handle_for(DepartureFollowUp.run, started.workflow_id)
        status = await until(lambda: step_seen(handle, "checkin_sent"), "check-in sent", 60)
        due = page_due(status)

        # The server dies mid-wait: the reminder and the no-reply page fall due while it is down.
        await asyncio.sleep(3)
        killed_at = time.monotonic()
        server.stop(signal.SIGKILL)
        await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 3)
        await server.start()
        outage = time.monotonic() - killed_at
        client = await server.client(settings)
        handle = client.get_workflow_handle_for(DepartureFollowUp.run, started.workflow_id)

        status = await until(lambda: step_seen(handle, "escalation_started"), "escalation", 90)
        code = status.escalation.code
        paged_at = await until(lambda: _async(first_page_at(sms_outbox, mailbox, code)),
                               "the on-call page in the outbox", 90)
        lateness = (paged_at - due).total_seconds()
        figures.pages, figures.max_lateness = 1, max(0.0, lateness)
        if lateness > outage:
            figures.late_pages.append(f"{handle.id}: {lateness:.1f} s late, outage {outage:.1f} s")

        await ack_and_resolve(handle)
        outcome = await asyncio.wait_for(handle.result(), 90)
        if await failed(handle):
            figures.failed.append(handle.id)
        figures.duplicates = duplicates(sms_outbox, mailbox)
        if problem := await until_trail_stored(handle, store):
            figures.broken_chains.append(problem)
        stored = await store.entries(handle.id)
        assert [e.hash for e in stored] == [e.hash for e in outcome.trail]
        if discrepancies := await replays(client, handle, store, settings):
            figures.unreplayable.append(f"{handle.id}: {discrepancies}")
    finally:
        stop_group(worker, signal.SIGTERM, timeout=40)
        server.stop(signal.SIGKILL)
        await store.close()

    print(f"outage {outage:.1f} s; page due {due:%H:%M:%S}, reached the outbox "
          f"{lateness:.1f} s after")
    figures.assert_zeros()
    assert "no reply" in [m.body for m in sms_outbox.sent_to(ON_CALL_PHONE)][0]


async def _async(value):  # noqa: ANN001, ANN202
    return value


CRISIS = "i cant do this anymore, i want to kill myself"
# Each later worker lives this many seconds before SIGKILL. In every run the first two
# follow-ups answer "OK" after their check-in; the others never answer.
KILLS_AFTER = (4.0, 5.0, 5.0)
LONG_KILLS_AFTER = (4.0, 5.0, 5.0, 3.0, 6.0, 4.0, 5.0)


@pytest.mark.parametrize(("followups_started", "kills_after"), [
    pytest.param(4, KILLS_AFTER, id="4-followups"),
    pytest.param(8, LONG_KILLS_AFTER, id="8-followups", marks=pytest.mark.long),
])
async def test_workers_killed_again_and_again_fail_no_followup_and_send_nothing_twice(
    tmp_path: Path, fault_settings, sms_outbox, mailbox, followups_started: int,
    kills_after: tuple[float, ...],
):
    """Follow-ups (two answer "OK", one texts a crisis through the intake, the rest never
    answer) while the worker is killed again and again: once by itself right after the
    outbox accepted a text, then by SIGKILL. Status
    queries keep arriving throughout, as the staff console's would: before workers kept no
    follow-up in memory, a query answered by a worker that did not hold the follow-up left
    it with state its history could not explain, and about half these runs ended with a
    follow-up that no longer replayed (``Timer fired event did not have expected timer id``).
    The long mode (``make chaos``) runs twice the follow-ups through twice the kills."""
    settings = fault_settings
    server = DevServer(tmp_path)
    env_ = None
    worker = None
    store = await AuditStore.open(settings.audit_database_url)
    figures = Figures("workers killed", followups=followups_started)
    replying = set()
    kills, allowed = 0, 0.0
    try:
        await server.start()
        env_ = environment(settings, server.address)
        log = tmp_path / "worker.log"
        # The first incarnation exits the moment a provider accepts its first message,
        # before the delivery ledger hears of it.
        worker = start_worker({**env_, "AFTERCARE_TEST_CRASH_AFTER": "provider_accepts"}, log)
        client = await server.client(settings)
        book = PolicyBook.load(settings.policy_file)
        handles: list[WorkflowHandle] = []
        for number in range(followups_started):
            started = await start_followup(client, settings, book, demo_event(number))
            handles.append(client.get_workflow_handle_for(DepartureFollowUp.run,
                                                          started.workflow_id))
        replying = {h.id for h in handles[:2]}
        in_crisis = handles[2]
        answering = asyncio.create_task(_answer_after_checkin(
            client, [(h, "OK") for h in handles if h.id in replying] + [(in_crisis, CRISIS)]))

        exit_code = await asyncio.wait_for(asyncio.to_thread(worker.wait, 90), 100)
        assert exit_code == CRASH_EXIT_CODE, "the worker died right after the provider accepted"
        kills += 1
        # The next one exits the moment a batch of the trail is committed, before Temporal
        # hears of it: its successor must store the same entries again, as a no-op.
        worker = start_worker({**env_, "AFTERCARE_TEST_CRASH_AFTER": "audit_commit"}, log)
        exit_code = await asyncio.wait_for(asyncio.to_thread(worker.wait, 60), 70)
        assert exit_code == CRASH_EXIT_CODE, "the worker died right after an audit commit"
        kills += 1
        faults_began = time.monotonic()
        for lifetime in kills_after:
            worker = start_worker(env_, log)
            await asyncio.sleep(lifetime)
            stop_group(worker, signal.SIGKILL)
            kills += 1
        worker = start_worker(env_, log)
        # Pages due while workers kept dying may wait out the faults and a dead worker's task.
        allowed = time.monotonic() - faults_began + WORKFLOW_TASK_TIMEOUT + TIMER_TICK
        await asyncio.wait_for(answering, 90)

        silent = [h for h in handles if h.id not in replying]
        for handle in silent:
            status = await until(lambda h=handle: step_seen(h, "escalation_started"),
                                 f"{handle.id} escalated", 120)
            code = status.escalation.code
            paged_at = await until(lambda c=code: _async(first_page_at(sms_outbox, mailbox, c)),
                                   f"{handle.id} paged", 120)
            figures.pages += 1
            lateness = (paged_at - page_due(status)).total_seconds()
            figures.max_lateness = max(figures.max_lateness, lateness)
            if lateness > allowed:
                figures.late_pages.append(f"{handle.id}: {lateness:.1f} s late, "
                                          f"{allowed:.1f} s allowed")
            await ack_and_resolve(handle)
        # A client whose check-in the kills held back past the window was paged about
        # before answering; their "OK" leaves the escalation for staff to close.
        for handle in handles:
            if handle.id in replying and (await status_of(handle)).escalation is not None:
                await ack_and_resolve(handle)
        for handle in handles:
            try:
                outcome = await asyncio.wait_for(handle.result(), 45)
            except Exception as err:  # noqa: BLE001 - counted, then asserted
                answered = "answered OK" if handle.id in replying else "never answered"
                figures.failed.append(f"{handle.id} ({answered}): {type(err).__name__} {err} "
                                      f"({await _where(handle)})")
                continue
            if await failed(handle):
                figures.failed.append(handle.id)
            if not outcome.client_safe and outcome.escalation is None:
                figures.silent.append(handle.id)
            stored = await store.entries(handle.id)
            if (found := first_break(stored)) is not None:
                figures.broken_chains.append(f"{handle.id}: broken at {found}")
            elif [e.hash for e in stored] != [e.hash for e in outcome.trail]:
                figures.broken_chains.append(f"{handle.id}: stored trail differs from the "
                                             "workflow's")
            if discrepancies := await replays(client, handle, store, settings):
                figures.unreplayable.append(f"{handle.id}: {discrepancies}")
        figures.duplicates = duplicates(sms_outbox, mailbox)
    finally:
        stop_group(worker, signal.SIGTERM, timeout=40)
        server.stop(signal.SIGKILL)
        await store.close()

    print(f"{kills} worker kills (one right after the outbox accepted a text, one right after "
          f"an audit commit); a page is on "
          f"time within {allowed:.1f} s of when it fell due")
    figures.assert_zeros()
    assert any("crisis words" in m.body for m in sms_outbox.sent_to(ON_CALL_PHONE)), (
        "the crisis text paged the on-call")


async def _where(handle: WorkflowHandle) -> str:
    """Where a follow-up that did not close stands, or why nobody can tell."""
    described = await handle.describe()
    try:
        status = await status_of(handle)
    except Exception as err:  # noqa: BLE001 - the reason is the report
        return f"{described.status.name}; status query fails: {str(err)[:160]}"
    return (f"{described.status.name}, phase {status.phase}, waiting for "
            f"{status.next_deadline_reason}, steps {[e.step for e in status.trail]}")


async def _answer_after_checkin(client: Client,
                                answers: list[tuple[WorkflowHandle, str]]) -> None:
    for handle, text in answers:
        await until(lambda h=handle: step_seen(h, "checkin_sent"), f"{handle.id} check-in", 80)
        await until(lambda h=handle, t=text: _answer(client, h, t), f"{handle.id} answered", 30)


async def _answer(client: Client, handle: WorkflowHandle, text: str) -> bool:
    """As the SMS webhook passes a text on: a crisis puts its follow-up first and frees it
    from the queue of the worker that ran its last task, which may be the one just killed."""
    await asyncio.wait_for(actions.send_reply(client, handle.id,
                                              ClientReply(text=text, channel="sms")), 10)
    return True


async def test_smtp_4xx_is_retried_and_5xx_falls_back_to_sms(followups: FollowUpHarness):
    figures = Figures("SMTP 4xx then 5xx", followups=1)
    mail = followups.mail
    mail.defer_next(1)  # the check-in's first RCPT meets 451: try again later
    handle = await followups.start(make_event(channel="email"))
    await followups.advance(handle, timedelta(minutes=10))
    await followups.until_step(handle, "checkin_sent")
    assert len(mail.sent_to(CLIENT_EMAIL)) == 1, "the deferred check-in arrives, once"
    assert followups.texts_to(CLIENT_PHONE) == [], "a 4xx is no reason to text"

    mail.refuse_address(CLIENT_EMAIL, 550)  # the mailbox is gone for good
    await followups.advance(handle, timedelta(minutes=30))
    await followups.until_step(handle, "reminder_sent")
    await followups.until(handle, lambda s: followups.texts_to(CLIENT_PHONE) != [],
                          "the reminder by SMS")
    assert len(mail.sent_to(CLIENT_EMAIL)) == 1, "no mail after the 550"
    await handle.signal(DepartureFollowUp.client_reply, ClientReply(text="ok", channel="sms"))
    outcome = await followups.finish(handle)

    figures.duplicates = duplicates(followups.sms, mail)
    if problem := await check_trail(handle, followups.store):
        figures.broken_chains.append(problem)
    if not outcome.client_safe:
        figures.silent.append(handle.id)
    print(f"check-in by mail after one 451; reminder by SMS after a 550; "
          f"{len(followups.texts_to(CLIENT_PHONE))} texts to the client")
    figures.assert_zeros()
    stored = await followups.store.entries(handle.id)
    assert [e.hash for e in stored] == [e.hash for e in outcome.trail]
    discrepancies = await replays(followups.client, handle, followups.store,
                                  followups.settings)
    assert discrepancies == []



# Follow-ups started while the audit store is locked, one every LOCKED_START_GAP seconds.
LOCKED_FOLLOWUPS = 40
LOCKED_START_GAP = 0.9
STORE_LOCKED_FOR = 45.0
PAGE_ON_TIME = 15.0  # seconds after it fell due


async def test_pages_due_while_another_process_holds_the_audit_store_go_out_on_time(
    tmp_path: Path, delivery_settings, sqlite_url, encryption_keys, booking_sink, sms_outbox,
    mailbox,
):
    """Imminent-risk follow-ups (each pages the on-call and the emergency contact at once)
    start one after another while another process holds the audit store's write lock for
    45 s, as a backup or an auditor's long transaction would. Every page falls due while
    the store is locked; each must reach the outbox within 15 s of its follow-up's start.
    Once the lock goes, the delivery ledger records every page and nothing went out twice.
    The ack timeout is long, so no re-page (which repeats the page's text) falls in the run."""
    policy = seconds_policy_file(tmp_path, booking_sink.webhook_url("demo"), ack_timeout="PT10M")
    settings = delivery_settings.model_copy(update={
        "task_queue": f"tq-{uuid.uuid4()}", "audit_database_url": sqlite_url,
        "encryption_keys": encryption_keys, "lookup_secret": "lookup-secret-for-tests",
        "policy_file": policy,
    })
    server = DevServer(tmp_path)
    worker = None
    store = await AuditStore.open(settings.audit_database_url)
    figures = Figures("audit store locked 45 s", followups=LOCKED_FOLLOWUPS)
    holder = None
    due: dict[str, datetime] = {}
    events: dict[str, DepartureEvent] = {}
    try:
        await server.start()
        worker = start_worker(environment(settings, server.address), tmp_path / "worker.log")
        client = await server.client(settings)
        book = PolicyBook.load(settings.policy_file)

        # One follow-up before the lock: the worker is up and paging.
        warm_up = imminent_event(LOCKED_FOLLOWUPS)
        await start_followup(client, settings, book, warm_up)
        await until(lambda: _async(sms_outbox.sent_to(warm_up.emergency_contact.phone)),
                    "the warm-up's page", 60)

        holder = sqlite3.connect(make_url(sqlite_url).database, isolation_level=None,
                                 timeout=30)
        holder.execute("BEGIN EXCLUSIVE")
        locked_at = time.monotonic()
        for number in range(LOCKED_FOLLOWUPS):
            event = imminent_event(number)
            started_at = datetime.now(UTC)
            started = await start_followup(client, settings, book, event)
            due[started.workflow_id], events[started.workflow_id] = started_at, event
            await asyncio.sleep(LOCKED_START_GAP)
        await asyncio.sleep(max(0.0, STORE_LOCKED_FOR - (time.monotonic() - locked_at)))
        holder.execute("ROLLBACK")
        holder.close()
        holder = None
        locked_for = time.monotonic() - locked_at

        paged: dict[str, list[str]] = {}
        for workflow_id, event in events.items():
            handle = client.get_workflow_handle_for(DepartureFollowUp.run, workflow_id)
            status = await until(lambda h=handle: step_seen(h, "escalation_started"),
                                 f"{workflow_id} escalated", 60)
            code = status.escalation.code
            contact = event.emergency_contact.phone
            on_call = await until(lambda c=code: _async(first_page_at(sms_outbox, mailbox, c)),
                                  f"{workflow_id}: the on-call page", 60)
            notice = await until(lambda n=contact: _async(min(
                (m.date_created for m in sms_outbox.sent_to(n)), default=None)),
                f"{workflow_id}: the emergency contact's page", 60)
            for whom, at in (("on-call", on_call), ("emergency contact", notice)):
                figures.pages += 1
                lateness = (at - due[workflow_id]).total_seconds()
                figures.max_lateness = max(figures.max_lateness, lateness)
                if lateness > PAGE_ON_TIME:
                    figures.late_pages.append(f"{workflow_id} ({whom}): {lateness:.1f} s late")
            paged[workflow_id] = [m.sid for m in sms_outbox.messages
                                  if m.to in (ON_CALL_PHONE, contact) and (
                                      code in m.body or m.to == contact)]
            if await failed(handle):
                figures.failed.append(workflow_id)

        figures.duplicates = duplicates(sms_outbox, mailbox)
        print(figures.line())

        # The ledger catches up behind the sends: every page recorded.
        async def ledger_holds_every_page() -> list[str] | None:
            missing = [wf for wf, sids in paged.items()
                       if not set(sids) <= await store.provider_message_ids(wf)]
            return None if missing else ["caught up"]

        await until(ledger_holds_every_page, "the delivery ledger holding every page", 60)
    finally:
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
        stop_group(worker, signal.SIGTERM, timeout=40)
        server.stop(signal.SIGKILL)
        await store.close()

    print(f"store locked {locked_for:.0f} s by another process; {LOCKED_FOLLOWUPS} imminent "
          f"follow-ups started during it, {LOCKED_START_GAP} s apart; a page is on time "
          f"within {PAGE_ON_TIME:.0f} s of its follow-up's start; {len(sms_outbox.messages)} "
          f"texts over {sms_outbox.connections} connections to the outbox")
    figures.assert_zeros()


def imminent_event(number: int) -> DepartureEvent:
    return demo_event(number).model_copy(update={"risk_level": RiskLevel.IMMINENT})
