"""IoT Plug and Play with the real SDKs (127.55.1.1): the model id a device sends DPS is kept for
operators, the model id its hub connection announces (`product_info`) becomes the twin's
`modelId`, and azure-iot-hub's get_twin shows it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from azure.iot.hub import IoTHubRegistryManager

from sas import derive_device_key
from tests.emulator.e2e.harness import (
    TOASTERS,
    RunningEmulator,
    device_client,
    emulator_toml,
    options,
    register,
)

pytestmark = pytest.mark.e2e

BIND = "127.55.1.1"
GROUP_KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
THERMOSTAT = "dtmi:com:example:Thermostat;1"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """One static group on the toasters hub."""
    toml = emulator_toml(
        groups=[{"id": "pnp", "primary_key": GROUP_KEY, "allocation": "static", "hubs": [TOASTERS]}]
    )
    with RunningEmulator(options(tmp_path_factory.mktemp("pnp"), BIND, toml)) as running:
        yield running


@pytest.fixture
def registry(emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> IoTHubRegistryManager:
    """azure-iot-hub's registry manager for the toasters hub, trusting the emulator's CA."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.emulator.ca_path))
    strings = json.loads((emulator.emulator.options.state_dir / "hubs.json").read_text())
    return IoTHubRegistryManager.from_connection_string(strings[TOASTERS])


def model_id(registry: IoTHubRegistryManager, device_id: str) -> Any:
    """The twin's `modelId` as azure-iot-hub returns it (its Twin model keeps unknown fields)."""
    return registry.get_twin(device_id).additional_properties.get("modelId")


def connect_and_leave(emulator: RunningEmulator, device_id: str, key: str, **extra: Any) -> None:
    """Connect the real IoTHubDeviceClient once (with `extra` options), then shut it down."""
    client = device_client(emulator, TOASTERS, device_id, key, **extra)
    try:
        client.connect()
    finally:
        client.shutdown()


def test_the_dps_payload_model_is_kept_but_only_the_hub_connection_sets_the_twin(
    emulator: RunningEmulator, registry: IoTHubRegistryManager
) -> None:
    """DPS keeps the payload's modelId for operators; the twin has none until the device
    connects with product_info=<dtmi> (as on Azure: azure-iot-sdk-python#653)."""
    key = derive_device_key(GROUP_KEY, "thermo-1")
    result = register(emulator, "thermo-1", key, payload={"modelId": THERMOSTAT})
    assert result.registration_state.assigned_hub == TOASTERS
    dps = emulator.emulator.dps
    assert dps is not None
    attempt = emulator.call(lambda: dps.attempt("thermo-1"))
    assert attempt is not None
    assert attempt.model_id == THERMOSTAT
    assert model_id(registry, "thermo-1") == ""
    connect_and_leave(emulator, "thermo-1", key)
    assert model_id(registry, "thermo-1") == ""
    connect_and_leave(emulator, "thermo-1", key, product_info=THERMOSTAT)
    assert model_id(registry, "thermo-1") == THERMOSTAT


def test_the_model_id_is_kept_when_a_plain_connection_follows(
    emulator: RunningEmulator, registry: IoTHubRegistryManager
) -> None:
    """A later connection without product_info leaves the announced model in the twin."""
    key = derive_device_key(GROUP_KEY, "thermo-2")
    register(emulator, "thermo-2", key)
    connect_and_leave(emulator, "thermo-2", key, product_info=THERMOSTAT)
    connect_and_leave(emulator, "thermo-2", key)
    assert model_id(registry, "thermo-2") == THERMOSTAT
