"""The whole flow: the real ProvisioningDeviceClient registers with the emulator's DPS, which
calls this repository's own `function_app` (tutorial policy) over HTTP through the emulator's
Functions host; the device then connects to the hub the policy chose and finds its initial twin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.iot.device.exceptions import ClientError

import function_app
from sas import derive_device_key
from store.memory import MemoryStore
from store.runtime import Runtime
from tests.emulator.e2e.harness import (
    RunningEmulator,
    device_client,
    emulator_toml,
    options,
    register,
)

pytestmark = pytest.mark.e2e

BIND = "127.42.4.1"
GROUP_KEY = (
    "oiK77Oy7rBw8YB6IS6ukRChAw+Yq6GC61RMrPLSTiOOtdI+XDu0LmLuNm11p+qv2I+adqGUdZHm46zXAQdZoOA=="
)
SECONDARY = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
FUNCTION_KEY = "e2e-function-key"
TOASTERS = "contoso-toasters-hub.azure-devices.net"
HEATPUMPS = "contoso-heatpumps-hub.azure-devices.net"

CONFIG = emulator_toml(
    hubs=[TOASTERS, HEATPUMPS],
    groups=[
        {
            "id": "contoso-custom",
            "primary_key": GROUP_KEY,
            "secondary_key": SECONDARY,
            "allocation": "custom",
            "webhook_url": f"http://{BIND}:7071/api/allocate?code={FUNCTION_KEY}",
            "hubs": [TOASTERS, HEATPUMPS],
        }
    ],
)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """The emulator hosting function_app (tutorial policy, in-memory store) on BIND:7071."""
    run_options = options(
        tmp_path_factory.mktemp("own"),
        BIND,
        CONFIG,
        host_functions=True,
        function_key=FUNCTION_KEY,
        functions_bind=BIND,
    )
    with (
        function_app.configured(
            settings={"ALLOCATION_POLICY_FILE": "examples/tutorial-policy.toml"},
            runtime=Runtime(store=MemoryStore(), hubs=lambda hub: None),
        ),
        RunningEmulator(run_options) as running,
    ):
        yield running


def register_device(emulator: RunningEmulator, registration_id: str) -> Any:
    return register(emulator, registration_id, derive_device_key(GROUP_KEY, registration_id))


@pytest.mark.parametrize(
    ("registration_id", "hub", "desired", "tags"),
    [
        (
            "breakroom499-contoso-tstrsd-007",
            TOASTERS,
            {"state": "ready", "darknessSetting": "medium"},
            {"deviceType": "toaster"},
        ),
        (
            "mainbuilding167-contoso-hpsd-088",
            HEATPUMPS,
            {"state": "on", "temperatureSetting": "65"},
            {"deviceType": "heatpump"},
        ),
    ],
)
def test_device_lands_on_the_policy_hub_with_its_initial_twin(
    emulator: RunningEmulator,
    registration_id: str,
    hub: str,
    desired: dict[str, str],
    tags: dict[str, str],
) -> None:
    """The tutorial's toaster and heat pump reach their hubs with the twin the policy set."""
    state = register_device(emulator, registration_id).registration_state
    assert (state.assigned_hub, state.device_id) == (hub, registration_id)
    client = device_client(
        emulator, state.assigned_hub, state.device_id, derive_device_key(GROUP_KEY, registration_id)
    )
    client.connect()
    try:
        twin = client.get_twin()
    finally:
        client.shutdown()
    assert {k: twin["desired"][k] for k in desired} == desired
    hub_twin = emulator.call(lambda: emulator.emulator.hub(hub).twin(registration_id))
    assert hub_twin is not None
    assert dict(hub_twin.tags) == tags


def test_unrecognised_device_is_denied(emulator: RunningEmulator) -> None:
    """The policy refuses an unknown registration id: the webhook's 400 fails the registration."""
    with pytest.raises(ClientError) as raised:
        register_device(emulator, "stranger-001")
    assert "failed registration status" in str(raised.value.__cause__)
    for hub in (TOASTERS, HEATPUMPS):
        assert "stranger-001" not in emulator.call(emulator.emulator.hub(hub).device_ids)
