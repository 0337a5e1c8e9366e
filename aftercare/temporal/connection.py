"""One way to reach Temporal, the SDK's own: ``temporalio.envconfig``.

The standard ``TEMPORAL_*`` variables and the profile file (``TEMPORAL_CONFIG_FILE``,
``TEMPORAL_PROFILE``) configure the worker, the API, the CLIs and the ``temporal`` CLI alike:
address, namespace, API key, TLS and mTLS. ``AFTERCARE_TEMPORAL_ADDRESS`` and
``AFTERCARE_TEMPORAL_NAMESPACE``, where set, win over them: they are Aftercare's alone.
Every connection uses the same data converter and codec, so replay reads what workers wrote.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import Runtime

from aftercare.settings import Settings
from aftercare.temporal.codec import data_converter

DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_ADDRESS_SETTING = "TEMPORAL_ADDRESS (unset: the default)"
DEFAULT_NAMESPACE = "default"
CONNECT_TIMEOUT_SECONDS = 10.0


class TemporalConfigError(ValueError):
    """The Temporal connection settings cannot be used; the message names the setting."""


class TemporalUnreachable(RuntimeError):
    """No connection to Temporal; the message names the address and the setting to check."""


@dataclass(frozen=True)
class TemporalTarget:
    """Where and how to connect, and which setting said so (to name when it fails)."""

    address: str
    namespace: str
    address_setting: str
    connect_options: Mapping[str, Any]

    @property
    def address_is_default(self) -> bool:
        """No setting named an address: the SDK's variables and profile are silent too."""
        return self.address_setting == DEFAULT_ADDRESS_SETTING

    @property
    def uses_tls(self) -> bool:
        return self.connect_options.get("tls", False) is not False


def temporal_target(settings: Settings, environ: Mapping[str, str] | None = None) -> TemporalTarget:
    """Resolve the connection: AFTERCARE_TEMPORAL_* first, then TEMPORAL_* and the profile."""
    environ = os.environ if environ is None else environ
    config_file = environ.get("TEMPORAL_CONFIG_FILE")
    if config_file and not Path(config_file).is_file():
        raise TemporalConfigError(f"TEMPORAL_CONFIG_FILE: no such file {config_file}")
    try:
        profile = ClientConfigProfile.load(
            profile=environ.get("TEMPORAL_PROFILE"), override_env_vars=dict(environ)
        )
    except Exception as err:  # the SDK's bridge raises its own ConfigError type
        raise TemporalConfigError(
            f"TEMPORAL_PROFILE / TEMPORAL_CONFIG_FILE: {first_line(err)}"
        ) from None
    try:
        options: dict[str, Any] = dict(profile.to_client_connect_config())
    except OSError as err:
        raise TemporalConfigError(
            f"TEMPORAL_TLS_*: cannot read {err.filename}: {err.strerror}"
        ) from None
    options.pop("target_host", None)
    options.pop("namespace", None)

    if settings.temporal_address:
        address, address_setting = settings.temporal_address, "AFTERCARE_TEMPORAL_ADDRESS"
    elif profile.address:
        address = profile.address
        address_setting = ("TEMPORAL_ADDRESS" if environ.get("TEMPORAL_ADDRESS")
                           else "the address in the TEMPORAL_CONFIG_FILE profile")
    else:
        address, address_setting = DEFAULT_ADDRESS, DEFAULT_ADDRESS_SETTING
    namespace = settings.temporal_namespace or profile.namespace or DEFAULT_NAMESPACE
    return TemporalTarget(address, namespace, address_setting, options)


async def connect(
    settings: Settings,
    runtime: Runtime | None = None,
    environ: Mapping[str, str] | None = None,
) -> Client:
    """A client for ``settings``; raises ``TemporalUnreachable`` with a one-line reason."""
    target = temporal_target(settings, environ)
    try:
        return await Client.connect(
            target.address,
            namespace=target.namespace,
            data_converter=data_converter(settings),
            runtime=runtime,
            **target.connect_options,
        )
    except RuntimeError as err:
        raise TemporalUnreachable(describe_unreachable(target, err)) from None


def describe_unreachable(target: TemporalTarget, err: BaseException) -> str:
    check = target.address_setting + (" and TEMPORAL_TLS_* / TEMPORAL_API_KEY"
                                      if target.uses_tls else "")
    return f"cannot reach Temporal at {target.address} (check {check}): {first_line(err)}"


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
