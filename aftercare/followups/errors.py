"""Why an operation on a follow-up did not happen: each caller (the API, the console, the
CLI) answers them in its own way."""

from __future__ import annotations


class InvalidInput(ValueError):
    """Bad input from a caller: the message names the field."""


class SessionConflict(ValueError):
    """A follow-up for this session exists and was started from a different event."""


class ActionRefused(ValueError):
    """A running follow-up refused a staff action (its validator's reason)."""


class FollowUpNotFound(LookupError):
    """No follow-up has this workflow id."""
