"""One way to reach Temporal: the same data converter and codec for worker, starter and replay."""

from __future__ import annotations

from temporalio.client import Client

from aftercare.codec import data_converter
from aftercare.settings import Settings


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
    )
