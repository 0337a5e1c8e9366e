"""What the staff console must remember across API processes, kept in the audit database:
sign-in challenges, sessions, and when a session last saw a follow-up's contact details.

Every limit here is decided in one transaction with the write it guards, so it holds
whatever the concurrency and however many API replicas share the database: on SQLite a
write transaction holds the database's write lock from its first statement; on
PostgreSQL the statements below lock the rows (or, for a staff member's code count, a
transaction-scoped advisory lock) they decide on.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from enum import Enum

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from aftercare.trail.schema import (
    READS_ONLY,
    access_log,
    console_sessions,
    contact_views,
    sign_in_challenges,
)
from aftercare.trail.store import AuditStore


class CodeCheck(Enum):
    RIGHT = "right"
    WRONG = "wrong"
    REFUSED = "refused"
    """Not counted: no such challenge, its code not sent, expired, used, or out of tries."""


StaffKey = tuple[str, str]
"""(clinic id, staff id)"""


class SignInChallenges:
    def __init__(self, store: AuditStore) -> None:
        self._engine = store.engine

    async def issue(
        self, challenge_id: str, staff: StaffKey, code_mac: str, now: datetime,
        expires_at: datetime, per_window: int, window: timedelta,
    ) -> bool:
        """Open a challenge for ``staff`` unless ``per_window`` were opened in the last
        ``window``; False when the limit is reached. The count and the insert are one step."""
        challenges = sign_in_challenges.c
        clinic_id, staff_id = staff
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(
                    sa.func.hashtext(f"sign-in:{clinic_id}/{staff_id}"))))
            recent = await conn.scalar(sa.select(sa.func.count()).where(
                challenges.clinic_id == clinic_id, challenges.staff_id == staff_id,
                challenges.issued_at > now - window))
            if recent >= per_window:
                return False
            await conn.execute(sign_in_challenges.insert().values(
                challenge_id=challenge_id, clinic_id=clinic_id, staff_id=staff_id,
                code_mac=code_mac, issued_at=now, expires_at=expires_at, tries=0))
        return True

    async def sent(self, challenge_id: str, at: datetime) -> None:
        """Its code went out: from now on the challenge can be answered."""
        async with self._engine.begin() as conn:
            await conn.execute(sign_in_challenges.update()
                               .where(sign_in_challenges.c.challenge_id == challenge_id)
                               .values(sent_at=at))

    async def try_code(
        self, challenge_id: str, code_mac: str, now: datetime, tries_allowed: int
    ) -> tuple[CodeCheck, StaffKey | None]:
        """Spend one of the challenge's tries on a code, and the challenge itself when the
        code is right; with the staff member it was issued to. A try beyond ``tries_allowed`` is
        refused before the code is looked at, so concurrent tries cannot exceed it."""
        challenges = sign_in_challenges.c
        async with self._engine.begin() as conn:
            found = (await conn.execute(
                sign_in_challenges.update()
                .where(challenges.challenge_id == challenge_id, challenges.sent_at.is_not(None),
                       challenges.used_at.is_(None), challenges.expires_at > now,
                       challenges.tries < tries_allowed)
                .values(tries=challenges.tries + 1)
                .returning(challenges.clinic_id, challenges.staff_id, challenges.code_mac)
            )).first()
            if found is None:
                return CodeCheck.REFUSED, None
            staff = (found.clinic_id, found.staff_id)
            if not hmac.compare_digest(found.code_mac, code_mac):
                return CodeCheck.WRONG, staff
            await conn.execute(sign_in_challenges.update()
                               .where(challenges.challenge_id == challenge_id)
                               .values(used_at=now))
        return CodeCheck.RIGHT, staff

    async def use_by_link(self, challenge_id: str, now: datetime) -> StaffKey | None:
        """Spend a challenge from the link in its message, whatever tries were spent on its
        code (the link cannot be guessed); its staff member, or None when it cannot be used."""
        challenges = sign_in_challenges.c
        async with self._engine.begin() as conn:
            found = (await conn.execute(
                sign_in_challenges.update()
                .where(challenges.challenge_id == challenge_id, challenges.sent_at.is_not(None),
                       challenges.used_at.is_(None), challenges.expires_at > now)
                .values(used_at=now)
                .returning(challenges.clinic_id, challenges.staff_id))).first()
        return None if found is None else (found.clinic_id, found.staff_id)


class ConsoleSessions:
    def __init__(self, store: AuditStore) -> None:
        self._engine = store.engine
        self._reader = store.engine.execution_options(**READS_ONLY)

    async def start(
        self, session_id: str, actor: str, now: datetime, expires_at: datetime
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(console_sessions.insert().values(
                session_id=session_id, actor=actor, started_at=now, expires_at=expires_at))

    async def live(self, session_id: str, now: datetime) -> bool:
        sessions = console_sessions.c
        async with self._reader.connect() as conn:
            found = await conn.scalar(sa.select(sessions.session_id).where(
                sessions.session_id == session_id, sessions.ended_at.is_(None),
                sessions.expires_at > now))
        return found is not None

    async def end(self, session_id: str, now: datetime) -> None:
        sessions = console_sessions.c
        async with self._engine.begin() as conn:
            await conn.execute(console_sessions.update()
                               .where(sessions.session_id == session_id,
                                      sessions.ended_at.is_(None))
                               .values(ended_at=now))

    async def record_contact_view(
        self, session_id: str, actor: str, action: str, workflow_id: str, now: datetime,
        same_view_within: timedelta,
    ) -> bool:
        """Write a view of a follow-up's contact details to the access log, unless this
        session saw them less than ``same_view_within`` ago (the page refreshing itself);
        True when written. The note of when it was seen and the record commit together."""
        views = contact_views.c
        mine = (views.session_id == session_id) & (views.workflow_id == workflow_id)
        try:
            async with self._engine.begin() as conn:
                still_open = await conn.execute(
                    contact_views.update()
                    .where(mine, views.last_seen_at > now - same_view_within)
                    .values(last_seen_at=now))
                if still_open.rowcount:
                    return False
                await conn.execute(contact_views.delete().where(mine))
                await conn.execute(contact_views.insert().values(
                    session_id=session_id, workflow_id=workflow_id, last_seen_at=now))
                await conn.execute(access_log.insert().values(
                    actor=actor, action=action, target=workflow_id, at=now))
        except IntegrityError:
            return False  # the same session's concurrent request recorded this view
        return True
