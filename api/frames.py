"""No page of this service may be shown inside another site's frame.

A framed link page or console page can be overlaid by the framing site (clickjacking): a
client pressing what looks like another site's button would tell the clinic "I'm OK".
Every ``text/html`` answer, whoever wrote it (the link pages, the console, FastAPI's own
``/docs``), leaves with ``X-Frame-Options: DENY`` and a ``Content-Security-Policy`` holding
``frame-ancestors 'none'``; a policy a page already sets keeps its other directives.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FRAME_ANCESTORS = "frame-ancestors 'none'"


class NoFraming:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if headers.get("content-type", "").startswith("text/html"):
                    forbid_framing(headers)
            await send(message)

        await self.app(scope, receive, send_guarded)


def forbid_framing(headers: MutableHeaders) -> None:
    headers["X-Frame-Options"] = "DENY"
    policy = headers.get("content-security-policy")
    if policy is None:
        headers["Content-Security-Policy"] = FRAME_ANCESTORS
    elif "frame-ancestors" not in policy:
        headers["Content-Security-Policy"] = f"{policy.rstrip('; ')}; {FRAME_ANCESTORS}"
