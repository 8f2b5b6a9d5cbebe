"""Run the emulator in-process on a background asyncio loop, for tests that use the real SDKs.

The SDK's MQTT port is fixed at 8883, so every test module binds its own loopback address
(127.42.<n>.1). Service-side calls (`call`) run on the emulator's loop thread, where the hub and
DPS live, so tests never touch their state from the SDK's or pytest's threads. `emulator_toml` writes
the configuration file every such test starts from; `wait_for` polls for what happens meanwhile.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any

from azure.iot.device import IoTHubDeviceClient, ProvisioningDeviceClient

from emulator.__main__ import main as emulator_main
from emulator.app import Options
from emulator.hub.endpoint import Hub
from emulator.in_process import BackgroundEmulator

DPS_HOST = "global.azure-devices-provisioning.net"
ID_SCOPE = "0ne00000001"
TOASTERS, HEATPUMPS = "toasters.azure-devices.net", "heatpumps.azure-devices.net"

Entry = Mapping[str, object]


def emulator_toml(
    *,
    hubs: Sequence[str] = (TOASTERS, HEATPUMPS),
    groups: Sequence[Entry] = (),
    individuals: Sequence[Entry] = (),
    id_scope: str = ID_SCOPE,
    dps_host: str = DPS_HOST,
    events: Entry | None = None,
) -> str:
    """The emulator's configuration file: `[dps]`, a `[[hubs]]` table per hub name, an
    `[[enrollment_groups]]` / `[[individual_enrollments]]` table per entry, its fields in order,
    and `[events]` with `events` (e.g. `{"connection_events": "immediate"}`) when given.

    Values are strings, booleans, numbers, lists of them and nested mappings (inline tables, as
    `initial_twin`). Tests of the parser itself write their TOML literally instead.
    """
    tables = [f"[dps]\nid_scope = {_toml(id_scope)}\nhost = {_toml(dps_host)}\n"]
    tables += [f"[[hubs]]\nname = {_toml(name)}\n" for name in hubs]
    for header, entries in (("enrollment_groups", groups), ("individual_enrollments", individuals)):
        tables += [
            f"[[{header}]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in entry.items())
            for entry in entries
        ]
    if events is not None:
        tables.append("[events]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in events.items()))
    return "\n".join(tables)


def _toml(value: object) -> str:
    """One TOML value (JSON's string escapes are TOML's too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


HUB_TOML = emulator_toml()
"""Two hubs, no enrollments: what `options` writes unless told otherwise."""


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
    return register_then_release(client)


def register_then_release(client: Any) -> Any:
    """`client.register()`, and the client's connection closed whatever the outcome.

    azure-iot-device 2.14.0's `register()` shuts its pipeline down only after an assignment, and
    the client has no `shutdown()`: after a denial, an error or a timeout its MQTT/TLS socket stays
    open until the client is garbage collected, in whichever later test that happens (an unclosed
    socket there, a ResourceWarning the suite fails on). `simulator.device` releases a failed
    registration the same way."""
    try:
        result = client.register()
    except BaseException:
        release(client)
        raise
    if result is None or result.status != "assigned":
        release(client)
    return result


def release(client: Any) -> None:
    """Shut a provisioning client's pipeline down (its connection, its timers); best effort."""
    from azure.iot.device.common.evented_callback import EventedCallback  # noqa: PLC0415

    done = EventedCallback()
    try:
        client._pipeline.shutdown(callback=done)
        done.wait_for_completion(timeout=10)
    except Exception:  # noqa: S110 - the registration already failed; this only tidies up
        pass


def add_device(emulator: BackgroundEmulator, hub: str, device_id: str, key: str) -> Hub:
    """Create (or replace) a device identity in one of the emulator's hubs, `key` in both slots;
    the hub."""
    found = emulator.emulator.hub(hub)
    emulator.call(
        lambda: found.upsert_device(
            device_id, primary_key=key, secondary_key=key, twin=None, now=time.time()
        )
    )
    return found


def device_client(
    emulator: BackgroundEmulator, hub: str, device_id: str, key: str, **extra: Any
) -> Any:
    """A real IoTHubDeviceClient for a device of one of the emulator's hubs (not connected yet);
    `extra` are further SDK options (`product_info=<dtmi>` for IoT Plug and Play)."""
    return IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=key,
        hostname=hub,
        device_id=device_id,
        gateway_hostname=emulator.emulator.options.bind,
        server_verification_cert=emulator.ca_pem,
        **extra,
    )


def regenerate_group_key(emulator: BackgroundEmulator, group: str, slot: str) -> str:
    """Give the group a new primary or secondary key, as an operator would, and return it.

    Runs `python -m emulator regenerate-key GROUP --slot SLOT --show-key --json` in-process: the
    operator command, through the running emulator's admin API (found via its state directory).
    """
    state_dir = str(emulator.emulator.options.state_dir)
    answer = StringIO()  # kept out of pytest's captured output: it holds the new key
    with redirect_stdout(answer):
        code = emulator_main(
            [
                "regenerate-key",
                group,
                "--slot",
                slot,
                "--show-key",
                "--json",
                "--state-dir",
                state_dir,
            ]
        )
    assert code == 0, "regenerate-key failed"
    key: str = json.loads(answer.getvalue())["key"]
    return key


def service_connection_strings(emulator: BackgroundEmulator) -> dict[str, str]:
    """Each hub's service connection string (iothubowner), from the emulator's hubs.json."""
    loaded: dict[str, str] = json.loads(
        (emulator.emulator.options.state_dir / "hubs.json").read_text()
    )
    return loaded


def wait_for(condition: Callable[[], Any], timeout: float = 10) -> None:
    """Poll `condition` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
