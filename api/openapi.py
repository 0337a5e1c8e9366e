"""The OpenAPI schema states what the API validates, no looser.

The shared models (``workflows/models.py``, ``workflows/fields.py``) check identifiers, time
zones and phone numbers in Python validators, which FastAPI cannot see: left alone, the
schema offered plain strings and a client built from it sent time zones, staff ids and
workflow ids the API refuses. Here every field checked by one of those validators gets the
constraint that validator applies, found by the validator itself (so a model that starts
using ``OpaqueId`` is covered without a change here).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin
from zoneinfo import available_timezones

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import (
    COUNTRY_CODE_TO_REGION_CODE,
    region_code_for_country_code,
)
from pydantic import AfterValidator, BaseModel, EmailStr

from workflows.fields import OpaqueId, PhoneNumber, TimeZoneName
from workflows.models import ID_ALPHABET, Channel, ClientContact, ClinicId, EmergencyContact

# What str.isspace() calls space, as a character class both Python and ECMA regexes read.
PYTHON_SPACES = (r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f"
                 r"\u3000")
OPAQUE_ID_PATTERN = rf"^[^@{PYTHON_SPACES}]+$"
ID_PART_PATTERN = f"^{ID_ALPHABET.pattern}$"


def _validator_of(alias: Any) -> Any:
    return next(item.func for item in get_args(alias) if isinstance(item, AfterValidator))


CONSTRAINTS: dict[Any, dict[str, Any]] = {
    _validator_of(OpaqueId): {"pattern": OPAQUE_ID_PATTERN},
    _validator_of(ClinicId): {"pattern": ID_PART_PATTERN},
    _validator_of(TimeZoneName): {"enum": sorted(available_timezones())},
}
"""Validator function → the JSON Schema it enforces."""

# pydantic's EmailStr (the email-validator package) refuses what JSON Schema's "email"
# format allows: special-use domains (.test, .local, .invalid, ...), IDNA-invalid labels.
# The schema states a plain subset it always accepts.
EMAIL = {
    "pattern": r"^[A-Za-z0-9_%+-]{1,32}(?:\.[A-Za-z0-9_%+-]{1,15}){0,2}"
               r"@(?:[A-Za-z0-9]{1,20}\.){1,4}(?:[A-Za-z]{2}|com|org|net|edu|gov|health|care)$",
    "maxLength": 254,
}


def _present(field: str, **also: Any) -> dict[str, Any]:
    return {"properties": {field: {"type": "string"}, **also}, "required": [field]}


MODEL_RULES: dict[type[BaseModel], dict[str, Any]] = {
    # Its model validators: the chosen channel's address, and a way to reach the contact.
    ClientContact: {"anyOf": [
        _present("phone", preferred_channel={"const": Channel.SMS.value}),
        _present("email", preferred_channel={"const": Channel.EMAIL.value}),
    ]},
    EmergencyContact: {"anyOf": [_present("phone"), _present("email")]},
}
"""Model → the JSON Schema of what its model validators check across fields."""


def phone_constraint() -> dict[str, Any]:
    return {"pattern": possible_e164_pattern(),
            "description": "E.164, a possible number for its country code, e.g. +15555550123"}


@cache
def possible_e164_pattern() -> str:
    """The numbers ``PhoneNumber`` accepts, per country calling code: for each first digit
    of the national number, the lengths phonenumbers' metadata calls possible there and
    that come back unchanged in E.164 (a leading national prefix would be stripped). Read
    from the installed phonenumbers, so it moves with its metadata (about a second, once)."""
    validate = _validator_of(PhoneNumber)

    def accepted(number: str) -> bool:
        try:
            validate(number)
        except ValueError:
            return False
        return True

    alternatives = []
    for code in sorted(COUNTRY_CODE_TO_REGION_CODE):
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(
            code, region_code_for_country_code(code))
        if metadata is None:
            continue
        desc = metadata.general_desc
        lengths = sorted({n for n in (*(desc.possible_length or ()),
                                      *(desc.possible_length_local_only or ())) if n > 0})
        by_lengths: dict[tuple[int, ...], str] = {}
        for first in "0123456789":
            fine = tuple(n for n in lengths if all(
                accepted(f"+{code}{first}{fill * (n - 1)}") for fill in "059"))
            if fine:
                by_lengths[fine] = by_lengths.get(fine, "") + first
        for fine, firsts in by_lengths.items():
            rest = "|".join(f"[0-9]{{{n - 1}}}" for n in fine)
            digits = "0-9" if firsts == "0123456789" else firsts
            alternatives.append(f"{code}[{digits}](?:{rest})")
    return rf"^\+(?:{'|'.join(alternatives)})$"


def install(app: FastAPI, models: Iterable[type[BaseModel]]) -> None:
    """Serve ``app``'s schema with the constraints of ``models``' validated fields."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.get("components", {}).get("schemas", {})
            for model in with_nested(models):
                for name in (model.__name__, f"{model.__name__}-Input"):
                    if name in components:
                        constrain(model, components[name])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_nested(models: Iterable[type[BaseModel]]) -> set[type[BaseModel]]:
    """``models`` and every model their fields hold, at any depth."""
    found: set[type[BaseModel]] = set()
    waiting = list(models)
    while waiting:
        model = waiting.pop()
        if model in found:
            continue
        found.add(model)
        for field in model.model_fields.values():
            waiting += [arg for arg in (field.annotation, *get_args(field.annotation))
                        if isinstance(arg, type) and issubclass(arg, BaseModel)]
    return found


def constrain(model: type[BaseModel], schema: dict[str, Any]) -> None:
    schema.update(MODEL_RULES.get(model, {}))
    for name, field in model.model_fields.items():
        found = validators(field.metadata, field.annotation)
        extra = next((CONSTRAINTS[func] for func in found if func in CONSTRAINTS), None)
        if _validator_of(PhoneNumber) in found:
            extra = phone_constraint()
        if EmailStr in (field.annotation, *get_args(field.annotation)):
            extra = EMAIL
        prop = schema.get("properties", {}).get(name)
        if extra is None or prop is None:
            continue
        strings = [branch for branch in prop.get("anyOf", [prop]) if branch.get("type") == "string"]
        for branch in strings:
            branch.update(extra)


def validators(metadata: list[Any], annotation: Any) -> list[Any]:
    """The validator functions on a field, also inside ``X | None``."""
    found = [item.func for item in metadata if isinstance(item, AfterValidator)]
    if get_origin(annotation) is Annotated:
        found += validators(list(get_args(annotation)[1:]), get_args(annotation)[0])
    elif get_origin(annotation) is Union or type(annotation).__name__ == "UnionType":
        for arg in get_args(annotation):
            found += validators([], arg)
    return found
