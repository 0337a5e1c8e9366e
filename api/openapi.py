"""The OpenAPI schema states what the API validates, no looser.

The shared models (``workflows/models.py``, ``workflows/fields.py``) check identifiers, time
zones and phone numbers in Python validators, which FastAPI cannot see: left alone, the
schema offered plain strings and a client built from it sent time zones, staff ids and
workflow ids the API refuses. Here every field checked by one of those validators gets the
constraint that validator applies, found by the validator itself (so a model that starts
using ``OpaqueId`` is covered without a change here); email addresses get a subset pydantic
always accepts, and the models' cross-field validators their rule (``MODEL_RULES``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from re import _parser as re_parser  # the regex parser: a national prefix's first digits
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


@cache
def possible_e164_pattern() -> str:
    """The numbers ``PhoneNumber`` accepts, per country calling code: a national number of a
    length phonenumbers' metadata calls possible, whose first two digits cannot begin a
    national prefix (parsing strips one, and the number no longer comes back unchanged in
    E.164). Read from the installed phonenumbers, so it moves with its metadata."""
    alternatives = []
    for code in sorted(COUNTRY_CODE_TO_REGION_CODE):
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(
            code, region_code_for_country_code(code))
        if metadata is None:
            continue
        desc = metadata.general_desc
        lengths = sorted({n for n in (*(desc.possible_length or ()),
                                      *(desc.possible_length_local_only or ())) if n >= 2})
        risky = prefix_starts(metadata.national_prefix_for_parsing)
        starts = []
        for first in DIGITS:
            seconds = "".join(d for d in DIGITS if not any(
                (first + d).startswith(start) for start in risky))
            if seconds:
                starts.append(first + ("[0-9]" if seconds == DIGITS else f"[{seconds}]"))
        if starts and lengths:
            rest = "|".join(f"[0-9]{{{n - 2}}}" for n in lengths)
            alternatives.append(f"{code}(?:{'|'.join(starts)})(?:{rest})")
    return rf"^\+(?:{'|'.join(alternatives)})$"


DIGITS = "0123456789"
PREFIX_DIGITS = 2
"""How many leading digits of a national number are checked against its national prefix."""


def prefix_starts(pattern: str | None) -> set[str]:
    """How a non-empty match of ``pattern`` at the start of a number can begin: its first
    ``PREFIX_DIGITS`` digits (fewer when the whole match is shorter). Any start at all where
    the pattern uses something this does not read."""
    if not pattern:
        return set()
    try:
        return {start for start in _starts(re_parser.parse(pattern)) if start}
    except (re.error, ValueError):
        return {""}  # every number starts with ""


def _starts(sequence: Any) -> set[str]:
    """The strings a parsed regex sequence matches, cut to ``PREFIX_DIGITS`` characters."""
    found = {""}
    for op, arg in sequence:
        found = _then(found, _starts_of(str(op), arg))
    return found


def _then(before: set[str], after: set[str]) -> set[str]:
    return {a if len(a) >= PREFIX_DIGITS else (a + b)[:PREFIX_DIGITS]
            for a in before for b in after}


def _starts_of(op: str, arg: Any) -> set[str]:
    if op == "LITERAL":
        return {chr(arg)}
    if op == "IN":
        return {d for d in DIGITS if re.fullmatch(_class_of(arg), d)}
    if op == "AT":
        return {""}
    if op == "BRANCH":
        return set().union(*(_starts(branch) for branch in arg[1]))
    if op == "SUBPATTERN":
        return _starts(arg[3])
    if op in ("MAX_REPEAT", "MIN_REPEAT"):
        least, most, body = arg
        once = _starts(body)
        found = {""}
        for _ in range(least):
            found = _then(found, once)
        for _ in range(min(most, PREFIX_DIGITS) - least if most > least else 0):
            found |= _then(found, once)
        return found
    raise ValueError(op)


def _class_of(items: Any) -> str:
    parts = []
    negate = ""
    for op, arg in items:
        if str(op) == "NEGATE":
            negate = "^"
        elif str(op) == "LITERAL":
            parts.append(re.escape(chr(arg)))
        elif str(op) == "RANGE":
            parts.append(f"{re.escape(chr(arg[0]))}-{re.escape(chr(arg[1]))}")
        elif str(op) == "CATEGORY" and str(arg) == "CATEGORY_DIGIT":
            parts.append("0-9")
        else:
            raise ValueError(op)
    return f"[{negate}{''.join(parts)}]"


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
        extra = field_constraint(field.metadata, field.annotation)
        prop = schema.get("properties", {}).get(name)
        if extra is None or prop is None:
            continue
        strings = [branch for branch in prop.get("anyOf", [prop]) if branch.get("type") == "string"]
        for branch in strings:
            branch.update(extra)


def field_constraint(metadata: list[Any], annotation: Any) -> dict[str, Any] | None:
    """The JSON Schema a field's validation adds to "a string", if any."""
    if EmailStr in (annotation, *get_args(annotation)):
        return EMAIL
    found = validators(metadata, annotation)
    if _validator_of(PhoneNumber) in found:
        return {"pattern": possible_e164_pattern(),
                "description": "E.164, a possible number for its country code, "
                               "e.g. +15555550123"}
    return next((CONSTRAINTS[func] for func in found if func in CONSTRAINTS), None)


def validators(metadata: list[Any], annotation: Any) -> list[Any]:
    """The validator functions on a field, also inside ``X | None``."""
    found = [item.func for item in metadata if isinstance(item, AfterValidator)]
    if get_origin(annotation) is Annotated:
        found += validators(list(get_args(annotation)[1:]), get_args(annotation)[0])
    elif get_origin(annotation) is Union or type(annotation).__name__ == "UnionType":
        for arg in get_args(annotation):
            found += validators([], arg)
    return found
