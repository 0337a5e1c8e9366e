"""Prometheus metrics for ``/metrics``: requests by route and outcome, and what came in.

Every label value comes from a closed set: route templates of this app, HTTP methods from
``METHODS``, status classes (``2xx`` ...), and outcome words the code names. Anything a
caller chose (a method such as ``+15555550177``, a path, a Twilio status we do not know)
is counted as ``other``: a label never carries an id, a number or text, and /metrics
cannot be grown by sending odd requests.
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


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


def one_of(value: str, allowed: frozenset[str] | set[str]) -> str:
    """``value`` when it is in the closed set ``allowed``, else ``other``."""
    return value if value in allowed else OTHER


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER


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
            # A route's path is a template written in this app, never the requested path.
            route = getattr(scope.get("route"), "path", "unmatched")
            method = one_of(scope["method"], METHODS)
            http_requests.labels(method, route, status_class(status)).inc()
            http_latency.labels(method, route).observe(time.perf_counter() - started)


async def metrics(_request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
