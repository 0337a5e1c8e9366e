"""Shared fixtures live in tests/fixtures/, one module per real part the suite runs."""

pytest_plugins = [
    "tests.fixtures.temporal",
    "tests.fixtures.sinks",
    "tests.fixtures.databases",
    "tests.fixtures.api",
    "tests.fixtures.followups",
    "tests.fixtures.console",
]
