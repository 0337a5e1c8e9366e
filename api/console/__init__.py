"""The staff console: server-rendered pages in the API service for on-call staff, the
clinic's front desk, clinic leads and auditors (see each module)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.console import board, escalations, signin, trail
from api.console.web import HERE


def add_console(app: FastAPI) -> None:
    for module in (signin, board, escalations, trail):
        app.include_router(module.router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
