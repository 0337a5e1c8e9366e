"""Liveness, readiness (Temporal reachable) and Prometheus metrics, for operators."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from api import metrics
from api.auth import metrics_scraper
from api.intake import Intake, intake
from api.problems import TemporalUnavailable, problems

router = APIRouter(tags=["operations"])

READY_TIMEOUT_SECONDS = 3.0


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health)
async def alive() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses=problems(503))
async def ready(service: Annotated[Intake, Depends(intake)]) -> Health:
    """Temporal answers: departures can be started."""
    client = await service.temporal()
    try:
        healthy = await asyncio.wait_for(
            client.service_client.check_health(), READY_TIMEOUT_SECONDS)
    except (RuntimeError, TimeoutError) as err:
        raise TemporalUnavailable("not answering") from err
    if not healthy:
        raise HTTPException(503, "temporal: not serving")
    return Health(status="ready")


router.add_api_route(
    "/metrics", metrics.metrics, methods=["GET"], response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                     "description": "Prometheus text format"},
               **problems(401)},
    summary="Prometheus metrics (bearer AFTERCARE_METRICS_TOKEN)",
    dependencies=[Depends(metrics_scraper)],
)
