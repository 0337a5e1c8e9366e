"""Schemathesis over the service's own OpenAPI schema, against the running app, with every
check: no 5xx, every answer matches what the schema documents (status, content type, body,
headers, ``Allow``), and every request the schema says is valid is accepted (the schema
states what the API validates, no looser)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.openapi import possible_e164_pattern
from tests.fixtures.api import CLINIC_KEY
from workflows.models import ClientContact


async def test_the_api_keeps_to_its_own_schema(api, tmp_path):
    schemathesis = Path(sys.executable).with_name("schemathesis")
    run = await asyncio.create_subprocess_exec(
        str(schemathesis), "run", f"{api.url}/openapi.json",
        "--checks", "all",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", "15",
        "--seed", "20261121",
        "--header", f"Authorization: Bearer {CLINIC_KEY}",
        "--request-timeout", "20",
        "--no-color",
        "--report-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(run.communicate(), timeout=400)

    assert run.returncode == 0, output.decode()[-6000:]
    assert " 0 passed" not in output.decode()


async def test_options_on_a_link_allows_both_of_its_methods(offline_api):
    answer = await offline_api.http.options("/r/a.b")

    assert answer.status_code == 405
    assert set(answer.headers["allow"].split(", ")) == {"GET", "POST"}


@settings(max_examples=300, deadline=None)
@given(st.from_regex(possible_e164_pattern(), fullmatch=True))
def test_every_phone_number_the_schema_allows_is_accepted(number):
    contact = {"id": "c-1", "first_name": "Dana", "phone": number, "preferred_channel": "sms",
               "timezone": "America/New_York"}
    assert ClientContact.model_validate(contact).phone == number


@pytest.mark.parametrize("number", [
    "+15555550123", "+447700900123", "+441212345678", "+390612345678", "+8613123456789",
    "+5491123456789",
])
def test_the_phone_schema_admits_numbers_from_several_countries(number):
    assert re.fullmatch(possible_e164_pattern(), number)
