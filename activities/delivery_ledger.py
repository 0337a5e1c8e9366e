"""What the send activities need to never text or mail a client twice."""

from __future__ import annotations

from typing import Protocol

from workflows.models import Delivery


class DeliveryLedger(Protocol):
    """Remembers every message a provider accepted, by (workflow id, message key).

    A send activity looks its key up first and returns the recorded delivery instead of
    sending again; it records the provider's message id as soon as the provider accepts.
    """

    async def find_delivery(self, workflow_id: str, message_key: str) -> Delivery | None: ...

    async def record_delivery(
        self, workflow_id: str, message_key: str, delivery: Delivery
    ) -> None: ...
