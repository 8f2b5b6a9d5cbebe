"""Suite-wide test setup."""

from __future__ import annotations

import threading
import traceback

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
