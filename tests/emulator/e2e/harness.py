"""Run the emulator in-process on a background asyncio loop, for tests that use the real SDKs.

The SDK's MQTT port is fixed at 8883, so every test module binds its own loopback address
(127.42.<n>.1). Service-side calls (`call`) run on the emulator's loop thread, where the hub and
DPS live, so tests never touch their state from the SDK's or pytest's threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azure.iot.device import IoTHubDeviceClient, ProvisioningDeviceClient

from emulator.app import Options
from emulator.in_process import BackgroundEmulator

DPS_HOST = "global.azure-devices-provisioning.net"
ID_SCOPE = "0ne00000001"

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


def register(
    emulator: BackgroundEmulator, registration_id: str, key: str, payload: Any = None
) -> Any:
    """Register through the emulator's DPS with the real SDK; the SDK's RegistrationResult."""
    client = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=DPS_HOST,
        registration_id=registration_id,
        id_scope=ID_SCOPE,
        symmetric_key=key,
        gateway_hostname=emulator.emulator.options.bind,
        server_verification_cert=emulator.ca_pem,
    )
    if payload is not None:
        client.provisioning_payload = payload
    return client.register()


def device_client(emulator: BackgroundEmulator, hub: str, device_id: str, key: str) -> Any:
    """A real IoTHubDeviceClient for a device of one of the emulator's hubs (not connected yet)."""
    return IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=key,
        hostname=hub,
        device_id=device_id,
        gateway_hostname=emulator.emulator.options.bind,
        server_verification_cert=emulator.ca_pem,
    )


def wait_for(condition: Callable[[], Any], timeout: float = 10) -> None:
    """Poll `condition` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
