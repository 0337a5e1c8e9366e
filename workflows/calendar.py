"""Quiet hours and waking-time windows in the client's time zone.

Quiet hours protect sleep, never safety: only the risks the policy lists (low, moderate by
default) wait for them, and for those a response window counts waking time only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow

from workflows.policy import ClinicPolicy

# A wait always runs on a timer, even one already due: whether a follow-up waits never
# depends on where a workflow task's clock fell.
SHORTEST_WAIT = timedelta(seconds=1)


async def wait_until(deadline: datetime, done: Callable[[], bool]) -> bool:
    """Sleep until ``deadline`` or until ``done()``; True when ``done()`` ended it."""
    try:
        await workflow.wait_condition(
            done, timeout=max(deadline - workflow.now(), SHORTEST_WAIT))
    except TimeoutError:
        return done()
    return True


class ClientCalendar:
    def __init__(self, policy: ClinicPolicy, risk: str, timezone: str) -> None:
        self.quiet = policy.quiet_hours
        self.risk = risk
        self.timezone = timezone

    def protects_sleep(self) -> bool:
        return self.quiet is not None and self.quiet.protects(self.risk)

    def awake_after(self, start: datetime, duration: timedelta) -> datetime:
        """``start + duration``, counting only waking hours where quiet hours protect the
        client: nobody is escalated for sleeping through a window."""
        if self.quiet is None or not self.protects_sleep():
            return start + duration
        return self.quiet.awake_deadline(start, duration, self.timezone)

    def quiet_hours_end(self, now: datetime) -> datetime | None:
        """When the client's quiet hours end, if ``now`` falls inside them."""
        if self.quiet is None:
            return None
        return self.quiet.end_after(now, self.timezone)
