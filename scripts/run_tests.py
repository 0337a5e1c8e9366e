"""Runs the whole suite and turns pytest's outcome into an honest exit code.

The Temporal SDK sometimes aborts at interpreter exit (PyGILState_Release, sdk-python
issue 300), after every test has already run and been reported. That crash must not turn
a green run red, nor hide a red one: when pytest dies of a signal, the JUnit report it
wrote decides. No test run at all is a failure, never a pass.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPORT = Path(".test-results/junit.xml")
NO_TESTS_COLLECTED = 5


def report_counts() -> dict[str, int] | None:
    try:
        root = ET.parse(REPORT).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return {
        key: sum(int(suite.get(key, 0)) for suite in suites)
        for key in ("tests", "failures", "errors", "skipped")
    }


def main() -> int:
    REPORT.unlink(missing_ok=True)
    REPORT.parent.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "pytest", f"--junitxml={REPORT}", *sys.argv[1:]]
    code = subprocess.call(command)
    if code == NO_TESTS_COLLECTED:
        print("run_tests: no test ran; that is a failure", file=sys.stderr)
        return 1
    if code >= 0:
        return code
    counts = report_counts()
    if counts and counts["tests"] > 0 and counts["failures"] == counts["errors"] == 0:
        print(f"run_tests: pytest died of signal {-code} at interpreter exit after "
              f"{counts['tests']} tests passed (Temporal SDK exit crash); the run is green",
              file=sys.stderr)
        return 0
    print(f"run_tests: pytest died of signal {-code} and its report shows no clean pass",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
