"""What the send activities need to never text or mail a client twice.

The ledger records what a provider accepted, by (workflow id, message key); a retried send
returns that record instead of sending again. The gap is a crash after the provider
accepted and before the ledger recorded it. A provider that lets us ask what it sent
(Twilio's Messages list) closes it: the intent to send is recorded first, and a retry that
finds an intent without a delivery asks the provider before sending again. Mail has no
such question; its deterministic Message-ID makes a second copy the same message.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol, cast

from temporalio import activity

from workflows.models import Delivery, OutboundMessage

CRASH_EXIT_CODE = 137
"""How a worker ends under the crash-after-accept test setting: as if SIGKILLed."""


class DeliveryLedger(Protocol):
    """Remembers every message a provider accepted, by (workflow id, message key).

    A send activity looks its key up first and returns the recorded delivery instead of
    sending again; it records the provider's message id as soon as the provider accepts.
    """

    async def find_delivery(self, workflow_id: str, message_key: str) -> Delivery | None: ...

    async def record_delivery(
        self, workflow_id: str, message_key: str, delivery: Delivery
    ) -> None: ...


class AttemptLedger(DeliveryLedger, Protocol):
    """A ledger that also remembers each attempt to send, before the provider sees it."""

    async def record_send_attempt(
        self, workflow_id: str, message_key: str, attempt: int, started_at: datetime
    ) -> None: ...

    async def first_send_attempt(self, workflow_id: str, message_key: str) -> datetime | None: ...

    async def provider_message_ids(self, workflow_id: str) -> set[str]: ...


FindEarlierSend = Callable[[datetime, set[str]], Awaitable[Delivery | None]]
"""Asks the provider for the message sent since a time, other than the given provider ids."""


async def deliver_once(
    ledger: DeliveryLedger,
    message: OutboundMessage,
    send: Callable[[], Awaitable[Delivery]],
    *,
    find_earlier_send: FindEarlierSend | None = None,
    crash_after_accept: bool = False,
) -> Delivery:
    """Send ``message`` unless the ledger shows a provider already accepted it.

    With ``find_earlier_send`` (and an ``AttemptLedger``) each attempt is recorded before
    the provider sees it, and an attempt that never reached the ledger is looked for at the
    provider before sending again. ``crash_after_accept`` is the fault suite's: the worker
    process ends the moment the provider accepts, before the ledger hears of it.
    """
    workflow_id, key = message.workflow_id, message.message_key
    recorded = await ledger.find_delivery(workflow_id, key)
    if recorded is not None:
        return recorded.model_copy(update={"already_sent": True})
    if find_earlier_send is not None:
        ledger = cast(AttemptLedger, ledger)
        found = await _sent_by_an_earlier_attempt(ledger, message, find_earlier_send)
        if found is not None:
            await ledger.record_delivery(workflow_id, key, found)
            return found.model_copy(update={"already_sent": True})
        await ledger.record_send_attempt(workflow_id, key, activity.info().attempt,
                                         datetime.now(UTC))
    delivery = await send()
    if crash_after_accept:
        os._exit(CRASH_EXIT_CODE)
    await ledger.record_delivery(workflow_id, key, delivery)
    return delivery


async def _sent_by_an_earlier_attempt(
    ledger: AttemptLedger, message: OutboundMessage, find_earlier_send: FindEarlierSend
) -> Delivery | None:
    attempted = await ledger.first_send_attempt(message.workflow_id, message.message_key)
    if attempted is None:
        return None
    found = await find_earlier_send(
        attempted, await ledger.provider_message_ids(message.workflow_id))
    if found is not None:
        activity.logger.warning(
            "an earlier attempt of %s was accepted as %s before it was recorded: "
            "not sending it again", message.message_key, found.provider_message_id)
    return found
