"""Suite-wide test setup: the Azurite fixtures every test folder uses, and one SDK shutdown race."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterator

import pytest

from tests.azurite import Azurite

_default_excepthook = threading.excepthook


def _quiet_sdk_timers_after_exit(args: threading.ExceptHookArgs) -> None:
    """Silence one known azure-iot-device 2.14 shutdown race, and nothing else.

    The SDK's pipeline schedules work from ``threading.Timer`` callbacks onto a module-level
    executor. ``ProvisioningDeviceClient`` has no ``shutdown()``, so timers of finished clients can
    still fire while the interpreter exits, after ``concurrent.futures`` has shut its executors:
    "cannot schedule new futures after shutdown", printed once per timer. Any other thread
    exception still reaches the default hook (and, during a test, pytest's own).
    """
    frames = traceback.extract_tb(args.exc_traceback)
    if (
        args.exc_type is RuntimeError
        and "cannot schedule new futures after shutdown" in str(args.exc_value)
        and any("azure/iot/device/common/pipeline" in frame.filename for frame in frames)
    ):
        return
    _default_excepthook(args)


threading.excepthook = _quiet_sdk_timers_after_exit


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """An Azurite table service on a free loopback port for the whole session.

    Tests share it, each under its own table prefix (`tests.azurite.fresh_prefix`); a test that
    pauses or stops Azurite takes `own_azurite` instead.
    """
    server = Azurite().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_azurite() -> Iterator[Azurite]:
    """An Azurite of this test's own, which it may pause, stop and start again (same port)."""
    server = Azurite().start()
    try:
        yield server
    finally:
        server.stop()
