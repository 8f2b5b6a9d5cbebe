"""`python -m emulator`: the local cloud (`up`, `run`) and the operator commands.

    python -m emulator up [--state-dir DIR] [--config FILE] [--settings FILE] [--bind ADDR]
                          [--functions-port 7071] [--function-key KEY] [--console-port 0]
                          [--log-level LEVEL]
    python -m emulator [run] --config FILE [--bind 127.0.0.1] [--state-dir DIR] [--in-memory]
                       [--mqtt-port 8883] [--admin-port 0] [--service-port 8443]
                       [--host-functions] [--functions-port 7071] [--functions-settings FILE]
                       [--function-key KEY] [--time-scale 1.0] [--events-url URL]
                       [--console-port 0] [--no-console] [--log-level LEVEL]
    python -m emulator azurite            Azurite alone, as local.settings.json asks (`emulator.up`)
    python -m emulator <command> ...      operator commands (`emulator.operator.cli`), and
                                          `console [--open]`: the web console's URL

`up` is what `make up` runs: Azurite, DPS, the hubs and the Functions app with the checkout's
files (`emulator.local.toml`, `local.settings.json`, `.emulator/`), created from the examples on
first run; see `emulator.up`. `run` starts the emulator alone, every part chosen by its options.

Both run until interrupted (Ctrl-C / SIGTERM), then stop every component in reverse order. State:
with `--state-dir DIR` given to `run`, devices, twins, registrations and enrollment edits are kept
in DIR/state.json and a journal synced before each acknowledgement, across restarts; without it (or with `--in-memory`) they live in memory only,
while the CA, certificates and keys still go to the state directory (default `.emulator`), where
clients find `ca.pem` and the operator commands find the admin API. `up` always keeps state.

Exit status: 0 stopped by a signal; 2 a problem with the configuration, the settings, a port or
the hosted app, said in one line that names the option, file or setting.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from devtools.cli import quiet_on_closed_pipe
from emulator.operator.cli import COMMANDS

__all__ = ["main"]


@quiet_on_closed_pipe
def main(argv: Sequence[str] | None = None) -> int:
    """The CLI entry point; returns the process exit status.

    Only the command that runs is imported: an operator command (`status`) loads the operator
    client alone, never the servers or the Functions app.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] and arguments[0] in COMMANDS:
        from emulator.operator import cli  # noqa: PLC0415 -- the light path

        return cli.main(arguments)
    if arguments[:1] in (["up"], ["azurite"]):
        from emulator import up  # noqa: PLC0415 -- servers load only for the commands that run them

        return up.main(arguments[1:]) if arguments[0] == "up" else up.azurite_main(arguments[1:])
    from emulator import run  # noqa: PLC0415 -- as above

    return run.main(arguments[1:] if arguments[:1] == ["run"] else arguments)


if __name__ == "__main__":
    sys.exit(main())
