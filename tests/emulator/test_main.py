"""The CLI: argument parsing, and a real `python -m emulator` process started and stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.run import parse_args

REPO = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    """Only --config is required; bind, state dir and time scale have documented defaults."""
    options = parse_args(["--config", "e.toml"])
    assert (options.config_path, options.bind, options.state_dir) == (
        Path("e.toml"),
        "127.0.0.1",
        Path(".emulator"),
    )
    assert (options.host_functions, options.function_key, options.time_scale) == (False, None, 1.0)


def test_every_option_is_parsed() -> None:
    """Each flag lands in its Options field."""
    options = parse_args(
        [
            "--config",
            "c.toml",
            "--bind",
            "127.42.3.1",
            "--state-dir",
            "s",
            "--host-functions",
            "--function-key",
            "k",
            "--time-scale",
            "0.01",
        ]
    )
    assert options.bind == "127.42.3.1"
    assert options.state_dir == Path("s")
    assert options.host_functions
    assert options.function_key == "k"
    assert options.time_scale == 0.01


def test_https_port_chosen_by_the_user_must_be_had() -> None:
    """Without --https-port, 443 may be skipped when it needs privileges; a port given is
    required (the start fails without it); 0 picks a free one."""
    default = parse_args(["--config", "c.toml"])
    assert (default.https_port, default.https_port_required) == (443, False)
    chosen = parse_args(["--config", "c.toml", "--https-port", "8443"])
    assert (chosen.https_port, chosen.https_port_required) == (8443, True)
    assert parse_args(["--config", "c.toml", "--https-port", "0"]).https_port == 0


def test_https_port_out_of_range_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """A port that cannot exist is refused naming the flag."""
    with pytest.raises(SystemExit):
        parse_args(["--config", "c.toml", "--https-port", "70000"])
    assert "--https-port: expected a port number" in capsys.readouterr().err


def test_time_scale_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    """A zero or negative time scale is refused naming the flag."""
    with pytest.raises(SystemExit):
        parse_args(["--config", "c.toml", "--time-scale", "0"])
    assert "--time-scale: expected a number greater than 0" in capsys.readouterr().err


@pytest.mark.e2e
def test_cli_starts_writes_the_ca_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`python -m emulator` announces readiness, writes ca.pem and exits 0 on SIGTERM."""
    config = tmp_path / "e.toml"
    config.write_text('[[hubs]]\nname = "toasters.azure-devices.net"\n')
    state = tmp_path / "state"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "--config",
            str(config),
            "--bind",
            "127.42.3.1",
            "--state-dir",
            str(state),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "emulator ready on 127.42.3.1:8883" in line
        assert (state / "ca.pem").is_file()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_bad_config_exits_2(tmp_path: Path) -> None:
    """An invalid configuration is reported on stderr with exit status 2."""
    config = tmp_path / "e.toml"
    config.write_text("[[hubs]]\nname = 3\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator",
            "--config",
            str(config),
            "--bind",
            "127.42.3.2",
            "--state-dir",
            str(tmp_path / "s"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "hubs" in result.stderr


def test_help_lists_up_and_status_without_a_cloud_suggests_it(tmp_path: Path) -> None:
    """`--help` names `up`; `status` with nothing running says to start it with `make up`."""
    helped = subprocess.run(
        [sys.executable, "-m", "emulator", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "up" in helped.stdout.split("commands:", 1)[1]
    status = subprocess.run(
        [sys.executable, "-m", "emulator", "status", "--state-dir", str(tmp_path / "none")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 3
    assert "make up" in status.stderr
    assert "Traceback" not in status.stderr
