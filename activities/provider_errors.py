"""A provider refusing our own account or configuration: the operator's to fix.

Bad Twilio credentials or an SMTP login the server rejects say nothing about whether a
person can be reached. Failing the send for good would mark clients unreachable and run an
escalation down on a typo; instead the activity fails retryably (the workflow's deadline
still bounds it), logs at error level and counts the refusal for operators' alerts.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

PROVIDER_MISCONFIGURED = "ProviderMisconfigured"
"""ApplicationError type of a send refused because of our own account or settings."""

CONFIGURATION_ERRORS_METRIC = "aftercare_provider_configuration_errors"


def provider_misconfigured(provider: str, detail: str, code: str) -> ApplicationError:
    """Log and count the refusal; the error to raise so the activity is retried."""
    activity.logger.error(
        "%s refused our account or settings (%s): fix the provider credentials or sender; "
        "the send is retried meanwhile", provider, detail,
    )
    activity.metric_meter().create_counter(
        CONFIGURATION_ERRORS_METRIC,
        "Sends a provider refused because of our own credentials or configuration",
    ).add(1, {"provider": provider, "code": code})
    return ApplicationError(f"{provider} refused our configuration: {detail}",
                            type=PROVIDER_MISCONFIGURED)
