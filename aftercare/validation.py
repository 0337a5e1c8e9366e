"""One line naming the first bad field of a validation error, for every caller."""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation_error(err: ValidationError, whole: str = "event") -> str:
    """E.g. ``client.phone: not a possible …``; ``whole`` names a model-level error."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or whole
    message = first["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"
