"""Azurite's Table service as a child process: the local cloud's Table storage.

Tests, benchmarks and ``make demo`` start ``azurite-table --inMemoryPersistence`` from the
checkout's ``node_modules`` (``make install`` puts it there) on a free loopback port and stop it
afterwards; ``make up`` starts it on Azurite's own port 10002 (what ``UseDevelopmentStorage=true``
means) with its data kept in a directory (``location``).
Clients get an explicit connection string on 127.0.0.1 (not ``localhost``: with another port the
Tables SDK would take it for Cosmos DB, docs/protocol/functions-and-tables.md §4.1).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from devtools.checkout import CHECKOUT as REPO

if TYPE_CHECKING:
    import requests

AZURITE = REPO / "node_modules" / ".bin" / "azurite-table"
DEV_STORAGE_PORT = 10002  # UseDevelopmentStorage=true: http://127.0.0.1:10002/devstoreaccount1
# Azurite's published development account; not a secret.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT = 20.0


class AzuriteError(RuntimeError):
    """Azurite is not installed, or did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Azurite:
    """One ``azurite-table`` process on 127.0.0.1: in memory, or with its data in ``location``."""

    def __init__(self, port: int | None = None, *, location: Path | None = None) -> None:
        self.port = port or free_port()
        self.location = location
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"TableEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )

    def start(self) -> Azurite:
        """Start, and return once the port accepts connections."""
        if not AZURITE.exists():
            raise AzuriteError(f"{AZURITE.relative_to(REPO)} is missing: run `make install`")
        if self.location is not None:
            self.location.mkdir(parents=True, exist_ok=True)
            storage = ["--location", str(self.location)]
        else:
            storage = ["--inMemoryPersistence"]
        self._proc = subprocess.Popen(  # noqa: S603 - our own pinned Azurite, fixed arguments
            [
                str(AZURITE),
                *storage,
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
                raise AzuriteError(
                    f"azurite-table exited with {self._proc.returncode}: {err[-500:]}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AzuriteError(
            f"azurite-table did not listen on port {self.port} within {START_TIMEOUT} s"
        )

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers (a hung backend)."""
        if self._proc is not None:
            os.killpg(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        if self._proc is not None:
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

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class RequestCount:
    """Hooks for `store.tables.TableStore` (``session=``, ``on_send=``) that note the method of
    every request it sends: the SDK's (a requests session) and the hot path's (`store.wire`)
    alike. The tests and the webhook bench count a call's round trips with them."""

    sent: list[str] = field(default_factory=list)
    session: requests.Session = field(init=False)

    def __post_init__(self) -> None:
        import requests  # noqa: PLC0415 -- the SDK's own transport, loaded only when counting

        sent = self.sent
        self.session = requests.Session()
        self.session.hooks["response"].append(
            lambda response, *args, **kwargs: sent.append(response.request.method)
        )

    def on_send(self, method: str) -> None:
        self.sent.append(method)
