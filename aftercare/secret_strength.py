"""Whether a configured secret is one an attacker could guess: a placeholder copied from an
example file (``change-me-link-secret``), a public development value, or a short one.

An empty secret stops a service at start-up (``Settings.require``); so must one of these,
or a production API would start signing links with a value anyone can read in the repo.
"""

from __future__ import annotations

import re

from aftercare.settings import DEV_TWILIO_AUTH_TOKEN

MIN_SECRET_LENGTH = 16
"""Characters: ``make run`` and the README's recipe make 32 (``secrets.token_urlsafe``)."""

# Words long enough that a random value holds them by chance about never.
PLACEHOLDER = re.compile(
    r"change[-_ ]?me|replace[-_ ]?with|placeholder|example|your[-_ ]|<|>|\.\.\.",
    re.IGNORECASE,
)
PUBLIC_VALUES = frozenset({DEV_TWILIO_AUTH_TOKEN})
MAKE_ONE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"

def weakness(secret: str) -> str | None:
    """Why ``secret`` is guessable, or None. Never repeats the secret."""
    if PLACEHOLDER.search(secret):
        return "looks like a placeholder from an example file"
    if secret in PUBLIC_VALUES:
        return "is a development value published with the code"
    if len(set(secret)) == 1:
        return "is one character repeated"
    if len(secret) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def weak_secret_problems(settings: object, names: tuple[str, ...]) -> list[str]:
    """One line per guessable secret among the settings ``names``, naming the setting (and
    the id, in a list) and how to make a sound one; unset ones are left to ``require``."""
    problems = []
    for name in names:
        value = getattr(settings, name)
        pairs = value.items() if isinstance(value, dict) else [(None, value)]
        for key, secret in pairs:
            reason = weakness(secret) if secret else None
            if reason:
                which = f"the secret for {key!r} " if key is not None else ""
                problems.append(f"AFTERCARE_{name.upper()}: {which}{reason}; set a random "
                                f"value, e.g. {MAKE_ONE}")
    return problems
