"""`python -m simulator`: one argparse parser, a subcommand per tool, exit codes as integers.

`main(argv, env)` runs in-process for tests: it returns the exit code instead of exiting and
reads environment variables from the mapping it is given.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from devtools.cli import quiet_on_closed_pipe
from simulator import doctor, fleet, keys_cli, run_cli


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Device simulator and factory tools for the DPS custom-allocation webhook.",
    )
    commands = parser.add_subparsers(title="commands", metavar="<command>", required=True)
    keys_cli.register(commands)
    doctor.register(commands)
    run_cli.register_command(commands)
    fleet.register_command(commands)
    return parser


@quiet_on_closed_pipe
def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; return its exit code (2 for usage errors)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help, or argparse's own usage error (code 2)
        return exit_request.code if isinstance(exit_request.code, int) else 2
    command: keys_cli.Command = args.command
    return command(args, os.environ if env is None else env)


if __name__ == "__main__":
    sys.exit(main())
