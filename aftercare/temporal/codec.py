"""Encrypts every Temporal payload so no client detail is stored in clear in a history.

Each payload is the whole original payload (data and metadata), serialised and sealed with
AES-256-GCM under the newest key. The key id travels in clear in the metadata so any worker,
starter or auditor holding that key can open it after newer keys are added: rotation is
"put the new key first, keep the old ones until their histories are gone".

The follow-up a payload belongs to travels in clear beside it too (``workflow-id``, taken
from the SDK's serialization context): workflow ids carry no PHI, and the codec endpoint
names it in the access log of every decode, whatever the payload holds (a staff note in an
update names no follow-up). Both are authenticated with the ciphertext, so neither can be
swapped. Payloads sealed before this carry no workflow id and open as before.

A payload of some size is compressed before it is sealed (``compression: zlib`` beside it,
authenticated too): the clinic's policy and the trail are repetitive JSON, and sealed whole
they were most of a follow-up's history bytes. Payloads sealed before this open as before.
Compressing first lets a ciphertext's length depend on how repetitive its contents are, not
only on their length. Turning that into a secret takes reading the sizes in Temporal's
histories and, many times over, getting chosen text into a payload beside the secret: a
text sent as the client lands in the trail a send carries beside the client's first name
and number. So it takes both the Temporal operator's view of the histories and texting as
the client, over and over; and the first name is the most it could learn (the number it
already knows).
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
)

from aftercare.settings import Settings

ENCRYPTED_ENCODING = b"binary/encrypted"
# What the server itself writes as the details of an activity cancelled before it started
# (a withdrawn send waiting to retry): a constant, never client data, never encrypted.
SERVER_CANCELLED_BEFORE_START = Payload(metadata={"encoding": b"json/plain"},
                                        data=b'"ACTIVITY_ID_NOT_STARTED"')
KEY_ID_METADATA = "encryption-key-id"
WORKFLOW_ID_METADATA = "workflow-id"
COMPRESSION_METADATA = "compression"
ZLIB = b"zlib"
# Below this a payload is sealed as it is: compressing a few dozen bytes saves nothing.
COMPRESS_FROM_BYTES = 256
_NONCE_BYTES = 12


class EncryptionKeyError(ValueError):
    """A configured key is unusable, or a payload names a key this process does not hold."""


class PayloadDecryptionError(ValueError):
    """An encrypted payload failed authentication: it was altered or sealed with another key."""


def _decode_key(key_id: str, encoded: str) -> AESGCM:
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise EncryptionKeyError(f"encryption key {key_id!r} is not valid base64") from None
    if len(key) != 32:
        raise EncryptionKeyError(
            f"encryption key {key_id!r} must be 32 bytes (AES-256), got {len(key)}"
        )
    return AESGCM(key)


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-GCM payload codec with a key id per payload, for key rotation, and the workflow
    id of the payloads it seals for one workflow."""

    _workflow_id: str | None = None

    def __init__(self, keys: Mapping[str, str], accept_unencrypted: bool = False) -> None:
        """``keys``: key id → base64 32-byte key; the first one encrypts, all decrypt.

        An unencrypted payload is refused unless ``accept_unencrypted``
        (``AFTERCARE_CODEC_ACCEPT_UNENCRYPTED``, for migrating histories written before
        encryption): a process that wrote one ran without this codec and put whatever it
        held, client details included, in clear into Temporal; it must fail loudly, not
        pass unnoticed."""
        self._accept_unencrypted = accept_unencrypted
        if not keys:
            raise EncryptionKeyError(
                "no encryption keys configured: set AFTERCARE_ENCRYPTION_KEYS to id:base64key"
            )
        self._ciphers = {key_id: _decode_key(key_id, value) for key_id, value in keys.items()}
        self._current_key_id = next(iter(keys))

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        """This codec for one workflow's (or its activity's) payloads."""
        workflow_id = getattr(context, "workflow_id", None)
        if workflow_id == self._workflow_id:
            return self
        for_workflow = copy.copy(self)
        for_workflow._workflow_id = workflow_id
        return for_workflow

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(payload) for payload in payloads]

    def seal(self, plain: bytes) -> bytes:
        """``plain`` sealed exactly as a payload is, for keeping at rest outside Temporal
        (an inbound text waiting for redelivery, a staff note): same keys, same rotation."""
        return self._encrypt(Payload(data=plain)).SerializeToString()

    def open(self, sealed: bytes) -> bytes:
        """What ``seal`` sealed; refuses anything that was not sealed."""
        payload = Payload.FromString(sealed)
        if payload.metadata.get("encoding") != ENCRYPTED_ENCODING:
            raise PayloadDecryptionError("a value kept at rest was not sealed")
        return self._decrypt(payload).data

    def _encrypt(self, payload: Payload) -> Payload:
        key_id = self._current_key_id
        metadata = {"encoding": ENCRYPTED_ENCODING, KEY_ID_METADATA: key_id.encode()}
        if self._workflow_id is not None:
            metadata[WORKFLOW_ID_METADATA] = self._workflow_id.encode()
        plain = payload.SerializeToString()
        if len(plain) >= COMPRESS_FROM_BYTES:
            compressed = zlib.compress(plain)
            if len(compressed) < len(plain):
                plain = compressed
                metadata[COMPRESSION_METADATA] = ZLIB
        nonce = os.urandom(_NONCE_BYTES)
        # What travels in clear is authenticated too, so it cannot be swapped.
        sealed = self._ciphers[key_id].encrypt(nonce, plain, _associated_data(metadata))
        return Payload(metadata=metadata, data=nonce + sealed)

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCRYPTED_ENCODING:
            if self._accept_unencrypted or payload == SERVER_CANCELLED_BEFORE_START:
                return payload
            raise PayloadDecryptionError(
                "payload is not encrypted: refused (it was written without the encryption "
                "codec; set AFTERCARE_CODEC_ACCEPT_UNENCRYPTED=true only while migrating "
                "histories written before encryption)"
            )
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise EncryptionKeyError(
                f"payload was encrypted with key {key_id!r}, which is not among the configured "
                f"keys ({', '.join(self._ciphers)}): add it to AFTERCARE_ENCRYPTION_KEYS"
            )
        nonce, sealed = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, _associated_data(payload.metadata))
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload encrypted with key {key_id!r} failed authentication: "
                "it was altered, or the key with that id is not the one that sealed it"
            ) from None
        compression = payload.metadata.get(COMPRESSION_METADATA)
        if compression is not None:
            if compression != ZLIB:
                raise PayloadDecryptionError(
                    f"payload is compressed with {compression.decode(errors='replace')!r}, "
                    "which this version cannot open")
            plain = zlib.decompress(plain)
        return Payload.FromString(plain)


