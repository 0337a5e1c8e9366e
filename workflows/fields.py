"""Field types the shared models validate alike, in departure events and clinic policies:
opaque identifiers, phone numbers in E.164 form and IANA time zones. The audit store's
columns are sized from the same bounds (aftercare/trail/schema.py)."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import AfterValidator, Field

OPAQUE_ID_MAX_LENGTH = 80
PROVIDER_MESSAGE_ID_MAX_LENGTH = 200


def _opaque_id(value: str) -> str:
    if not value or any(c.isspace() for c in value) or "@" in value:
        raise ValueError("must be an opaque identifier: no spaces, no e-mail addresses")
    return value


def _e164(value: str) -> str:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as err:
        reason = err.args[0] if err.args else err
        raise ValueError(f"not an E.164 phone number ({reason})") from None
    # "Possible" (right length for the country) rather than "valid": the fictional
    # 555-01xx numbers used in examples and tests must pass; a number no carrier serves
    # is Twilio's to refuse, which the workflow answers by falling back to email.
    if not phonenumbers.is_possible_number(number):
        raise ValueError("not a possible E.164 phone number for its country code")
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if formatted != value:
        raise ValueError(f"must be written in E.164 form, e.g. {formatted}")
    return value


def _iana_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}") from None
    return value


OpaqueId = Annotated[
    str, Field(min_length=1, max_length=OPAQUE_ID_MAX_LENGTH), AfterValidator(_opaque_id)
]
PhoneNumber = Annotated[str, AfterValidator(_e164)]
TimeZoneName = Annotated[str, AfterValidator(_iana_zone)]
