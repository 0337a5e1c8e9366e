"""What the worker and the API check before they start.

A mistake in the policy file or a missing secret would otherwise surface at 2 am, when a
follow-up's escalation comes due and its workflow task fails on it. Here it stops the
process at start-up instead: one line per problem naming the clinic and the key (or the
setting), and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import NoReturn

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from activities.email import EmailActivities
from activities.sms import SmsActivities
from aftercare.policies import PolicyBook, PolicyError
from aftercare.policy_check import book_problems
from aftercare.secret_strength import weak_secret_problems
from aftercare.settings import (
    API_REQUIRED_SETTINGS,
    WORKER_REQUIRED_SETTINGS,
    MissingSettingError,
    Settings,
    get_settings,
)
from aftercare.temporal.codec import EncryptionCodec, EncryptionKeyError
from aftercare.trail.store import AuditStore

EXIT_CODE = 2
API_SECRETS = ("twilio_auth_token", "api_keys", "link_secret", "lookup_secret", "metrics_token")
WORKER_SECRETS = ("link_secret", "audit_signing_keys", "booking_webhook_secrets")
STORE_CHECK_SECONDS = 15.0


def worker_problems(settings: Settings) -> list[str]:
    """What would fail a follow-up in the worker: its policy, the payload keys, the audit
    store, what the send and booking activities need."""
    book, problems = _policy_book(settings)
    missing = _missing_secrets(settings, WORKER_REQUIRED_SETTINGS)
    problems += missing + weak_secret_problems(settings, WORKER_SECRETS)
    if settings.twilio_is_real:
        problems += weak_secret_problems(settings, ("twilio_auth_token",))
    problems += _encryption_problems(settings) + _audit_store_problems(settings)
    for activities in (SmsActivities, EmailActivities) if not missing else ():
        try:
            activities(settings, ledger=None)  # type: ignore[arg-type]
        except ValueError as err:
            problems.append(str(err))
    if book is not None:
        for clinic in book.clinics:
            webhook = book.for_clinic(clinic).reschedule.webhook_url
            if webhook and clinic not in settings.booking_webhook_secrets:
                problems.append(
                    f"AFTERCARE_BOOKING_WEBHOOK_SECRETS: no secret for clinic {clinic!r}, "
                    "whose policy sets reschedule.webhook_url"
                )
    return problems


def api_problems(settings: Settings) -> list[str]:
    """What would fail the API's callers: its policy, the clinics holding keys, its secrets."""
    book, problems = _policy_book(settings)
    problems += _missing_secrets(settings, API_REQUIRED_SETTINGS)
    problems += weak_secret_problems(settings, API_SECRETS)
    problems += _encryption_problems(settings)
    if book is not None:
        problems += [
            f"AFTERCARE_API_KEYS: clinic {clinic!r} has an API key but no entry in "
            f"{settings.policy_file}"
            for clinic in settings.api_keys
            if clinic not in book.clinics
        ]
    return problems


def codec_endpoint_problems(settings: Settings) -> list[str]:
    """Whoever holds a codec token reads client details: none may be missing or guessable."""
    problems = [] if settings.codec_auth_tokens else [
        "AFTERCARE_CODEC_AUTH_TOKENS is not set: holder:token pairs, one per person who may "
        "read payloads"]
    return problems + weak_secret_problems(settings, ("codec_auth_tokens",)) + \
        _encryption_problems(settings)


def _missing_secrets(settings: Settings, names: tuple[str, ...]) -> list[str]:
    problems = []
    for name in names:
        try:
            settings.require(name)
        except MissingSettingError as err:
            problems.append(str(err))
    return problems


def checked_settings(problems_of: Callable[[Settings], list[str]]) -> Settings:
    """The settings, once they and everything ``problems_of`` checks are sound; otherwise
    the process ends here, naming each problem."""
    try:
        settings = get_settings()
    except ValidationError as err:
        refuse_to_start([
            f"AFTERCARE_{str(problem['loc'][0]).upper()}: "
            f"{problem['msg'].removeprefix('Value error, ')}"
            for problem in err.errors()
        ])
    problems = problems_of(settings)
    if problems:
        refuse_to_start(problems)
    return settings


def refuse_to_start(problems: list[str]) -> NoReturn:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    raise SystemExit(EXIT_CODE)


def _policy_book(settings: Settings) -> tuple[PolicyBook | None, list[str]]:
    """The policy file, loaded, and what is wrong with it: what stops it loading, or what
    it allows that ``aftercare-policy check`` refuses."""
    try:
        book = PolicyBook.load(settings.policy_file)
    except PolicyError as err:
        return None, str(err).splitlines()
    return book, book_problems(book)


def _audit_store_problems(settings: Settings) -> list[str]:
    """The worker writes the trail and reads the delivery ledger from its first task."""

    async def open_and_close() -> None:
        store = await asyncio.wait_for(AuditStore.open(settings.audit_database_url),
                                       STORE_CHECK_SECONDS)
        await store.close()

    try:
        asyncio.run(open_and_close())
    except Exception as err:  # noqa: BLE001 - any failure to open is reported the same way
        shown = make_url(settings.audit_database_url).render_as_string(hide_password=True)
        return [f"AFTERCARE_AUDIT_DATABASE_URL: cannot open the audit database {shown} "
                f"({type(err).__name__})"]
    return []


def _encryption_problems(settings: Settings) -> list[str]:
    try:
        EncryptionCodec(settings.encryption_keys)
    except EncryptionKeyError as err:
        return [f"AFTERCARE_ENCRYPTION_KEYS: {err}"]
    return []
