"""Every 4xx and 5xx answer is ``{"detail": "..."}``, naming the field or the reason."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.service import RPCError

from aftercare.validation import describe_validation_error


class Problem(BaseModel):
    detail: str


class TemporalUnavailable(RuntimeError):
    """Temporal did not answer: the caller may retry later."""


_DESCRIPTIONS = {
    400: "The body is not what this endpoint reads (e.g. not JSON)",
    401: "No API key (or metrics token), or one not known",
    403: "The API key is another clinic's, or a webhook signature does not hold",
    404: "No such follow-up for this clinic",
    409: "The follow-up refused the action, or the session already has another event",
    413: "The body is over the size limit",
    422: "A field is missing or invalid: the detail names it",
    503: "Temporal is unreachable",
}


PROBLEM_CONTENT = {"application/json": {"schema": Problem.model_json_schema()}}


def problems(*codes: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` for these error codes, JSON whatever the endpoint's own type."""
    return {code: {"content": PROBLEM_CONTENT, "description": _DESCRIPTIONS[code]}
            for code in codes}


async def invalid_request(_request: Request, err: RequestValidationError) -> JSONResponse:
    first = err.errors()[0]
    if first.get("type") == "json_invalid":
        return JSONResponse({"detail": "body: not valid JSON"}, status_code=400)
    return JSONResponse(
        {"detail": describe_validation_error(err).removeprefix("body.")}, status_code=422
    )


async def temporal_unavailable(_request: Request, err: Exception) -> JSONResponse:
    reason = err.status.name.lower() if isinstance(err, RPCError) else str(err)
    return JSONResponse({"detail": f"temporal: {reason}"}, status_code=503)
