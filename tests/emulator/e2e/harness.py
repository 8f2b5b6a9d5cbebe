"""Run the emulator in-process on a background asyncio loop, for tests that use the real SDKs.

The SDK's MQTT port is fixed at 8883, so every test module binds its own loopback address
(127.42.<n>.1). Service-side calls (`call`) run on the emulator's loop thread, where the hub and
DPS live, so tests never touch their state from the SDK's or pytest's threads.
"""

from __future__ import annotations

from pathlib import Path

from emulator.app import Options
from emulator.background import BackgroundEmulator

HUB_TOML = """
[dps]
id_scope = "0ne00000001"

[[hubs]]
name = "toasters.azure-devices.net"

[[hubs]]
name = "heatpumps.azure-devices.net"
"""


RunningEmulator = BackgroundEmulator
"""`with RunningEmulator(options) as emu:` starts the emulator and stops it on exit."""


def options(tmp_path: Path, bind: str, toml: str = HUB_TOML, **extra: object) -> Options:
    """Options for a run on `bind` with its state and config under `tmp_path`."""
    config = tmp_path / "emulator.toml"
    config.touch(mode=0o600)  # it holds enrollment keys
    config.write_text(toml)
    return Options(config_path=config, state_dir=tmp_path / "state", bind=bind, **extra)  # type: ignore[arg-type]
