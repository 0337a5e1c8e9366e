"""What the send activities need to never text or mail a client twice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from workflows.models import Delivery, OutboundMessage


class DeliveryLedger(Protocol):
    """Remembers every message a provider accepted, by (workflow id, message key).

    A send activity looks its key up first and returns the recorded delivery instead of
    sending again; it records the provider's message id as soon as the provider accepts.
    """

    async def find_delivery(self, workflow_id: str, message_key: str) -> Delivery | None: ...

    async def record_delivery(
        self, workflow_id: str, message_key: str, delivery: Delivery
    ) -> None: ...


async def deliver_once(
    ledger: DeliveryLedger, message: OutboundMessage, send: Callable[[], Awaitable[Delivery]]
) -> Delivery:
    """Send ``message`` unless the ledger shows a provider already accepted it."""
    recorded = await ledger.find_delivery(message.workflow_id, message.message_key)
    if recorded is not None:
        return recorded.model_copy(update={"already_sent": True})
    delivery = await send()
    await ledger.record_delivery(message.workflow_id, message.message_key, delivery)
    return delivery
