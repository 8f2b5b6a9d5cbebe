"""The emulator in this process, on a background asyncio loop thread.

For the demo, tests and tools that drive the emulator with SDK clients in the same process. The
SDK clients run on the caller's loop and threads; everything that touches the emulator's state
(hubs, DPS) goes through `call`, which runs on the emulator's own loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from emulator.app import Emulator, Options

T = TypeVar("T")
START_TIMEOUT = 30.0


class BackgroundEmulator:
    """`with BackgroundEmulator(options) as cloud:` starts the emulator and stops it on exit."""

    def __init__(self, options: Options) -> None:
        self.emulator = Emulator(options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="emulator", daemon=True)

    def __enter__(self) -> BackgroundEmulator:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.emulator.start(), self._loop).result(
                START_TIMEOUT
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self.emulator.close(), self._loop).result(START_TIMEOUT)
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
