"""docker-compose.yml is checked, not booted (no Docker engine in CI): it is valid against
the Compose Specification's schema, each service runs a module or script that exists here,
every AFTERCARE_* variable it sets is a real setting, and only the operators' ports are
published."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from aftercare.settings import Settings

ROOT = Path(__file__).parents[1]
SCHEMA = json.loads((Path(__file__).parent / "compose_spec" / "compose-spec.json").read_text())
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OUR_SERVICES = {name: service for name, service in SERVICES.items() if "build" in service}
ONE_SHOT_JOBS = {"temporal-schema", "temporal-namespace", "aftercare-setup"}
PUBLISHED = {"api": "8000", "codec-endpoint": "8081", "temporal-ui": "8080",
             "mailpit": "8025", "sms-outbox": "8030"}
ENV_EXAMPLE = dict(
    line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
    if line and not line.startswith("#"))


def setting_names() -> set[str]:
    return {f"AFTERCARE_{name.upper()}" for name in Settings.model_fields}


def test_compose_file_is_valid_against_the_compose_specification():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    errors = sorted(jsonschema.Draft7Validator(SCHEMA).iter_errors(COMPOSE), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_stack_has_the_production_parts():
    images = {name: service.get("image", "") for name, service in SERVICES.items()}
    assert images["postgresql"] == "postgres:16"
    assert re.fullmatch(r"temporalio/server:\d+\.\d+\.\d+", images["temporal"])
    assert images["temporal-schema"].startswith("temporalio/admin-tools:")
    assert not any("auto-setup" in image for image in images.values())
    assert {"worker", "api", "codec-endpoint", "aftercare-setup"} <= OUR_SERVICES.keys()
    assert "container_name" not in SERVICES["worker"], "--scale worker=3 needs no fixed name"
    assert "ports" not in SERVICES["worker"], "replicas cannot share a published port"
    ui = SERVICES["temporal-ui"]["environment"]
    assert ui["TEMPORAL_CODEC_ENDPOINT"].endswith(":8081")


@pytest.mark.parametrize("name", sorted(OUR_SERVICES))
def test_each_service_runs_a_module_or_script_of_this_repo(name):
    command = OUR_SERVICES[name]["command"]
    assert command[0] == "python", command
    if command[1] == "-m":
        module = ROOT.joinpath(*command[2].split("."))
        assert module.with_suffix(".py").is_file() or (module / "__main__.py").is_file(), command
    else:
        assert (ROOT / command[1]).is_file(), command


def test_files_mounted_from_the_repo_exist():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), f"{name}: {source}"


def test_every_aftercare_variable_it_sets_is_a_real_setting():
    known = setting_names()
    for name, service in SERVICES.items():
        for variable in service.get("environment", {}):
            if variable.startswith("AFTERCARE_"):
                assert variable in known, f"{name} sets {variable}, which no setting reads"
    for variable in ENV_EXAMPLE:
        if variable.startswith("AFTERCARE_"):
            assert variable in known, f".env.example sets {variable}, which no setting reads"


def test_every_required_variable_is_in_the_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required <= ENV_EXAMPLE.keys(), required - ENV_EXAMPLE.keys()


def test_only_the_operators_ports_are_published():
    published = {name: service["ports"] for name, service in SERVICES.items()
                 if "ports" in service}
    assert published.keys() == PUBLISHED.keys()
    for name, ports in published.items():
        assert ports == [f"${{PUBLISHED_IP:-127.0.0.1}}:{PUBLISHED[name]}:{PUBLISHED[name]}"]


def test_long_running_services_have_healthchecks_and_start_in_order():
    for name, service in SERVICES.items():
        if name not in ONE_SHOT_JOBS:
            assert "healthcheck" in service, name
    assert SERVICES["temporal"]["depends_on"]["temporal-schema"]["condition"] == (
        "service_completed_successfully")
    for name in ("worker", "api"):
        assert SERVICES[name]["depends_on"]["aftercare-setup"]["condition"] == (
            "service_completed_successfully")
