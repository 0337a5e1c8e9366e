"""The bare-Temporal baselines: each path of the follow-up with nothing of Aftercare's.

The same sends as plain activities, the same waits on the same timers, replies as signals
and staff actions as updates, on the default converter: no codec, no audit, no policy,
no fallback, no validation. Each send is one POST to the same loopback SMS outbox the
Aftercare worker sends to (a Twilio-shaped form, one kept HTTP connection pool), so both
arms are measured at the same sink.

    .venv/bin/python bench/bare.py --address HOST:PORT --task-queue Q --outbox-url URL

runs a worker for them until SIGTERM. A module of its own because the workflow sandbox
re-imports a workflow's module.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import datetime, timedelta

from temporalio import activity, workflow

REPLY_WINDOW = timedelta(hours=1)
SEND_TIMEOUT = timedelta(seconds=30)
# Aftercare waits at least a second on a timer, even for a step already due, and the bench
# policies listen a second after the protocol: the bare paths wait the same.
CHECKIN_WAIT = timedelta(seconds=1)
LISTEN = timedelta(seconds=1)
ON_CALL_PHONE = "+15555550100"
ACCOUNT_SID = "AC" + "0" * 32  # the outbox's dev account (aftercare.settings)
AUTH_TOKEN = "dev-outbox-token"
FROM_NUMBER = "+15005550006"


async def send(to: str, kind: str) -> str:
    return await workflow.execute_activity(
        "send_message", args=[to, kind], result_type=str, start_to_close_timeout=SEND_TIMEOUT)


class Replies:
    def __init__(self) -> None:
        self.replies: list[str] = []

    @workflow.signal
    def client_reply(self, text: str) -> None:
        self.replies.append(text)

    async def next_reply(self, window: timedelta = REPLY_WINDOW) -> str | None:
        try:
            await workflow.wait_condition(lambda: bool(self.replies), timeout=window)
        except TimeoutError:
            return None
        return self.replies.pop(0)


@workflow.defn
class BareFollowUp(Replies):
    """Happy path: check-in, OK, "glad you're OK", the reschedule offer, NO, listen."""

    @workflow.run
    async def run(self, to: str) -> None:
        await workflow.sleep(CHECKIN_WAIT)
        await send(to, "checkin")
        await self.next_reply()
        await send(to, "glad_you_are_ok")
        await send(to, "reschedule_offer")
        await self.next_reply()
        await workflow.sleep(LISTEN)


@workflow.defn
class BareEscalation(Replies):
    """No reply (check-in, the window passes, page) or imminent risk (page and crisis
    resources at once, the page first); then acknowledged, resolved, everyone paged told,
    listen."""

    def __init__(self) -> None:
        super().__init__()
        self.acknowledged_by: str | None = None
        self.resolved_by: str | None = None

    @workflow.run
    async def run(self, to: str, imminent: bool, window_seconds: float) -> None:
        if imminent:
            page = workflow.start_activity(
                "send_message", args=[ON_CALL_PHONE, "page"], result_type=str,
                start_to_close_timeout=SEND_TIMEOUT)
            await asyncio.gather(page, send(to, "crisis_resources"))
        else:
            await workflow.sleep(CHECKIN_WAIT)
            await send(to, "checkin")
            if await self.next_reply(timedelta(seconds=window_seconds)) is None:
                await send(ON_CALL_PHONE, "page")
        await workflow.wait_condition(lambda: self.acknowledged_by is not None)
        await workflow.wait_condition(lambda: self.resolved_by is not None)
        await send(ON_CALL_PHONE, "resolved")
        await workflow.sleep(LISTEN)

    @workflow.update
    def acknowledge(self, staff_id: str) -> str:
        self.acknowledged_by = staff_id
        return f"acknowledged by {staff_id}"

    @workflow.update
    def resolve(self, staff_id: str) -> str:
        self.resolved_by = staff_id
        return f"resolved by {staff_id}"


@workflow.defn
class BareCheckIn(Replies):
    """A check-in on its timer: due at ``due`` (ISO 8601), then one send. A reply before it
    (the storm's crisis text) pages the on-call instead."""

    @workflow.run
    async def run(self, to: str, due: str) -> None:
        wait = max(datetime.fromisoformat(due) - workflow.now(), CHECKIN_WAIT)
        if await self.next_reply(wait) is not None:
            await send(ON_CALL_PHONE, "page")
            return
        await send(to, "checkin")


@workflow.defn
class BareCrisisReply(Replies):
    """A check-in, then the client's reply pages the on-call (the crisis text a worker's
    death holds up)."""

    @workflow.run
    async def run(self, to: str) -> None:
        await workflow.sleep(CHECKIN_WAIT)
        await send(to, "checkin")
        await self.next_reply()
        await send(ON_CALL_PHONE, "page")


WORKFLOWS = [BareFollowUp, BareEscalation, BareCheckIn, BareCrisisReply]


class OutboxSender:
    """One POST per message to the loopback SMS outbox; the body names the workflow, so a
    page can be matched to the follow-up that sent it."""

    def __init__(self, outbox_url: str) -> None:
        import httpx

        self.url = f"{outbox_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        self.http = httpx.AsyncClient(auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=10)

    @activity.defn(name="send_message")
    async def send_message(self, to: str, kind: str) -> str:
        body = f"{kind} {activity.info().workflow_id}"
        answer = await self.http.post(self.url, data={"To": to, "From": FROM_NUMBER,
                                                      "Body": body})
        answer.raise_for_status()
        return answer.json()["sid"]


async def run_worker(address: str, task_queue: str, outbox_url: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(address)
    sender = OutboxSender(outbox_url)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS,
                      activities=[sender.send_message]):
        await stop.wait()
    await sender.http.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--outbox-url", required=True)
    args = parser.parse_args()
    asyncio.run(run_worker(args.address, args.task_queue, args.outbox_url))
