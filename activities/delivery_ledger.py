"""What the send activities need to never text or mail a client twice, without a send ever
waiting for the audit store.

The ledger records what a provider accepted, by (workflow id, message key). It lives in the
audit store, which another process may hold locked (a backup, an auditor's long
transaction) or which may be down, so it is written *behind* the sends: a first attempt
sends at once, without reading or writing the store, and hands the provider's id to a
``DeliveryRecorder``, a task of the worker that writes it when the store lets it and
remembers it meanwhile. A first attempt needs no look-up: the activity has never run
before, so nothing can have been sent under its key.

Only a retry (``activity.info().attempt > 1``) can follow an attempt that got through: one
that crashed, timed out or lost its answer after the provider accepted. A retry looks for
that acceptance in the recorder's memory, then in the ledger (a read, bounded in time,
never the write lock), and, where the provider lets us ask what it sent (Twilio's Messages
list), at the provider, from the activity's first scheduling on: the ledger's silence, or
its being unreadable, proves nothing. Mail has no such question: its deterministic
Message-ID makes a second copy the same message.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, Protocol

from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity
from temporalio.common import MetricGauge, MetricMeter

from aftercare.logs import get_logger
from workflows.models import Delivery, OutboundMessage

LEDGER_UNAVAILABLE = (SQLAlchemyError, OSError, asyncio.TimeoutError)
"""What a locked or unreachable audit store raises."""

CRASH_EXIT_CODE = 137
"""How a worker ends under the crash-after-accept test setting: as if SIGKILLed."""

# A retry reads the ledger for at most this long before it asks the provider all the same.
LEDGER_READ_SECONDS = 2.0
# The recorder keeps trying to write a delivery this long (a locked or down store), then
# gives it up with an error in the log: a later retry of that send still asks Twilio.
RECORD_FOR = timedelta(minutes=30)
# Between attempts to write while the store is unavailable (each waits up to 5 s for it).
_RECORD_RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)
# How long a worker shutting down waits for the deliveries it has not written yet: with the
# worker's 30 s drain of in-flight activities it stays inside compose's 40 s grace period.
DRAIN_SECONDS = 5.0
_CANCEL_SECONDS = 1.0

BACKLOG_METRIC = "aftercare_delivery_ledger_backlog"

log = get_logger("aftercare.delivery_ledger")


class DeliveryLedger(Protocol):
    """Remembers every message a provider accepted, by (workflow id, message key)."""

    async def find_delivery(self, workflow_id: str, message_key: str) -> Delivery | None: ...

    async def record_delivery(
        self, workflow_id: str, message_key: str, delivery: Delivery
    ) -> None: ...

    async def provider_message_ids(self, workflow_id: str) -> set[str]: ...


FindEarlierSend = Callable[[datetime, set[str]], Awaitable[Delivery | None]]
"""Asks the provider for the message sent since a time, other than the given provider ids."""

_Key = tuple[str, str]


class Known(NamedTuple):
    """What a retry can learn of its message before asking the provider."""

    delivery: Delivery | None
    provider_ids: set[str]
    ledger_read: bool


class DeliveryRecorder:
    """Writes accepted deliveries to the ledger behind the sends, one at a time, and
    remembers each until it is written.

    One writer per send activity and worker: a burst of sends costs the store one writer
    waiting for its lock, not one per send. ``record`` never waits; ``close`` gives the writer a
    bounded time to finish when the worker stops.
    """

    def __init__(self, ledger: DeliveryLedger | None) -> None:
        self.ledger = ledger
        self._unwritten: dict[_Key, Delivery] = {}
        self._queue: deque[tuple[_Key, Delivery, asyncio.Future[None], float]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._backlog_gauge: MetricGauge | None = None

    @property
    def backlog(self) -> int:
        """Deliveries accepted by a provider and not yet in the ledger."""
        return len(self._unwritten)

    def record(self, workflow_id: str, message_key: str, delivery: Delivery,
               meter: MetricMeter | None = None) -> asyncio.Future:
        """Queue ``delivery`` for the ledger; the future is done once it is written (or
        given up). The delivery is known to ``recorded`` at once. The first ``meter`` given
        (an activity's) reports the backlog as ``aftercare_delivery_ledger_backlog``."""
        loop = asyncio.get_running_loop()
        written: asyncio.Future[None] = loop.create_future()
        if self.ledger is None:
            written.set_result(None)
            return written
        if meter is not None and self._backlog_gauge is None:
            self._backlog_gauge = meter.create_gauge(
                BACKLOG_METRIC, "Deliveries a provider accepted that the ledger has not "
                "recorded yet (the audit store is locked or down)")
        key = (workflow_id, message_key)
        recorded = delivery.model_copy(update={"already_sent": True})
        self._unwritten[key] = recorded
        self._queue.append((key, recorded, written, loop.time() + RECORD_FOR.total_seconds()))
        self._report_backlog()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name="delivery-ledger")
        return written

    async def recorded(self, workflow_id: str, message_key: str) -> Known:
        """What is known of ``message_key``: its delivery, if one was accepted, and the
        provider ids of the follow-up's deliveries (only this worker's unwritten ones
        when the ledger could not be read in time)."""
        unwritten = self._unwritten.get((workflow_id, message_key))
        own = {d.provider_message_id for (wf, _), d in self._unwritten.items()
               if wf == workflow_id}
        if unwritten is not None or self.ledger is None:
            return Known(unwritten, own, ledger_read=True)
        try:
            async with asyncio.timeout(LEDGER_READ_SECONDS):
                found = await self.ledger.find_delivery(workflow_id, message_key)
                ids = await self.ledger.provider_message_ids(workflow_id)
        except LEDGER_UNAVAILABLE:
            log.warning("delivery ledger unavailable; a retry goes by the provider alone",
                        workflow_id=workflow_id, message_key=message_key)
            return Known(None, own, ledger_read=False)
        return Known(found, ids | own, ledger_read=True)

    async def close(self, wait: float = DRAIN_SECONDS) -> None:
        """Give the writer ``wait`` seconds to write what is queued, then stop it."""
        writer = self._writer
        if writer is None:
            return
        if self._queue:
            await asyncio.wait({writer}, timeout=wait)
        writer.cancel()
        # A write already waiting for SQLite's lock ends only when the lock wait does.
        await asyncio.wait({writer}, timeout=_CANCEL_SECONDS)
        if self._unwritten:
            log.error("worker stopping with deliveries the ledger never heard of; a retry "
                      "of those sends asks the provider", unwritten=len(self._unwritten))

    def _report_backlog(self) -> None:
        if self._backlog_gauge is not None:
            self._backlog_gauge.set(len(self._unwritten))

    async def _write_queued(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while self._queue:
            key, delivery, written, give_up_at = self._queue[0]
            try:
                if failures and loop.time() >= give_up_at:
                    # The store is still unavailable: don't spend a wait on it for each.
                    raise TimeoutError
                await self.ledger.record_delivery(*key, delivery)  # type: ignore[union-attr]
            except LEDGER_UNAVAILABLE:
                if loop.time() < give_up_at:
                    pause = _RECORD_RETRY_SECONDS[min(failures, len(_RECORD_RETRY_SECONDS) - 1)]
                    if failures == 0:
                        log.warning("delivery ledger unavailable; deliveries wait in memory",
                                    backlog=len(self._queue))
                    failures += 1
                    await asyncio.sleep(pause)
                    continue
                log.error("delivery ledger unavailable too long; giving a delivery up",
                          workflow_id=key[0], message_key=key[1])
            except Exception:  # noqa: BLE001 - a refused record must not stop the others
                # The store refuses a second provider id under one key: the message went
                # out twice (e.g. a workflow reset re-ran its send). Evidence, not a crash.
                log.exception("delivery ledger refused a delivery",
                              workflow_id=key[0], message_key=key[1])
            else:
                if failures:
                    log.info("delivery ledger available again", backlog=len(self._queue) - 1)
                failures = 0
            self._queue.popleft()
            if self._unwritten.get(key) is delivery:
                del self._unwritten[key]
            self._report_backlog()
            if not written.done():
                written.set_result(None)


async def deliver_once(
    recorder: DeliveryRecorder,
    message: OutboundMessage,
    send: Callable[[], Awaitable[Delivery]],
    *,
    find_earlier_send: FindEarlierSend | None = None,
    wait_for_record: float = 0.0,
    crash_after_accept: bool = False,
) -> Delivery:
    """Send ``message`` unless a retry finds that an earlier attempt already got it
    accepted. The store is never touched before a first attempt's send, and never waited
    on for its write lock: the delivery is handed to ``recorder``, and the activity waits
    at most ``wait_for_record`` seconds for it to be written (for mail, whose retries have
    only the ledger to go by). ``crash_after_accept`` is the fault suite's: the worker
    process ends the moment the provider accepts, before the ledger hears of it.
    """
    info = activity.info()
    if info.attempt > 1:
        found = await _sent_by_an_earlier_attempt(
            recorder, message, find_earlier_send, _first_scheduled(info))
        if found is not None:
            return found.model_copy(update={"already_sent": True})
    delivery = await send()
    if crash_after_accept:
        os._exit(CRASH_EXIT_CODE)
    written = recorder.record(message.workflow_id, message.message_key, delivery,
                              activity.metric_meter())
    if wait_for_record > 0 and not written.done():
        await asyncio.wait({written}, timeout=wait_for_record)
    return delivery


def _first_scheduled(info: activity.Info) -> datetime:
    """When the activity was first scheduled, on this machine's clock: Temporal's
    ``scheduled_time`` is the server's. The time it took to get from there to this attempt
    (both on the server's clock) is taken back from now, and the earlier of the two kept, so
    neither a server clock ahead of ours nor a test server that skips time hides an earlier
    attempt's send."""
    elapsed = info.started_time - info.scheduled_time
    return min(info.scheduled_time, datetime.now(UTC) - elapsed)


async def _sent_by_an_earlier_attempt(
    recorder: DeliveryRecorder, message: OutboundMessage,
    find_earlier_send: FindEarlierSend | None, first_scheduled: datetime,
) -> Delivery | None:
    key = message.message_key
    known = await recorder.recorded(message.workflow_id, key)
    if known.delivery is not None:
        return known.delivery
    if find_earlier_send is None:
        if not known.ledger_read:
            activity.logger.warning(
                "delivery ledger unavailable; retrying %s without it (same Message-ID)", key)
        return None
    # The ledger's silence proves nothing: an attempt that crashed after the provider
    # accepted never reached it. The provider's own list is the answer.
    found = await find_earlier_send(first_scheduled, known.provider_ids)
    if found is not None:
        activity.logger.warning(
            "an earlier attempt of %s was accepted as %s before it was recorded: "
            "not sending it again", key, found.provider_message_id)
        recorder.record(message.workflow_id, key, found, activity.metric_meter())
    return found
