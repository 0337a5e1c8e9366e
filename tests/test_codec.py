import base64
import os

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import WorkflowSerializationContext
from temporalio.exceptions import ApplicationError

from aftercare.settings import Settings
from aftercare.temporal.codec import (
    COMPRESSION_METADATA,
    ENCRYPTED_ENCODING,
    KEY_ID_METADATA,
    WORKFLOW_ID_METADATA,
    EncryptionCodec,
    EncryptionKeyError,
    PayloadDecryptionError,
    SharedPydanticPayloadConverter,
    data_converter,
    workflow_id_of,
)
from tests.followup_harness import make_event
from workflows.models import Delivery, FollowUpInput
from workflows.policy import ClinicPolicy

PHONE = "+15555550123"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


async def encode_phone(converter) -> list:
    return await converter.encode([{"phone": PHONE, "first_name": "Dana"}])


async def test_payloads_round_trip_and_carry_no_clear_text():
    converter = data_converter(Settings(encryption_keys={"k1": new_key()}))

    payloads = await encode_phone(converter)

    assert payloads[0].metadata["encoding"] == ENCRYPTED_ENCODING
    assert payloads[0].metadata[KEY_ID_METADATA] == b"k1"
    assert PHONE.encode() not in payloads[0].SerializeToString()
    assert b"Dana" not in payloads[0].SerializeToString()
    assert await converter.decode(payloads, [dict]) == [{"phone": PHONE, "first_name": "Dana"}]


async def test_data_sealed_under_an_old_key_opens_after_a_new_key_is_put_first():
    old_key = new_key()
    before = data_converter(Settings(encryption_keys={"2025-01": old_key}))
    sealed_before = await encode_phone(before)

    after = data_converter(Settings(encryption_keys={"2026-01": new_key(), "2025-01": old_key}))
    sealed_after = await encode_phone(after)

    assert sealed_after[0].metadata[KEY_ID_METADATA] == b"2026-01"
    assert (await after.decode(sealed_before, [dict]))[0]["phone"] == PHONE


async def test_tampered_ciphertext_is_refused():
    converter = data_converter(Settings(encryption_keys={"k1": new_key()}))
    payload = (await encode_phone(converter))[0]
    flipped = bytearray(payload.data)
    flipped[-1] ^= 0x01
    payload.data = bytes(flipped)

    with pytest.raises(PayloadDecryptionError, match="failed authentication"):
        await converter.decode([payload], [dict])


async def test_only_the_servers_own_not_started_marker_passes_unencrypted():
    """A withdrawn send cancelled while it waited to retry comes back with details the
    server wrote in clear; anything else in clear is still refused."""
    codec = EncryptionCodec({"k1": new_key()})
    marker = Payload(metadata={"encoding": b"json/plain"}, data=b'"ACTIVITY_ID_NOT_STARTED"')
    assert await codec.decode([marker]) == [marker]
    for forged in (Payload(metadata={"encoding": b"json/plain"}, data=b'"+15555550123"'),
                   Payload(metadata={"encoding": b"binary/plain"},
                           data=b'"ACTIVITY_ID_NOT_STARTED"')):
        with pytest.raises(PayloadDecryptionError, match="not encrypted"):
            await codec.decode([forged])


async def test_payload_relabelled_with_another_key_id_is_refused():
    key = new_key()
    codec = EncryptionCodec({"k1": key, "k2": key})
    payload = (await data_converter(Settings(encryption_keys={"k1": key})).encode(["x"]))[0]
    payload.metadata[KEY_ID_METADATA] = b"k2"

    with pytest.raises(PayloadDecryptionError):
        await codec.decode([payload])


async def test_unknown_key_id_is_named_in_the_error():
    sealed = await encode_phone(data_converter(Settings(encryption_keys={"retired": new_key()})))
    converter = data_converter(Settings(encryption_keys={"current": new_key()}))

    with pytest.raises(EncryptionKeyError, match="'retired'.*AFTERCARE_ENCRYPTION_KEYS"):
        await converter.decode(sealed, [dict])


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({}, "no encryption keys"),
        ({"short": base64.b64encode(b"too short").decode()}, "'short' must be 32 bytes"),
        ({"bad": "not base64!"}, "'bad' is not valid base64"),
    ],
)
def test_unusable_key_configuration_is_refused_with_its_reason(keys, problem):
    with pytest.raises(EncryptionKeyError, match=problem):
        EncryptionCodec(keys)


