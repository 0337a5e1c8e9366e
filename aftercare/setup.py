"""Prepares a cluster for Aftercare: the namespace's search attributes and the audit database.

    python -m aftercare.setup

Safe to run again: what is already there is left as it is. Where this identity may not add
search attributes (Temporal Cloud without the namespace-admin role, or a cluster whose
operator service is closed to it), it prints what an administrator must run instead and
exits 1. Exit 0 means the worker and the API will pass their start-up checks.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from temporalio.service import RPCError

from aftercare.process import exit_without_finalizing
from aftercare.settings import Settings, get_settings
from aftercare.temporal.connection import (
    TemporalConfigError,
    TemporalUnreachable,
    connect,
    first_line,
    temporal_target,
)
from aftercare.temporal.search_attributes import (
    SearchAttributeMismatch,
    register_search_attributes,
)
from aftercare.trail.store import AuditStore
from aftercare.validation import describe_validation_error


async def migrate_audit_store(settings: Settings, out: TextIO) -> None:
    store = await AuditStore.open(settings.audit_database_url)  # opening migrates
    await store.close()
    out.write("audit store: schema up to date\n")


async def set_up(settings: Settings, out: TextIO = sys.stdout) -> bool:
    client = await connect(settings)
    registered = await register_search_attributes(
        client, temporal_target(settings).namespace, out)
    await migrate_audit_store(settings, out)
    return registered


def main() -> int:
    try:
        settings = get_settings()
        return 0 if asyncio.run(set_up(settings)) else 1
    except ValidationError as err:
        print(f"error: settings: {describe_validation_error(err)}", file=sys.stderr)
    except (TemporalConfigError, TemporalUnreachable, SearchAttributeMismatch) as err:
        print(f"error: {err}", file=sys.stderr)
    except RPCError as err:
        print(f"error: Temporal refused the setup: {err.message}", file=sys.stderr)
    except (OSError, SQLAlchemyError) as err:
        print(f"error: audit store (AFTERCARE_AUDIT_DATABASE_URL): {first_line(err)}",
              file=sys.stderr)
    return 2


if __name__ == "__main__":
    exit_without_finalizing(main())
