"""The emulator (or one of its servers) in this process, on a background asyncio loop thread.

For the demo, tests and tools that drive the emulator with SDK clients in the same process. The
SDK clients run on the caller's loop and threads; everything that touches the emulator's state
(hubs, DPS) goes through `call`, which runs on the emulator's own loop thread. `LoopThread` is the
loop alone, for serving one component (a Functions host) from synchronous code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from emulator.app import Emulator, Options

T = TypeVar("T")
START_TIMEOUT = 30.0


class LoopThread:
    """An asyncio loop running in a daemon thread; `run(coroutine)` waits for its result."""

    def __init__(self, name: str = "emulator") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = START_TIMEOUT) -> T:
        """Run `coroutine` on the loop and return its result (or raise its exception)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` on the loop's thread and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as error:
                future.set_exception(error)

        self.loop.call_soon_threadsafe(run)
        return future.result(10)

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BackgroundEmulator:
    """`with BackgroundEmulator(options) as cloud:` starts the emulator and stops it on exit."""

    def __init__(self, options: Options) -> None:
        self.emulator = Emulator(options)
        self._thread = LoopThread()

    def __enter__(self) -> BackgroundEmulator:
        try:
            self._thread.run(self.emulator.start())
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
        self._thread.run(self.emulator.close())
        self._thread.close()

    @property
    def ca_pem(self) -> str:
        """The CA certificate as the SDK's `server_verification_cert` wants it (a PEM string)."""
        return self.emulator.ca_path.read_text()

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` on the emulator's loop thread and return its result."""
        return self._thread.call(function)
