"""Start and stop `azurite-table` for tests: a free loopback port, in-memory persistence, an explicit connection string."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AZURITE = REPO / "node_modules" / ".bin" / "azurite-table"
# Azurite's published development account; not a secret.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Azurite:
    """One `azurite-table --inMemoryPersistence` process on 127.0.0.1."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        """Explicit connection string (127.0.0.1, not localhost: see functions-and-tables.md §4.1)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"TableEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )

    def start(self) -> Azurite:
        """Start and wait until the port accepts connections."""
        if not AZURITE.exists():
            pytest.fail(
                f"{AZURITE.relative_to(REPO)} is missing: run `make install`", pytrace=False
            )
        self._proc = subprocess.Popen(
            [
                str(AZURITE),
                "--inMemoryPersistence",
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(self.port),
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--silent",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                pytest.fail(
                    f"azurite-table exited with {self._proc.returncode}: {err[-500:]}",
                    pytrace=False,
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(
            f"azurite-table did not listen on port {self.port} within {START_TIMEOUT} s",
            pytrace=False,
        )

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers (a hung backend)."""
        assert self._proc is not None
        os.killpg(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        assert self._proc is not None
        os.killpg(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Terminate the process group and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()
