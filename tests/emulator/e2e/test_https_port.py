"""Port 443 needs privileges on most machines: `python -m emulator run` as a process that may not
bind ports below 1024 (root without CAP_NET_BIND_SERVICE, or an ordinary user) says in one line
what is off and how to enable it, and serves the rest; a port the user chose and cannot have
stops the start with exit status 2 naming `--https-port`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BIND = "127.53.4.1"
REPO = Path(__file__).resolve().parents[3]
UNPRIVILEGED_START = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")


def unprivileged(command: list[str]) -> list[str]:
    """`command` without the right to bind ports below 1024."""
    if UNPRIVILEGED_START.exists() and int(UNPRIVILEGED_START.read_text()) <= 443:
        pytest.skip("this machine lets everyone bind port 443")
    if os.geteuid() != 0:
        return command  # an ordinary user has no such right to drop
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to drop CAP_NET_BIND_SERVICE")
    drop = "-net_bind_service"
    return [setpriv, "--bounding-set", drop, "--inh-caps", drop, *command]


def emulator_command(tmp_path: Path, *extra: str) -> list[str]:
    config = tmp_path / "e.toml"
    config.write_text('[[hubs]]\nname = "toasters.azure-devices.net"\n')
    return [
        sys.executable,
        "-m",
        "emulator",
        "run",
        "--config",
        str(config),
        "--bind",
        BIND,
        "--state-dir",
        str(tmp_path / "state"),
        "--service-port",
        "0",
        *extra,
    ]


def test_default_port_without_privileges_is_one_line_and_the_rest_runs(tmp_path: Path) -> None:
    """The notice names what is off, the option and the sysctl; MQTT on 8883 still serves and
    admin.json says no HTTPS port."""
    process = subprocess.Popen(
        unprivileged(emulator_command(tmp_path)),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while not any(line.startswith("note:") for line in lines):
            assert time.monotonic() < deadline, lines
            assert process.poll() is None, lines
            lines.append(process.stdout.readline())
        assert lines[0].startswith(f"emulator ready on {BIND}:8883")
        (note,) = [line.strip() for line in lines if line.startswith("note:")]
        assert "MQTT over WebSockets and the HTTPS device APIs are off" in note
        assert "--https-port" in note
        assert "net.ipv4.ip_unprivileged_port_start=443" in note
        admin = json.loads((tmp_path / "state" / "admin.json").read_text())
        assert (admin["mqtt_port"], admin["https_port"]) == (8883, None)
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_an_explicit_port_without_privileges_exits_2_naming_the_option(tmp_path: Path) -> None:
    """`--https-port 443` asked for the port: not having it is a problem, not a notice."""
    result = subprocess.run(
        unprivileged(emulator_command(tmp_path, "--https-port", "443")),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: --https-port: cannot listen on {BIND}:443")
