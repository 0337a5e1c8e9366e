"""Clinics authenticate with their API key as a bearer token (``AFTERCARE_API_KEYS``)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.intake import Intake, intake

bearer = HTTPBearer(auto_error=False, description="The clinic's API key")


def clinic_holding(api_keys: Mapping[str, str], presented: str) -> str | None:
    """The clinic whose key this is. Every key is compared, in constant time each, so the
    answer's timing does not tell how many keys or which one came close."""
    found = None
    for clinic_id, key in api_keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = clinic_id
    return found


async def calling_clinic(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    service: Annotated[Intake, Depends(intake)],
) -> str:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(
            401, "Authorization: send the clinic's API key as 'Bearer <key>'", headers=challenge
        )
    clinic_id = clinic_holding(service.settings.api_keys, credentials.credentials)
    if clinic_id is None:
        raise HTTPException(401, "Authorization: this API key is not known", headers=challenge)
    return clinic_id


CallingClinic = Annotated[str, Depends(calling_clinic)]

metrics_bearer = HTTPBearer(auto_error=False, description="AFTERCARE_METRICS_TOKEN")


async def metrics_scraper(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(metrics_bearer)],
    service: Annotated[Intake, Depends(intake)],
) -> None:
    """Prometheus presents ``AFTERCARE_METRICS_TOKEN`` (``authorization: credentials`` in its
    scrape config): the metrics sit on the public port, and say how busy each route is."""
    token = service.settings.metrics_token or ""
    if credentials is None or not hmac.compare_digest(
        token.encode(), credentials.credentials.encode()
    ):
        raise HTTPException(401, "Authorization: send AFTERCARE_METRICS_TOKEN as 'Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
