"""Workflow code must give the same commands on every replay: no clock but ``workflow.now()``,
no randomness but ``workflow.random()``, no I/O. The workflow modules run passed through the
sandbox (``workflows/sandbox.py``), so its runtime checks do not see their code: this reads
every workflow module and refuses what the sandbox would have refused, and a little more
(the sandbox never looked inside the modules the follow-up had always passed through)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import BaseModel

from workflows import models

WORKFLOWS = sorted((Path(__file__).parents[1] / "workflows").glob("*.py"))

# What workflow code may import: the standard library's pure parts, Temporal, the models'
# libraries and the other workflow modules. Anything else (os, time, random, uuid, socket,
# a database or provider client, the activities) does I/O or differs from run to run.
ALLOWED_IMPORTS = {
    "__future__", "asyncio", "collections", "dataclasses", "datetime", "enum", "hashlib",
    "ipaddress", "json", "re", "string", "typing", "unicodedata", "urllib.parse", "weakref",
    "zoneinfo", "temporalio", "pydantic", "phonenumbers", "workflows",
}
# Names workflow code may take from modules it may not import whole: a lock keeps the worker's
# task threads from racing on state runs share (policy.one_copy) and orders no command.
ALLOWED_NAMES = {"threading": {"Lock"}}
# Builtins whose answer depends on the process, the machine or the outside world.
FORBIDDEN_BUILTINS = {"open", "input", "eval", "exec", "hash", "id", "breakpoint"}
# datetime.now() and friends: workflow.now() is the follow-up's clock.
FORBIDDEN_CLOCKS = {"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"}


def problems(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and not (
                {alias.name for alias in node.names} <= ALLOWED_NAMES.get(node.module, set())):
            names = [node.module]
        found += [f"line {node.lineno}: imports {name}" for name in names
                  if not any(name == allowed or name.startswith(f"{allowed}.")
                             for allowed in ALLOWED_IMPORTS)]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in FORBIDDEN_BUILTINS:
            found.append(f"line {node.lineno}: calls {node.func.id}()")
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_CLOCKS \
                and isinstance(node.value, ast.Name) and node.value.id in {"datetime", "date"}:
            found.append(f"line {node.lineno}: reads the clock ({node.value.id}.{node.attr})")
    return found


@pytest.mark.parametrize("path", WORKFLOWS, ids=[path.stem for path in WORKFLOWS])
def test_workflow_module_reads_no_clock_randomness_or_outside_world(path):
    assert problems(path) == []


def test_the_check_refuses_what_the_sandbox_would_have(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("import os\nimport random\nfrom datetime import datetime\n"
                      "from threading import Lock, Thread\n"
                      "def step():\n    return datetime.now(), open('x'), hash('y')\n")
    assert sorted(problems(sneaky)) == [
        "line 1: imports os", "line 2: imports random", "line 4: imports threading",
        "line 6: calls hash()", "line 6: calls open()",
        "line 6: reads the clock (datetime.now)"]


def test_every_workflow_model_is_finished_at_import():
    """A model naming one defined after it is left unfinished, and pydantic finishes it on
    its first use: for a message, inside a workflow task, under the sandbox's importer."""
    unfinished = [name for name, model in vars(models).items()
                  if isinstance(model, type) and issubclass(model, BaseModel)
                  and model.__module__ == models.__name__ and not model.__pydantic_complete__]
    assert unfinished == []
