"""Settings, read once from ``AFTERCARE_*`` environment variables.

Secrets have no defaults: ``make run`` generates development values into the data folder,
and production sets its own. Lists of keys are written ``id:value,id:value``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

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

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
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
    smtp_timeout_seconds: float = 20.0
    mail_from: str = "Aftercare <aftercare@localhost>"

    audit_database_url: str = "sqlite+aiosqlite:///.data/audit.db"
    public_base_url: str = "http://127.0.0.1:8000"
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
    lookup_secret: str | None = Field(
        default=None, description="Keys the hash that finds a follow-up from a phone number"
    )

    codec_server_host: str = "127.0.0.1"
    codec_server_port: int = 8081
    codec_auth_tokens: KeyList = Field(
        default_factory=dict,
        description="holder:token pairs; a codec endpoint caller presents one as a bearer token",
    )
    codec_ui_origin: str | None = Field(
        default=None, description="The Temporal Web UI's origin, the one CORS lets in"
    )

    console_secure_cookies: bool | None = Field(
        default=None,
        description="Mark staff console cookies Secure; unset: when PUBLIC_BASE_URL is https",
    )

    log_level: str = "INFO"

    @field_validator(
        "api_keys", "encryption_keys", "booking_webhook_secrets", "codec_auth_tokens",
        mode="before",
    )
    @classmethod
    def _key_list(cls, value: object) -> dict[str, str]:
        return parse_key_list(value)

    @property
    def console_cookies_secure(self) -> bool:
        if self.console_secure_cookies is not None:
            return self.console_secure_cookies
        return self.public_base_url.startswith("https://")

    @property
    def twilio_is_real(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)


# `make run` keeps the development secrets it generated here, so a CLI started in another
# terminal of the same checkout speaks to the dev stack with the same keys. Environment
# variables still win; tests build Settings directly and never read it.
DEV_ENV_FILE = Path(".data/dev.env")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings(_env_file=DEV_ENV_FILE if DEV_ENV_FILE.exists() else None)
