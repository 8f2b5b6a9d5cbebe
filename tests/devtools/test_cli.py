"""A closed standard output ends a command line tool quietly, with the status of SIGPIPE."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from devtools.cli import EXIT_PIPE_CLOSED, quiet_on_closed_pipe

ROOT = Path(__file__).resolve().parents[2]
GROUP_PRIMARY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
GROUP_SECONDARY = "iZlcsgZYcqfw02/f1mcrIYTcbCmWZSgIgQ4ED9Kp/fE="


@contextlib.contextmanager
def closed_stdout() -> Iterator[TextIO]:
    """sys.stdout is a buffered pipe whose reader has gone away (`| head` after it exits).

    Set inside the test, not in a fixture: pytest's own capture replaces sys.stdout after setup.
    """
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = open(write_end, "w", encoding="utf-8")  # noqa: SIM115 -- closed below
    try:
        with contextlib.redirect_stdout(stream):
            yield stream
    finally:
        with contextlib.suppress(BrokenPipeError):
            stream.close()


def test_a_write_to_a_closed_pipe_ends_with_141() -> None:
    """A main whose print hits the closed pipe returns 141, and stdout then takes writes quietly."""

    @quiet_on_closed_pipe
    def main() -> int:
        for number in range(100_000):
            print(f"line {number}")
        return 0

    with closed_stdout() as stream:
        assert main() == EXIT_PIPE_CLOSED
        stream.write("the interpreter's last flush\n")
        stream.flush()  # the stream's fd now goes to /dev/null: no second BrokenPipeError


def test_output_still_buffered_when_main_returns_is_flushed_and_caught() -> None:
    """A short output that only fails at the final flush also ends with 141, not a traceback."""

    @quiet_on_closed_pipe
    def main() -> int:
        print("one line")
        return 0

    with closed_stdout():
        assert main() == EXIT_PIPE_CLOSED


def test_an_open_stdout_keeps_the_exit_code_and_the_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With a reader, the wrapped main's own status and output come through unchanged."""

    @quiet_on_closed_pipe
    def main(code: int, *, word: str) -> int:
        print(word)
        return code

    assert main(3, word="hello") == 3
    assert capsys.readouterr().out == "hello\n"
    assert main.__name__ == "main"


def test_other_errors_are_not_swallowed() -> None:
    """Only a closed pipe is quiet: any other exception propagates."""

    @quiet_on_closed_pipe
    def main() -> int:
        raise ValueError("a real bug")

    with pytest.raises(ValueError, match="a real bug"):
        main()


def test_simulator_piped_into_a_reader_that_stops_exits_141_without_traceback(
    tmp_path: Path,
) -> None:
    """`python -m simulator derive-key ... --show-keys | head -1`: status 141, nothing on stderr."""
    env = {
        **os.environ,
        "DPS_GROUP_PRIMARY_KEY": GROUP_PRIMARY,
        "DPS_GROUP_SECONDARY_KEY": GROUP_SECONDARY,
    }
    argv = [
        sys.executable,
        "-m",
        "simulator",
        "derive-key",
        "global.azure-devices-provisioning.net",
        "0ne00000001",
        "--count",
        "4000",  # about 400 kB of output: far more than a pipe holds
        "--prefix",
        "dev-",
        "--jsonl",
        str(tmp_path / "devices.jsonl"),
        "--show-keys",
    ]
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert first.startswith("wrote 4000 device(s) to ")
    assert process.returncode == EXIT_PIPE_CLOSED
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
