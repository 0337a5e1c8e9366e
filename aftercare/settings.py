"""Settings, read once from ``AFTERCARE_*`` environment variables.

Secrets have no defaults: ``make run`` generates development values into the data folder,
and production sets its own. Lists of keys are written ``id:value,id:value``.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The dev SMS outbox stands in for Twilio when no credentials are set; these are the
# credentials the twilio client presents to it (they open nothing real).
DEV_TWILIO_ACCOUNT_SID = "AC" + "0" * 32
DEV_TWILIO_AUTH_TOKEN = "dev-outbox-token"
DEV_TWILIO_FROM_NUMBER = "+15005550006"


def parse_key_list(value: object) -> dict[str, str]:
    """``"a:1,b:2"`` → ``{"a": "1", "b": "2"}``, keeping order (the first is the newest)."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if value is None or value == "":
        return {}
    pairs: dict[str, str] = {}
    for item in str(value).split(","):
        key, sep, secret = item.strip().partition(":")
        if not sep or not key or not secret:
            raise ValueError("expected a comma-separated list of id:value pairs")
        pairs[key] = secret
    return pairs


KeyList = Annotated[dict[str, str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFTERCARE_", extra="ignore")

    temporal_address: str | None = Field(
        default=None, description="Wins over TEMPORAL_ADDRESS and the Temporal profile file"
    )
    temporal_namespace: str | None = Field(
        default=None, description="Wins over TEMPORAL_NAMESPACE and the Temporal profile file"
    )
    task_queue: str = "aftercare-followups"
    policy_file: Path = Path("policies.example.yaml")

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base_url: str | None = Field(
        default=None, description="A Twilio-compatible endpoint to use instead of Twilio's own"
    )
    twilio_status_callback: bool = True

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(
        default=20.0, description="For a whole SMTP conversation: with the ledger's write it "
        "must fit inside the send activity's 30 s start-to-close timeout",
    )
    mail_from: str = "Aftercare <aftercare@localhost>"

    audit_database_url: str = "sqlite+aiosqlite:///.data/audit.db"
    public_base_url: str | None = Field(
        default=None,
        description="The URL the world reaches the API at: email links and Twilio's "
        "signatures and status callbacks are computed against it",
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    api_keys: KeyList = Field(default_factory=dict, description="clinic_id:key pairs")
    encryption_keys: KeyList = Field(
        default_factory=dict, description="key_id:base64 AES-256 key pairs, newest first"
    )
    link_secret: str | None = Field(default=None, description="Signs one-click email links")
    link_ttl_hours: int = 72
    booking_webhook_secrets: KeyList = Field(
        default_factory=dict, description="clinic_id:secret pairs for the booking webhook HMAC"
    )
    audit_signing_keys: KeyList = Field(
        default_factory=dict,
        description="key_id:secret pairs, newest first, signing the audit chain's checkpoints",
    )
    lookup_secret: str | None = Field(
        default=None, description="Keys the hash that finds a follow-up from a phone number"
    )
    late_text_retention: timedelta = Field(
        default=timedelta(days=30),
        description="How long after a follow-up closed a text from its client still reaches "
        "the clinic, through a late follow-up (ISO 8601, e.g. P30D)",
    )

    metrics_token: str | None = Field(
        default=None, description="Bearer token Prometheus presents to read /metrics"
    )

    codec_server_host: str = "127.0.0.1"
    codec_server_port: int = 8081
    codec_auth_tokens: KeyList = Field(
        default_factory=dict,
        description="holder:token pairs; a codec endpoint caller presents one as a bearer token",
    )
    codec_accept_unencrypted: bool = Field(
        default=False,
        description="Let the codec pass unencrypted payloads through: only while migrating "
        "histories written before encryption",
    )
    codec_ui_origin: str | None = Field(
        default=None, description="The Temporal Web UI's origin, the one CORS lets in"
    )

    inbox_retry_seconds: float = Field(
        default=5.0, description="How often the API retries passing kept webhooks to Temporal"
    )
    webhook_spool_path: Path = Field(
        default=Path(".data/webhook-spool.db"),
        description="A SQLite file on the API's own disk that keeps Twilio's webhooks (sealed) "
        "while the audit database is away, so replays are still recognised",
    )
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int | None = Field(
        default=None, description="Serve the worker's Prometheus metrics on this port"
    )
    console_secure_cookies: bool | None = Field(
        default=None,
        description="Mark staff console cookies Secure; unset: when PUBLIC_BASE_URL is https",
    )

    log_level: str = "INFO"

    test_crash_after: Literal["provider_accepts", "audit_commit"] | None = Field(
        default=None,
        description="Fault tests only: the worker process exits the moment a provider "
        "accepts a message, before the delivery ledger records it, or the moment a batch "
        "of the trail is committed, before Temporal hears of it",
    )

    @field_validator(
        "api_keys", "encryption_keys", "booking_webhook_secrets", "codec_auth_tokens",
        "audit_signing_keys", mode="before",
    )
    @classmethod
    def _key_list(cls, value: object) -> dict[str, str]:
        return parse_key_list(value)

    @property
    def console_cookies_secure(self) -> bool:
        if self.console_secure_cookies is not None:
            return self.console_secure_cookies
        return (self.public_base_url or "").startswith("https://")

    @property
    def twilio_is_real(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    def require(self, *names: str) -> None:
        """Refuse to start without each named setting: one line naming the first missing one.

        A secret with a default (or a silent fallback) is a secret an attacker can guess;
        a process that starts without one fails at 2 am instead of at start-up.
        """
        for name in names:
            if not getattr(self, name):
                raise MissingSettingError(
                    f"AFTERCARE_{name.upper()} is not set: {REQUIRED_SETTINGS[name]}"
                )


class MissingSettingError(ValueError):
    """A setting the process needs has no value; the message names it."""


REQUIRED_SETTINGS = {
    "twilio_auth_token": "the Twilio auth token that signs inbound webhooks (the dev stack "
    "sets its own)",
    "api_keys": "clinic_id:key pairs the HTTP API accepts",
    "encryption_keys": "key_id:base64 AES-256 keys that encrypt Temporal payloads",
    "link_secret": "the secret that signs one-click email links",
    "audit_signing_keys": "key_id:secret pairs signing the audit chain's checkpoints (kept "
    "out of the audit database)",
    "metrics_token": "the bearer token Prometheus presents to read /metrics",
    "public_base_url": "the URL the world reaches the API at (links, Twilio callbacks)",
    "lookup_secret": "the secret that keys the hash finding a follow-up from a sender's number",
}
"""Each secret a process may need, and what it is for (shown when it is missing)."""

API_REQUIRED_SETTINGS = (
    "twilio_auth_token", "api_keys", "encryption_keys", "link_secret", "lookup_secret",
    "metrics_token", "public_base_url",
)
WORKER_REQUIRED_SETTINGS = (
    "encryption_keys", "link_secret", "public_base_url", "audit_signing_keys",
)


# `make run` keeps the development secrets it generated here, so a CLI started in another
# terminal of the same checkout speaks to the dev stack with the same keys. Environment
# variables still win; tests build Settings directly and never read it.
DEV_ENV_FILE = Path(".data/dev.env")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings(_env_file=DEV_ENV_FILE if DEV_ENV_FILE.exists() else None)
