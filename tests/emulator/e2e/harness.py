"""Run the emulator in-process on a background asyncio loop, for tests that use the real SDKs.

The SDK's MQTT port is fixed at 8883, so every test module binds its own loopback address
(127.42.<n>.1). Service-side calls (`call`) run on the emulator's loop thread, where the hub and
DPS live, so tests never touch their state from the SDK's or pytest's threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from emulator.app import Emulator, Options

T = TypeVar("T")

HUB_TOML = """
[dps]
id_scope = "0ne00000001"

[[hubs]]
name = "toasters.azure-devices.net"

[[hubs]]
name = "heatpumps.azure-devices.net"
"""


class RunningEmulator:
    """`with RunningEmulator(options) as emu:` starts the emulator and stops it on exit."""

    def __init__(self, options: Options) -> None:
        self.emulator = Emulator(options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="emulator", daemon=True)

    def __enter__(self) -> RunningEmulator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.emulator.start(), self._loop).result(30)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self.emulator.close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def ca_pem(self) -> str:
        """The CA certificate as the SDK's `server_verification_cert` wants it (a PEM string)."""
        return self.emulator.ca_path.read_text()

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` on the emulator's loop thread and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as error:
                future.set_exception(error)

        self._loop.call_soon_threadsafe(run)
        return future.result(10)


def options(tmp_path: Path, bind: str, toml: str = HUB_TOML, **extra: object) -> Options:
    """Options for a run on `bind` with its state and config under `tmp_path`."""
    config = tmp_path / "emulator.toml"
    config.touch(mode=0o600)  # it holds enrollment keys
    config.write_text(toml)
    return Options(config_path=config, state_dir=tmp_path / "state", bind=bind, **extra)  # type: ignore[arg-type]
