"""Start-up checks: a worker or API that cannot do its job stops at start, not at 2 am.

Each check takes the connected client and the settings and raises ``StartupCheckFailed``
with one line naming what is wrong and what to run or set. A new check (policies, secrets,
the audit store) is one more function in ``STARTUP_CHECKS``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from aftercare.settings import Settings
from aftercare.temporal.codec import EncryptionKeyError
from aftercare.temporal.connection import (
    TemporalConfigError,
    TemporalUnreachable,
    connect,
    temporal_target,
)
from aftercare.temporal.search_attributes import (
    REFUSALS,
    SEARCH_ATTRIBUTES,
    SETUP_COMMAND,
    SearchAttributeMismatch,
    missing_search_attributes,
)
from aftercare.validation import describe_validation_error


class StartupCheckFailed(RuntimeError):
    """The service must not start; the message is the one line to show."""


async def search_attributes_registered(client: Client, settings: Settings) -> None:
    namespace = temporal_target(settings).namespace
    try:
        missing = await missing_search_attributes(client, namespace)
    except SearchAttributeMismatch as err:
        raise StartupCheckFailed(str(err)) from None
    except RPCError as err:
        if err.status not in REFUSALS:
            raise StartupCheckFailed(
                f"Temporal refused the start-up check: {err.message}") from None
        missing = await unknown_to_visibility(client)
    if missing:
        raise StartupCheckFailed(
            f"namespace {namespace} lacks the search attributes {', '.join(missing)}: "
            f"run {SETUP_COMMAND} (or have an administrator add them)"
        )


async def unknown_to_visibility(client: Client) -> list[str]:
    """For an identity the operator service turns away (a Temporal Cloud API key without
    the admin role): a visibility query naming an unregistered attribute is refused."""
    missing = []
    for name in SEARCH_ATTRIBUTES:
        try:
            await client.count_workflows(f'{name} = "start-up-check"')
        except RPCError as err:
            if err.status is not RPCStatusCode.INVALID_ARGUMENT:
                raise StartupCheckFailed(
                    f"Temporal refused the start-up check: {err.message}") from None
            missing.append(name)
    return missing


StartupCheck = Callable[[Client, Settings], Awaitable[None]]
STARTUP_CHECKS: list[StartupCheck] = [search_attributes_registered]


async def connect_checked(settings: Settings, runtime: Runtime | None = None) -> Client:
    """Connect to Temporal and run every start-up check against that connection."""
    client = await connect(settings, runtime)
    for check in STARTUP_CHECKS:
        await check(client, settings)
    return client


def refusal(err: BaseException) -> str | None:
    """The one line a service prints when ``err`` stops it starting; None if it is a bug."""
    if isinstance(err, ValidationError):
        return f"error: settings: {describe_validation_error(err)}"
    if isinstance(err, EncryptionKeyError | TemporalConfigError | TemporalUnreachable
                  | StartupCheckFailed):
        return f"error: {err}"
    return None


def run_service(main: Callable[[], Awaitable[None]]) -> int:
    """Run a service's ``main``; a refusal to start is one line on stderr and exit code 1."""
    try:
        asyncio.run(main())
    except Exception as err:
        line = refusal(err)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1
    return 0
