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
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from aftercare.logs import configure_logging
from aftercare.policies import PolicyBook, PolicyError
from aftercare.policy_check import policy_file_problems
from aftercare.process import exit_without_finalizing
from aftercare.settings import get_settings
from aftercare.simulation import SimulationError, Story, simulate, simulation_policy
from workflows.models import RiskLevel

EXIT_PROBLEMS = 2


def check(path: Path) -> int:
    problems = policy_file_problems(path)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return EXIT_PROBLEMS
    print(f"{path}: no problems")
    return 0


def departure_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset: write it as e.g. 2026-11-21T01:50:00-05:00")
    return moment


def run_simulation(args: argparse.Namespace) -> int:
    configure_logging("WARNING")
    policy_file = args.policy or get_settings().policy_file
    try:
        policy = simulation_policy(PolicyBook.load(policy_file), args.clinic)
        simulated = asyncio.run(simulate(policy, args.risk, Story(args.story),
                                         args.departed_at or datetime.now(UTC)))
    except (PolicyError, SimulationError) as err:
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_PROBLEMS
    print("\n".join(simulated.lines()))
    return 0


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments are one line naming the problem, and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_PROBLEMS)


def parser() -> argparse.ArgumentParser:
    root = OneLineParser(prog="aftercare-policy", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("check", help="find what a policy file allows that it "
                                                 "should not")
    checking.add_argument("file", type=Path)
    simulating = commands.add_parser(
        "simulate", help="run a follow-up through a story on a private server and print the "
                         "timeline the client and staff would live")
    simulating.add_argument("--clinic", required=True)
    simulating.add_argument("--risk", required=True, choices=[r.value for r in RiskLevel])
    simulating.add_argument("--story", required=True, choices=[s.value for s in Story])
    simulating.add_argument("--departed-at", type=departure_time,
                            help="when the client left, ISO 8601 with its UTC offset "
                                 "(default: now)")
    simulating.add_argument("--policy", type=Path,
                            help="the policy file (default: AFTERCARE_POLICY_FILE)")
    return root


def main(argv: list[str] | None = None) -> int | None:
    args = parser().parse_args(argv)
    if args.command == "check":
        return check(args.file)
    # The Temporal SDK can abort at interpreter exit (sdk-python #300): end without it.
    exit_without_finalizing(run_simulation(args))


if __name__ == "__main__":
    raise SystemExit(main())
