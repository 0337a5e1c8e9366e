"""The codec endpoint: lets authorised staff read encrypted payloads in the Temporal Web UI
and CLI (``--codec-endpoint``), in Temporal's remote codec JSON format.

    python -m aftercare.temporal.codec_server

Unlike the public sample's open codec server, every call must carry a bearer token from
``AFTERCARE_CODEC_AUTH_TOKENS``: whoever can call /decode can read client details. CORS lets
in only ``AFTERCARE_CODEC_UI_ORIGIN``, the Web UI that asks on the user's behalf.

Each decode is an access to PHI, so it is written to the audit database's access log
before the answer leaves: the token's holder, the follow-ups whose payloads were read
(found in the decoded payloads themselves: the remote codec protocol names no workflow),
the namespace and the time. No record, no answer.

Unencrypted payloads pass through here untouched: the UI and the CLI send search
attributes too, which Temporal must read in clear (they never hold PHI). The worker's and
starter's codec, by contrast, refuses them (``aftercare.temporal.codec``).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from aftercare.logs import configure_logging, get_logger
from aftercare.preflight import checked_settings, codec_endpoint_problems
from aftercare.settings import Settings
from aftercare.temporal.codec import EncryptionCodec, EncryptionKeyError, PayloadDecryptionError
from aftercare.trail.store import AuditStore
from workflows.models import followup_workflow_id

Transform = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]
log = get_logger("aftercare.codec_server")


def create_app(settings: Settings) -> FastAPI:
    if not settings.codec_auth_tokens:
        raise ValueError(
            "no codec tokens configured: set AFTERCARE_CODEC_AUTH_TOKENS to holder:token pairs"
        )
    codec = EncryptionCodec(settings.encryption_keys, accept_unencrypted=True)
    holders = [(holder, token.encode()) for holder, token in settings.codec_auth_tokens.items()]
    bearer = HTTPBearer(auto_error=False)

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        """The holder of the presented token."""
        if credentials is None:
            raise HTTPException(
                401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        presented = credentials.credentials.encode()
        # Compare with every token, so the time taken tells nothing about which one is near.
        matches = [holder for holder, token in holders if hmac.compare_digest(presented, token)]
        if not matches:
            raise HTTPException(403, "this token may not use the codec endpoint")
        return matches[0]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = await AuditStore.open(settings.audit_database_url)
        yield
        await app.state.store.close()

    app = FastAPI(
        title="Aftercare codec endpoint",
        dependencies=[Depends(authorised)],
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
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
        return _answer(await _transformed(request, codec.encode))

    @app.post("/decode")
    async def decode(request: Request, holder: str = Depends(authorised)) -> Response:
        decoded = await _transformed(request, codec.decode)
        workflows = sorted(workflow_ids_in(decoded))
        read = f"workflow {', '.join(workflows)}" if workflows else "no follow-up named"
        namespace = request.headers.get("X-Namespace", "?")
        try:
            await request.app.state.store.record_access(
                actor=f"codec:{holder}", action="decode",
                target=f"{read} ({len(decoded)} payloads, namespace {namespace})",
                at=datetime.now(UTC))
        except Exception as err:  # noqa: BLE001 - whatever failed, the read is not on record
            log.error("codec access not recorded; nothing decoded", error=type(err).__name__)
            raise HTTPException(503, "the access log is unavailable: nothing decoded") from None
        return _answer(decoded)

    return app


def workflow_ids_in(payloads: Sequence[Payload]) -> set[str]:
    """The follow-ups a set of decoded payloads belongs to: their ``workflow_id`` fields, and
    the workflow id of any departure event among them."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("workflow_id"), str):
                found.add(value["workflow_id"])
            clinic, session = value.get("clinic_id"), value.get("session_id")
            if isinstance(clinic, str) and isinstance(session, str):
                found.add(followup_workflow_id(clinic, session))
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for payload in payloads:
        if payload.metadata.get("encoding") == b"json/plain":
            try:
                walk(json.loads(payload.data))
            except ValueError:
                continue
    return found


async def _transformed(request: Request, transform: Transform) -> list[Payload]:
    try:
        payloads = json_format.Parse(await request.body(), Payloads())
    except json_format.ParseError:
        raise HTTPException(400, 'expected {"payloads": [...]} in Temporal\'s JSON form') from None
    try:
        return await transform(payloads.payloads)
    except (EncryptionKeyError, PayloadDecryptionError) as err:
        # These messages name a key id at most, never a payload's contents.
        raise HTTPException(400, str(err)) from None


def _answer(payloads: Sequence[Payload]) -> Response:
    return Response(
        json_format.MessageToJson(Payloads(payloads=payloads)), media_type="application/json"
    )


def serve() -> None:
    settings = checked_settings(codec_endpoint_problems)
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.codec_server_host,
        port=settings.codec_server_port,
        log_config=None,
    )


if __name__ == "__main__":
    serve()
