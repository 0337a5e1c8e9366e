"""Schemathesis over the service's own OpenAPI schema, against the running app: no 5xx,
and every answer matches what the schema documents (status, content type, body)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.fixtures.api import CLINIC_KEY

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
])


async def test_the_api_keeps_to_its_own_schema(api, tmp_path):
    schemathesis = Path(sys.executable).with_name("schemathesis")
    run = await asyncio.create_subprocess_exec(
        str(schemathesis), "run", f"{api.url}/openapi.json",
        "--checks", CHECKS,
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", "15",
        "--seed", "20261121",
        "--header", f"Authorization: Bearer {CLINIC_KEY}",
        "--request-timeout", "20",
        "--no-color",
        "--report-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(run.communicate(), timeout=120)

    assert run.returncode == 0, output.decode()[-6000:]
