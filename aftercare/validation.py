"""One line naming each bad field of a validation error, for every caller."""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation_errors(err: ValidationError, whole: str = "event") -> list[str]:
    """E.g. ``["client.phone: not a possible …"]``; ``whole`` names a model-level error."""
    lines = []
    for problem in err.errors():
        where = ".".join(str(part) for part in problem["loc"]) or whole
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return lines


def describe_validation_error(err: ValidationError, whole: str = "event") -> str:
    """The first of ``describe_validation_errors``: what a request's answer names."""
    return describe_validation_errors(err, whole)[0]
