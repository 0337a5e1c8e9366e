"""Field types the shared models validate alike, in departure events and clinic policies:
phone numbers in E.164 form and IANA time zones."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import AfterValidator


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


PhoneNumber = Annotated[str, AfterValidator(_e164)]
TimeZoneName = Annotated[str, AfterValidator(_iana_zone)]
