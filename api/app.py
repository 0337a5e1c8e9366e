"""The intake service as a FastAPI app, and ``serve()`` to run it under uvicorn."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client
from temporalio.service import RPCError

from aftercare.logs import configure_logging
from aftercare.policies import PolicyBook
from aftercare.preflight import api_problems, checked_settings
from aftercare.settings import API_REQUIRED_SETTINGS, Settings
from aftercare.temporal.startup import connect_checked, run_service
from api import email_links, followups, health, openapi, sms_webhooks
from api.console import add_console
from api.frames import NoFraming
from api.intake import Intake
from api.limits import BodySizeLimit
from api.methods import method_not_allowed
from api.metrics import RequestMetrics
from api.problems import TemporalUnavailable, invalid_request, temporal_unavailable
from workflows.models import Acknowledge, Cancel, DepartureEvent, Resolve


def create_app(
    settings: Settings, client: Client | None = None, policies: PolicyBook | None = None
) -> FastAPI:
    """The app for these settings. Without a ``client`` it connects to Temporal on first use.

    Raises ``MissingSettingError`` naming the first secret it needs and was not given.
    """
    settings.require(*API_REQUIRED_SETTINGS)
    service = Intake(settings, policies or PolicyBook.load(settings.policy_file), client)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        redelivery = asyncio.create_task(sms_webhooks.redeliver_forever(service))
        yield
        redelivery.cancel()
        with suppress(asyncio.CancelledError):
            await redelivery
        await service.close()

    app = FastAPI(
        title="Aftercare intake",
        version="1",
        description=(
            "Departure events from clinics, replies from clients, and staff actions on "
            "follow-ups. Clinics authenticate with their API key as a bearer token."
        ),
        lifespan=lifespan,
    )
    app.state.intake = service
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(TemporalUnavailable, temporal_unavailable)
    app.add_exception_handler(RPCError, temporal_unavailable)
    app.add_exception_handler(StarletteHTTPException, method_not_allowed)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(RequestMetrics)
    app.add_middleware(NoFraming)
    for router in (followups.router, sms_webhooks.router, email_links.router, health.router):
        app.include_router(router)
    add_console(app)
    openapi.install(app, [DepartureEvent, Acknowledge, Resolve, Cancel])
    return app


class _HideLinkTokens(logging.Filter):
    """A link token in an access log line is a working credential until it is used."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            path = re.sub(r"^(/[re]/|/console/sign-in/link/)[^?]+", r"\1[token]",
                          str(record.args[2]))
            record.args = (*record.args[:2], path, *record.args[3:])
        return True


def serve() -> int:
    """Run the service until stopped; 1 with one line on stderr if a start-up check fails."""
    settings = checked_settings(api_problems)
    configure_logging(settings.log_level)

    async def check() -> None:
        await connect_checked(settings)

    refused = run_service(check)
    if refused:
        return refused
    logging.getLogger("uvicorn.access").addFilter(_HideLinkTokens())
    # log_config=None keeps uvicorn on the redacting handlers configured above.
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port,
                log_config=None)
    return 0
