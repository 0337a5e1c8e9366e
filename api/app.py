"""The intake service as a FastAPI app, and ``serve()`` to run it under uvicorn."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from temporalio.client import Client
from temporalio.service import RPCError

from aftercare.logs import configure_logging
from aftercare.policies import PolicyBook
from aftercare.settings import Settings, get_settings
from api import email_links, followups, health, sms_webhooks
from api.console import add_console
from api.intake import Intake
from api.limits import BodySizeLimit
from api.metrics import RequestMetrics
from api.problems import TemporalUnavailable, invalid_request, temporal_unavailable


def create_app(
    settings: Settings, client: Client | None = None, policies: PolicyBook | None = None
) -> FastAPI:
    """The app for these settings. Without a ``client`` it connects to Temporal on first use."""
    service = Intake(settings, policies or PolicyBook.load(settings.policy_file), client)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
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
    app.add_middleware(BodySizeLimit)
    app.add_middleware(RequestMetrics)
    for router in (followups.router, sms_webhooks.router, email_links.router, health.router):
        app.include_router(router)
    add_console(app)
    return app


class _HideLinkTokens(logging.Filter):
    """A link token in an access log line is a working credential until it is used."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            path = re.sub(r"^/([re])/[^?]+", r"/\1/[token]", str(record.args[2]))
            record.args = (*record.args[:2], path, *record.args[3:])
        return True


def serve() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    logging.getLogger("uvicorn.access").addFilter(_HideLinkTokens())
    # log_config=None keeps uvicorn on the redacting handlers configured above.
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port,
                log_config=None)
