"""Structured JSON logs with personal data taken out before anything is written.

The redactor is the last line of defence: code should not log names, numbers or
addresses in the first place, but a stray exception message or a provider error must
not carry them into a log file either.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

import structlog

# E.164 (+15555550123) and North American forms ((555) 555-0123, 555.555.0123); written
# so ISO timestamps and ids don't match.
PHONE = re.compile(r"\+\d{7,15}\b|\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
NAME_KEYS = {"first_name", "name", "contact_name", "to", "phone", "email", "body", "text"}


def redact_text(text: str) -> str:
    return PHONE.sub("[phone]", EMAIL.sub("[email]", text))


def redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: "[redacted]" if k in NAME_KEYS else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def redact_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return redact(dict(event_dict))


class _RedactingFilter(logging.Filter):
    """Applies the same redaction to records from libraries using plain logging."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, dict):  # structlog's own records are redacted already
            record.msg = redact_text(record.getMessage())
            record.args = None
        return True


def configure_logging(level: str = "INFO") -> None:
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_personal_data,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.addFilter(_RedactingFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