def _associated_data(metadata: Mapping[str, bytes]) -> bytes:
    """The key id, the workflow id and the compression, where the payload carries them. Ids
    never hold a NUL, so the parts cannot run into each other."""
    associated = metadata[KEY_ID_METADATA]
    workflow_id = metadata.get(WORKFLOW_ID_METADATA)
    if workflow_id is not None:
        associated += b"\0" + workflow_id
    compression = metadata.get(COMPRESSION_METADATA)
    if compression is not None:
        associated += b"\0compression\0" + compression
    return associated


def workflow_id_of(payload: Payload) -> str | None:
    """The follow-up an encrypted payload was sealed for, if it says (see module doc)."""
    workflow_id = payload.metadata.get(WORKFLOW_ID_METADATA)
    return workflow_id.decode() if workflow_id is not None else None


# A worker's open workflows and their activity commands; past it the cache starts again.
CONTEXTS_KEPT = 4096


@dataclasses.dataclass(frozen=True)
class ContextCachingDataConverter(DataConverter):
    """A data converter that keeps what it made for each serialization context.

    The worker asks for a converter per workflow and per activity command each time it
    encodes or decodes a workflow task's payloads, and the SDK builds a new one (and a new
    pydantic payload converter inside it) every time; this one builds it once per context.
    """

    _made_for: dict[SerializationContext, Self] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False)

    def with_context(self, context: SerializationContext) -> Self:
        made = self._made_for.get(context)
        if made is None:
            if len(self._made_for) >= CONTEXTS_KEPT:
                self._made_for.clear()
            made = self._made_for[context] = super().with_context(context)
        return made


class SharedPydanticPayloadConverter(CompositePayloadConverter):
    """Pydantic's payload converter, its parts built once per process.

    The SDK builds a data converter, and a payload converter inside it, for every workflow
    activation it decodes and every completion it encodes, only to hand the payloads on to
    the converter for their context; pydantic's builds a new cache of type adapters each
    time (4.6% of the worker's samples in the happy path; 2.6% with this). Its parts keep
    no state but that cache, which is thread-safe and keyed by type, so one set serves every
    copy, and a type adapter built for one follow-up serves the next.
    """

    _PARTS = tuple(PydanticPayloadConverter().converters.values())

    def __init__(self) -> None:
        super().__init__(*self._PARTS)


def data_converter(settings: Settings) -> DataConverter:
    """The converter every worker, starter and replayer must share: pydantic JSON, encrypted,
    with failure messages and stack traces moved into the encrypted attributes."""
    return ContextCachingDataConverter(
        payload_converter_class=SharedPydanticPayloadConverter,
        payload_codec=EncryptionCodec(
            settings.encryption_keys, accept_unencrypted=settings.codec_accept_unencrypted),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
