"""A ``405`` names in ``Allow`` every method the path takes, not only those of the first
route that matched it (Starlette's answer): ``GET /r/{token}`` and ``POST /r/{token}`` are
two routes, and ``OPTIONS`` on the link once answered ``Allow: GET``. The methods come from
the app's OpenAPI paths, which list every route a caller may use."""

from __future__ import annotations

import re

from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

HTTP_METHODS = {"get", "head", "post", "put", "patch", "delete", "options"}


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code != 405:
        return await http_exception_handler(request, exc)
    headers = dict(exc.headers or {})
    methods = {m.strip() for m in headers.get("Allow", "").split(",") if m.strip()}
    for template, operations in request.app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)),
                        request.url.path):
            methods |= {method.upper() for method in operations if method in HTTP_METHODS}
    headers["Allow"] = ", ".join(sorted(methods))
    return await http_exception_handler(request, HTTPException(405, exc.detail, headers))
