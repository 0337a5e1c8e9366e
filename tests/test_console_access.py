"""The audit store's side of the staff console, on SQLite and PostgreSQL: each limit is
decided in the transaction that writes past it, however many callers arrive at once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from aftercare.trail.console_access import CodeCheck, ConsoleSessions, SignInChallenges

NOW = datetime.now(UTC)
WINDOW = timedelta(minutes=15)
RIGHT_MAC, WRONG_MAC = "right-mac", "wrong-mac"


def someone() -> tuple[str, str]:
    """A staff member of a clinic of this test's own (the PostgreSQL database is shared)."""
    return f"clinic{uuid.uuid4().hex[:8]}", "t-oncall"


async def sent_challenge(challenges: SignInChallenges, staff: tuple[str, str]) -> str:
    challenge_id = uuid.uuid4().hex
    assert await challenges.issue(challenge_id, staff, RIGHT_MAC, NOW, NOW + WINDOW, 3, WINDOW)
    await challenges.sent(challenge_id, NOW)
    return challenge_id


async def test_codes_per_window_hold_when_twenty_requests_arrive_at_once(audit_store) -> None:
    challenges, staff = SignInChallenges(audit_store), someone()
    opened = await asyncio.gather(*(
        challenges.issue(uuid.uuid4().hex, staff, RIGHT_MAC, NOW, NOW + WINDOW, 3, WINDOW)
        for _ in range(20)))
    assert opened.count(True) == 3
    later = NOW + WINDOW + timedelta(seconds=1)
    assert await challenges.issue(uuid.uuid4().hex, staff, RIGHT_MAC, later, later + WINDOW, 3,
                                  WINDOW), "a new window, new codes"


async def test_a_challenge_takes_three_tries_however_many_arrive_at_once(audit_store) -> None:
    challenges, staff = SignInChallenges(audit_store), someone()
    challenge_id = await sent_challenge(challenges, staff)
    checked = await asyncio.gather(*(challenges.try_code(challenge_id, WRONG_MAC, NOW, 3)
                                     for _ in range(50)))
    assert [check for check, _ in checked].count(CodeCheck.WRONG) == 3
    assert {who for check, who in checked if check is CodeCheck.WRONG} == {staff}
    assert await challenges.try_code(challenge_id, RIGHT_MAC, NOW, 3) == (CodeCheck.REFUSED, None)


async def test_a_challenge_opens_once_and_only_after_its_code_went_out(audit_store) -> None:
    challenges, staff = SignInChallenges(audit_store), someone()
    unsent = uuid.uuid4().hex
    await challenges.issue(unsent, staff, RIGHT_MAC, NOW, NOW + WINDOW, 3, WINDOW)
    assert await challenges.try_code(unsent, RIGHT_MAC, NOW, 3) == (CodeCheck.REFUSED, None)
    assert await challenges.use_by_link(unsent, NOW) is None

    challenge_id = await sent_challenge(challenges, staff)
    assert await challenges.try_code(challenge_id, RIGHT_MAC, NOW, 3) == (CodeCheck.RIGHT, staff)
    assert await challenges.try_code(challenge_id, RIGHT_MAC, NOW, 3) == (CodeCheck.REFUSED, None)
    assert await challenges.use_by_link(challenge_id, NOW) is None


async def test_the_link_opens_a_challenge_whose_tries_are_spent_until_it_expires(
    audit_store,
) -> None:
    challenges, staff = SignInChallenges(audit_store), someone()
    spent = await sent_challenge(challenges, staff)
    expired = await sent_challenge(challenges, staff)
    for _ in range(3):
        await challenges.try_code(spent, WRONG_MAC, NOW, 3)
    assert await challenges.use_by_link(spent, NOW) == staff
    assert await challenges.use_by_link(expired, NOW + WINDOW) is None


async def test_an_ended_session_is_not_live(audit_store) -> None:
    sessions, session_id = ConsoleSessions(audit_store), uuid.uuid4().hex
    await sessions.start(session_id, "staff:c/t", NOW, NOW + timedelta(hours=12))
    assert await sessions.live(session_id, NOW)
    assert not await sessions.live(session_id, NOW + timedelta(hours=12))
    await sessions.end(session_id, NOW)
    assert not await sessions.live(session_id, NOW)


async def test_a_contact_view_is_one_record_until_the_session_looks_away(audit_store) -> None:
    sessions, workflow_id = ConsoleSessions(audit_store), f"followup-c-{uuid.uuid4().hex}"
    gap = timedelta(minutes=3)

    async def view(session_id: str, at: datetime) -> bool:
        return await sessions.record_contact_view(session_id, "staff:c/t", "console_view_contact",
                                                  workflow_id, at, gap)

    refreshes = [NOW + timedelta(seconds=20 * n) for n in range(30)]  # ten minutes watched
    assert [await view("one", at) for at in refreshes] == [True] + [False] * 29
    assert await view("another", NOW)
    assert await view("one", refreshes[-1] + gap + timedelta(seconds=1)), "back after a gap"
    records = [r for r in await audit_store.access_records() if r.target == workflow_id]
    assert len(records) == 3
