"""The policy file: a ``default`` and per-clinic entries laid over it.

A clinic's entry only says what differs from the default; mappings merge key by key,
anything else (lists, durations, text) replaces the default's value. Every entry is
validated in full when the file loads: a mistake in any clinic stops the worker or the API
at start-up, one line per problem naming the clinic and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aftercare.validation import describe_validation_errors
from workflows.policy import ClinicPolicy


class PolicyError(ValueError):
    """The policy file is missing, unreadable or invalid; each line of the message names
    where."""


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _at(problem: str) -> str:
    """``key: message`` → ``.key: message``; a model-level ``: message`` stays as it is."""
    return problem if problem.startswith(":") else f".{problem}"


class PolicyBook:
    def __init__(self, raw: dict[str, Any], source: str = "policy file") -> None:
        if not isinstance(raw, dict) or not isinstance(raw.get("default"), dict):
            raise PolicyError(f"{source}: needs a 'default' policy at the top level")
        self._raw = raw
        self._source = source
        self._policies: dict[str, ClinicPolicy] = {}
        problems: list[str] = []
        for name in raw:
            try:
                self._policies[name] = self._build(name)
            except ValidationError as err:
                problems += [f"{source}: {name}{_at(line)}"
                             for line in describe_validation_errors(err, whole="")]
                continue
            webhook_problem = self._policies[name].reschedule.webhook_url_problem()
            if webhook_problem is not None:
                problems.append(f"{source}: {name}.reschedule.webhook_url: {webhook_problem}")
        if problems:
            raise PolicyError("\n".join(problems))

    @classmethod
    def load(cls, path: Path) -> PolicyBook:
        try:
            raw = yaml.safe_load(path.read_text())
        except OSError as err:
            raise PolicyError(f"cannot read policy file {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise PolicyError(f"policy file {path} is not valid YAML: {err}") from None
        return cls(raw, source=str(path))

    def _build(self, name: str) -> ClinicPolicy:
        entry = self._raw[name] or {}
        merged = entry if name == "default" else _merge(self._raw["default"], entry)
        return ClinicPolicy.model_validate({"clinic_id": name, **merged})

    def for_clinic(self, clinic_id: str) -> ClinicPolicy:
        """The clinic's own policy, or the default one under the clinic's id."""
        policy = self._policies.get(clinic_id)
        if policy is None:
            policy = self._policies["default"].model_copy(update={"clinic_id": clinic_id})
        return policy

    @property
    def source(self) -> str:
        return self._source

    @property
    def clinics(self) -> list[str]:
        return [name for name in self._policies if name != "default"]
