"""What every command-line entry point shares: a closed standard output ends it quietly.

`python -m emulator registrations | head` closes the pipe after ten lines; Python then raises
`BrokenPipeError` on the next write, and again when it flushes at exit, printing a traceback. The
usual Unix behaviour is to stop without a word, with the status of a process ended by SIGPIPE.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import ParamSpec

__all__ = ["EXIT_PIPE_CLOSED", "quiet_on_closed_pipe"]

EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`

P = ParamSpec("P")


def quiet_on_closed_pipe(main: Callable[P, int]) -> Callable[P, int]:
    """Wrap a `main` so that a reader closing stdout ends it with status 141 and no traceback."""

    @functools.wraps(main)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            code = main(*args, **kwargs)
            sys.stdout.flush()
        except BrokenPipeError:
            # Point stdout at /dev/null so the interpreter's final flush does not raise again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return EXIT_PIPE_CLOSED
        return code

    return wrapper
