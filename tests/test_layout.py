"""The entry points (worker, CLI, auditor, dev stack) are shells over the library: nothing in
the library, the API, the activities or the workflows imports one, and the library does not
import the API, so each shell can change without the others noticing."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
ENTRY_POINTS = {"starter", "auditor", "worker", "devstack", "policy_cli"}


def imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


# Read once, when the module is collected: CPython 3.11's parser can trip over the recursion
# limit other tests leave changed ("AST constructor recursion depth mismatch").
IMPORTS = {path: list(imported_modules(path)) for package in
           ("aftercare", "api", "activities", "workflows")
           for path in sorted((ROOT / package).rglob("*.py"))}


def imports_from(package: str, forbidden: set[str]) -> list[str]:
    return [f"{path.relative_to(ROOT)} imports {name}"
            for path, names in IMPORTS.items() if path.is_relative_to(ROOT / package)
            for name in names if name.split(".")[0] in forbidden]


@pytest.mark.parametrize("package", ["aftercare", "api", "activities", "workflows"])
def test_no_library_api_or_workflow_module_imports_an_entry_point(package):
    assert imports_from(package, ENTRY_POINTS) == []


def test_the_library_does_not_import_the_api():
    assert imports_from("aftercare", {"api"}) == []
