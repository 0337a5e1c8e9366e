"""The codec endpoint: lets authorised staff read encrypted payloads in the Temporal Web UI
and CLI (``--codec-endpoint``), in Temporal's remote codec JSON format.

    python -m aftercare.temporal.codec_server

Unlike the public sample's open codec server, every call must carry a bearer token from
``AFTERCARE_CODEC_AUTH_TOKENS``: whoever can call /decode can read client details. CORS lets
in only ``AFTERCARE_CODEC_UI_ORIGIN``, the Web UI that asks on the user's behalf.

Each decode is an access to PHI, so it is written to the audit database's access log
before the answer leaves: the token's holder, the follow-up of every payload read and how
many, the namespace and the time. No record, no answer. The remote codec protocol names no
workflow, so each payload says itself: the ``workflow-id`` the payload codec sealed beside
it (``aftercare.temporal.codec``), or for one sealed before that, the workflow ids in its
contents; a payload naming neither is counted as "unknown follow-up" with that reason.
Encodes are recorded the same way. The namespace is the one this endpoint is configured
for (``AFTERCARE_TEMPORAL_NAMESPACE`` or the SDK's): a caller's ``X-Namespace`` naming
another is refused, and what a caller sent is never written to the log.

Unencrypted payloads pass through here untouched: the UI and the CLI send search
attributes too, which Temporal must read in clear (they never hold PHI). The worker's and
starter's codec, by contrast, refuses them (``aftercare.temporal.codec``).
"""

from __future__ import annotations

import hmac
import json
from collections import Counter
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
from aftercare.temporal.codec import (
    ENCRYPTED_ENCODING,
    EncryptionCodec,
    EncryptionKeyError,
    PayloadDecryptionError,
    workflow_id_of,
)
from aftercare.temporal.connection import temporal_target
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
    namespace = temporal_target(settings).namespace
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

    def in_this_namespace(request: Request) -> None:
        sent = request.headers.get("X-Namespace")
        if sent is not None and sent != namespace:
            raise HTTPException(
                403, f"X-Namespace: this codec endpoint serves namespace {namespace!r} only")

    async def record(request: Request, holder: str, action: str, read: str) -> None:
        try:
            await request.app.state.store.record_access(
                actor=f"codec:{holder}", action=action, target=f"{read}; namespace {namespace}",
                at=datetime.now(UTC))
        except Exception as err:  # noqa: BLE001 - whatever failed, the use is not on record
            log.error("codec access not recorded; nothing done", action=action,
                      error=type(err).__name__)
            raise HTTPException(503, f"the access log is unavailable: nothing {action}d") from None

    @app.post("/encode", dependencies=[Depends(in_this_namespace)])
    async def encode(request: Request, holder: str = Depends(authorised)) -> Response:
        plain = await _payloads(request)
        await record(request, holder, "encode", payloads_by_followup(
            [(None, payload) for payload in plain],
            unknown="its contents name none, and the protocol names no workflow"))
        return _answer(await _transformed(plain, codec.encode))

    @app.post("/decode", dependencies=[Depends(in_this_namespace)])
    async def decode(request: Request, holder: str = Depends(authorised)) -> Response:
        sealed = await _payloads(request)
        decoded = await _transformed(sealed, codec.decode)
        read = [(before, after) for before, after in zip(sealed, decoded, strict=True)
                if before.metadata.get("encoding") == ENCRYPTED_ENCODING]
        await record(request, holder, "decode", payloads_by_followup(
            read, unknown="sealed without its follow-up's name (before payloads carried it, "
                          "or through /encode), and its contents name none"))
        return _answer(decoded)

    return app


def payloads_by_followup(
    payloads: Sequence[tuple[Payload | None, Payload]], unknown: str
) -> str:
    """``followup-a (2 payloads), unknown follow-up (1 payload: why)`` for pairs of (the
    payload as sealed, if it was, and its plain form)."""
    counts: Counter[str] = Counter()
    for sealed, plain in payloads:
        named = workflow_id_of(sealed) if sealed is not None else None
        for workflow_id in [named] if named else sorted(workflow_ids_in([plain])) or [None]:
            counts[workflow_id or UNKNOWN] += 1
    if not counts:
        return "no payload holding client details"
    parts = [f"{workflow_id} ({_payloads_word(count)})"
             for workflow_id, count in sorted(counts.items()) if workflow_id != UNKNOWN]
    if counts[UNKNOWN]:
        parts.append(f"{UNKNOWN} ({_payloads_word(counts[UNKNOWN])}: {unknown})")
    return ", ".join(parts)


UNKNOWN = "unknown follow-up"


def _payloads_word(count: int) -> str:
    return f"{count} payload" if count == 1 else f"{count} payloads"


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


async def _payloads(request: Request) -> list[Payload]:
    try:
        return list(json_format.Parse(await request.body(), Payloads()).payloads)
    except json_format.ParseError:
        raise HTTPException(400, 'expected {"payloads": [...]} in Temporal\'s JSON form') from None


async def _transformed(payloads: Sequence[Payload], transform: Transform) -> list[Payload]:
    try:
        return await transform(payloads)
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