async def test_failure_messages_and_stack_traces_are_encrypted():
    converter = data_converter(Settings(encryption_keys={"k1": new_key()}))
    try:
        raise ApplicationError(f"could not text {PHONE}")
    except ApplicationError as err:
        failure = Failure()
        await converter.encode_failure(err, failure)

    assert PHONE.encode() not in failure.SerializeToString()
    assert failure.encoded_attributes.metadata["encoding"] == ENCRYPTED_ENCODING
    decoded = await converter.decode_failure(failure)
    assert PHONE in str(decoded)


async def test_an_unencrypted_payload_is_refused_unless_migrating():
    """A payload in clear was written by a process without this codec: whatever it held is
    in Temporal's history in clear. Decoding it quietly would hide that."""
    plain = await pydantic_data_converter.encode(["+15555550123"])
    strict = data_converter(Settings(encryption_keys={"k1": new_key()}))
    migrating = data_converter(Settings(encryption_keys={"k1": new_key()},
                                        codec_accept_unencrypted=True))

    with pytest.raises(PayloadDecryptionError, match="payload is not encrypted: refused"):
        await strict.decode(plain, [str])
    assert await migrating.decode(plain, [str]) == ["+15555550123"]


async def test_a_payload_sealed_for_a_workflow_names_it_and_the_name_cannot_be_swapped():
    converter = data_converter(Settings(encryption_keys={"k1": new_key()}))
    for_followup = converter.with_context(WorkflowSerializationContext(
        namespace="default", workflow_id="followup-demo-s-1"))
    payload = (await encode_phone(for_followup))[0]

    assert workflow_id_of(payload) == "followup-demo-s-1"
    assert (await converter.decode([payload], [dict]))[0]["phone"] == PHONE
    payload.metadata[WORKFLOW_ID_METADATA] = b"followup-demo-s-2"
    with pytest.raises(PayloadDecryptionError, match="failed authentication"):
        await converter.decode([payload], [dict])


async def test_each_workflow_keeps_its_own_converter_and_seals_to_its_own_id():
    converter = data_converter(Settings(encryption_keys={"k1": new_key()}))
    contexts = [WorkflowSerializationContext(namespace="default", workflow_id=f"followup-{n}")
                for n in (1, 2)]

    first, second = (converter.with_context(context) for context in contexts)

    assert converter.with_context(contexts[0]) is first, "made once per context"
    assert [workflow_id_of((await encode_phone(made))[0]) for made in (first, second)] == [
        "followup-1", "followup-2"]
    assert workflow_id_of((await encode_phone(converter))[0]) is None


async def test_a_large_payload_is_compressed_before_it_is_sealed_and_the_mark_is_authenticated():
    converter = data_converter(Settings(encryption_keys={"k1": new_key()}))
    policy_like = {"messages": {f"reminder_{n}": "Hi Dana, checking in again." for n in range(40)}}
    small = {"phone": PHONE}

    big_payload, small_payload = await converter.encode([policy_like, small])

    assert big_payload.metadata[COMPRESSION_METADATA] == b"zlib"
    plain_size = (await pydantic_data_converter.encode([policy_like]))[0].ByteSize()
    assert big_payload.ByteSize() < plain_size / 4
    assert COMPRESSION_METADATA not in small_payload.metadata
    assert await converter.decode([big_payload, small_payload], [dict, dict]) == [
        policy_like, small]
    del big_payload.metadata[COMPRESSION_METADATA]
    with pytest.raises(PayloadDecryptionError, match="failed authentication"):
        await converter.decode([big_payload], [dict])


def test_the_shared_converter_writes_and_reads_exactly_what_pydantics_own_does():
    """Histories written before it replay, and its copies agree with each other."""
    theirs = pydantic_data_converter.payload_converter
    ours, another = SharedPydanticPayloadConverter(), SharedPydanticPayloadConverter()
    event = make_event()
    values = [FollowUpInput(event=event, policy=ClinicPolicy(clinic_id=event.clinic_id)),
              Delivery(channel="sms", provider_message_id="SM1"), None, "text", 3]
    hints = [FollowUpInput, Delivery | None, Delivery | None, str, int]

    written = ours.to_payloads(values)

    assert written == theirs.to_payloads(values) == another.to_payloads(values)
    assert ours.from_payloads(written, hints) == theirs.from_payloads(written, hints) == values
