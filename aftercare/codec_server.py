"""The codec endpoint: lets authorised staff read encrypted payloads in the Temporal Web UI
and CLI (``--codec-endpoint``), in Temporal's remote codec JSON format.

    python -m aftercare.codec_server

Unlike the public sample's open codec server, every call must carry a bearer token from
``AFTERCARE_CODEC_AUTH_TOKENS``: whoever can call /decode can read client details. CORS lets
in only ``AFTERCARE_CODEC_UI_ORIGIN``, the Web UI that asks on the user's behalf.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from aftercare.codec import EncryptionCodec, EncryptionKeyError, PayloadDecryptionError
from aftercare.logs import configure_logging
from aftercare.settings import Settings, get_settings

Transform = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]


def create_app(settings: Settings) -> FastAPI:
    if not settings.codec_auth_tokens:
        raise ValueError(
            "no codec tokens configured: set AFTERCARE_CODEC_AUTH_TOKENS to holder:token pairs"
        )
    codec = EncryptionCodec(settings.encryption_keys)
    tokens = [token.encode() for token in settings.codec_auth_tokens.values()]
    bearer = HTTPBearer(auto_error=False)

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None:
            raise HTTPException(
                401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        presented = credentials.credentials.encode()
        # Compare with every token, so the time taken tells nothing about which one is near.
        matches = [hmac.compare_digest(presented, token) for token in tokens]
        if not any(matches):
            raise HTTPException(403, "this token may not use the codec endpoint")

    app = FastAPI(
        title="Aftercare codec endpoint",
        dependencies=[Depends(authorised)],
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    if settings.codec_ui_origin:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[settings.codec_ui_origin],
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type", "X-Namespace"],
            allow_credentials=True,
        )

    @app.post("/encode")
    async def encode(request: Request) -> Response:
        return await _transformed(request, codec.encode)

    @app.post("/decode")
    async def decode(request: Request) -> Response:
        return await _transformed(request, codec.decode)

    return app


async def _transformed(request: Request, transform: Transform) -> Response:
    try:
        payloads = json_format.Parse(await request.body(), Payloads())
    except json_format.ParseError:
        raise HTTPException(400, 'expected {"payloads": [...]} in Temporal\'s JSON form') from None
    try:
        result = await transform(payloads.payloads)
    except (EncryptionKeyError, PayloadDecryptionError) as err:
        # These messages name a key id at most, never a payload's contents.
        raise HTTPException(400, str(err)) from None
    return Response(
        json_format.MessageToJson(Payloads(payloads=result)), media_type="application/json"
    )


def serve() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.codec_server_host,
        port=settings.codec_server_port,
        log_config=None,
    )


if __name__ == "__main__":
    serve()
