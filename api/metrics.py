"""Prometheus metrics for ``/metrics``: requests by route and outcome, and what came in.

Labels carry route templates and outcomes only, never ids, numbers or message text.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

http_requests = Counter(
    "aftercare_http_requests", "HTTP requests answered", ["method", "route", "status"],
    registry=REGISTRY,
)
http_latency = Histogram(
    "aftercare_http_request_seconds", "Time to answer an HTTP request", ["method", "route"],
    registry=REGISTRY,
)
intake_events = Counter(
    "aftercare_intake_events",
    "What reached the service: departures, texts, status callbacks, link clicks",
    ["kind", "outcome"],
    registry=REGISTRY,
)


inbound_waiting = Gauge(
    "aftercare_inbound_webhooks_waiting",
    "Twilio webhooks kept but not yet passed to Temporal (it was unreachable)",
    registry=REGISTRY,
)


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            http_requests.labels(scope["method"], route, str(status)).inc()
            http_latency.labels(scope["method"], route).observe(time.perf_counter() - started)


async def metrics(_request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
