"""The bare-Temporal baseline: the follow-up's happy path with nothing of Aftercare's.

The same three sends as plain activities and the same two replies as signals, each
waited for as the follow-up waits (a condition with a timeout), on the pydantic
converter without a codec: no encryption, no audit markers, no validation.

A module of its own because the workflow sandbox re-imports a workflow's module.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

REPLY_WINDOW = timedelta(hours=1)
SEND_TIMEOUT = timedelta(seconds=30)


@workflow.defn
class BareFollowUp:
    def __init__(self) -> None:
        self.replies: list[str] = []

    @workflow.run
    async def run(self, to: str) -> None:
        await self.send(to, "checkin")
        await self.next_reply()
        await self.send(to, "glad_you_are_ok")
        await self.send(to, "reschedule_offer")
        await self.next_reply()

    @workflow.signal
    def client_reply(self, text: str) -> None:
        self.replies.append(text)

    async def send(self, to: str, kind: str) -> str:
        return await workflow.execute_activity(
            "send_message", args=[to, kind], result_type=str,
            start_to_close_timeout=SEND_TIMEOUT,
        )

    async def next_reply(self) -> str | None:
        try:
            await workflow.wait_condition(lambda: bool(self.replies), timeout=REPLY_WINDOW)
        except TimeoutError:
            return None
        return self.replies.pop(0)


class NoopSender:
    """Sends nothing; lists each recipient in ``sent`` so the bench's clients can answer."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    @activity.defn(name="send_message")
    async def send_message(self, to: str, kind: str) -> str:
        self.sent.append(to)
        return f"noop-{len(self.sent)}-{kind}"
