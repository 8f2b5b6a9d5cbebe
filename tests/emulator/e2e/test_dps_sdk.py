"""The real ProvisioningDeviceClient against the emulator's DPS over TLS on 127.42.2.1:8883, then
the real IoTHubDeviceClient on the hub DPS chose."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.iot.device.exceptions import ClientError, CredentialError

from sas import derive_device_key
from tests.emulator.e2e.dps_wire import tap, tapped_emulator
from tests.emulator.e2e.harness import (
    HEATPUMPS,
    TOASTERS,
    RunningEmulator,
    device_client,
    emulator_toml,
    register,
)
from tests.scripted_webhook import Reply, ScriptedWebhook

pytestmark = pytest.mark.e2e

BIND = "127.42.2.1"
GROUP_KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
SECONDARY = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
DEVICE_KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="
STATIC_SECONDARY = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="
CUSTOM_KEY = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
CUSTOM_SECONDARY = "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ="
RESET_KEY = "BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU="
NEVER_KEY = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="
UNUSED_SECONDARIES = (
    "BgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgY=",
    "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=",
)


def config(webhook_url: str) -> str:
    custom = {"allocation": "custom", "webhook_url": webhook_url, "hubs": [TOASTERS, HEATPUMPS]}
    solo = {"allocation": "static", "hubs": [TOASTERS]}
    return emulator_toml(
        hubs=[TOASTERS, HEATPUMPS],
        groups=[
            {
                "id": "static-group",
                "primary_key": GROUP_KEY,
                "secondary_key": STATIC_SECONDARY,
                "allocation": "static",
                "hubs": [HEATPUMPS],
                "initial_twin": {"tags": {"site": "lab"}, "desired": {"fw": "1.0"}},
            },
            {
                "id": "custom-group",
                "primary_key": CUSTOM_KEY,
                "secondary_key": CUSTOM_SECONDARY,
                **custom,
                "reprovision": "migrate",
            },
            {
                "id": "custom-reset",
                "primary_key": RESET_KEY,
                "secondary_key": UNUSED_SECONDARIES[0],
                **custom,
                "reprovision": "reset",
            },
            {
                "id": "custom-never",
                "primary_key": NEVER_KEY,
                "secondary_key": UNUSED_SECONDARIES[1],
                **custom,
                "reprovision": "never",
            },
        ],
        individuals=[
            {
                "registration_id": "solo-1",
                "primary_key": DEVICE_KEY,
                "secondary_key": SECONDARY,
                **solo,
            },
            {
                "registration_id": "solo-off",
                "primary_key": DEVICE_KEY,
                "secondary_key": SECONDARY,
                **solo,
                "enabled": False,
            },
        ],
    )


@pytest.fixture(scope="module")
def webhook() -> Iterator[ScriptedWebhook]:
    """The scripted webhook, over real HTTP."""
    with ScriptedWebhook(BIND, key="secret-key") as server:
        yield server


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, webhook: ScriptedWebhook
) -> Iterator[RunningEmulator]:
    """One emulator for this module, with a tiny time scale for webhook retries."""
    with tapped_emulator(tmp_path_factory.mktemp("dps"), BIND, config(webhook.url)) as running:
        yield running


def on_hub(
    emulator: RunningEmulator, hub: str, device_id: str, key: str, action: Callable[[Any], Any]
) -> Any:
    client = device_client(emulator, hub, device_id, key)
    client.connect()
    try:
        return action(client)
    finally:
        client.shutdown()


def test_group_registration_then_hub_connection_with_initial_twin(
    emulator: RunningEmulator,
) -> None:
    """A group device registers with its derived key, lands on the static hub, connects there
    with the same key and reads the enrollment's initial desired properties."""
    key = derive_device_key(GROUP_KEY, "dev-001")
    result = register(emulator, "dev-001", key)
    assert result.status == "assigned"
    state = result.registration_state
    assert (state.assigned_hub, state.device_id, state.sub_status) == (
        HEATPUMPS,
        "dev-001",
        "initialAssignment",
    )
    twin = on_hub(emulator, HEATPUMPS, "dev-001", key, lambda c: c.get_twin())
    assert twin["desired"]["fw"] == "1.0"
    hub_twin = emulator.call(lambda: emulator.emulator.hub(HEATPUMPS).twin("dev-001"))
    assert hub_twin is not None
    assert hub_twin.tags == {"site": "lab"}


def test_individual_registration(emulator: RunningEmulator) -> None:
    """An individual enrollment registers with its own key and can use its hub."""
    result = register(emulator, "solo-1", DEVICE_KEY)
    assert result.registration_state.assigned_hub == TOASTERS
    twin = on_hub(emulator, TOASTERS, "solo-1", DEVICE_KEY, lambda c: c.get_twin())
    assert twin["reported"] == {"$version": 1}


def test_wrong_key_raises_credential_error(emulator: RunningEmulator) -> None:
    """A token signed with a key DPS does not know gets CONNACK 5 -> CredentialError."""
    with pytest.raises(CredentialError):
        register(emulator, "solo-1", GROUP_KEY)


def test_disabled_enrollment(emulator: RunningEmulator) -> None:
    """A disabled individual enrollment ends in status `disabled`, which the SDK raises."""
    with pytest.raises(ClientError) as raised:
        register(emulator, "solo-off", DEVICE_KEY)
    assert "disabled" in str(raised.value.__cause__)


def test_custom_allocation_with_payload_both_ways(
    emulator: RunningEmulator, webhook: ScriptedWebhook
) -> None:
    """The webhook gets the device payload and a masked URL; its hub, twin and payload land."""
    webhook.by_registration["cust-1"] = [
        (
            200,
            {
                "iotHubHostName": TOASTERS,
                "initialTwin": {
                    "tags": {"tier": "gold"},
                    "properties": {"desired": {"mode": "eco"}},
                },
                "payload": {"hello": "device"},
            },
        )
    ]
    key = derive_device_key(CUSTOM_KEY, "cust-1")
    result = register(emulator, "cust-1", key, payload={"fw": "1.2.3"})
    state = result.registration_state
    assert (state.assigned_hub, state.sub_status) == (TOASTERS, "initialAssignment")
    assert json.loads(state.response_payload) == {"hello": "device"}
    [request] = webhook.requests_for("cust-1")
    assert request["deviceRuntimeContext"]["payload"] == {"fw": "1.2.3"}
    assert "secret-key" not in json.dumps(request)
    twin = on_hub(emulator, TOASTERS, "cust-1", key, lambda c: c.get_twin())
    assert twin["desired"]["mode"] == "eco"


@pytest.mark.parametrize(
    ("script", "error_code"),
    [
        ([(400, {"message": "denied"})], 400207),
        ([(401, None)], 400209),
        ([(200, {"iotHubHostName": ""})], 400208),
        ([(200, {"iotHubHostName": "elsewhere.azure-devices.net"})], None),
    ],
    ids=["deny", "unauthorized", "empty-hub", "hub-not-linked"],
)
def test_custom_allocation_failures(
    emulator: RunningEmulator, webhook: ScriptedWebhook, script: list[Reply], error_code: int | None
) -> None:
    """Deny, 401, an empty hub and a hub outside linkedHubs all fail the registration."""
    registration_id = f"fail-{len(webhook.requests)}"
    webhook.by_registration[registration_id] = script
    with pytest.raises(ClientError) as raised:
        register(emulator, registration_id, derive_device_key(CUSTOM_KEY, registration_id))
    assert "failed registration status" in str(raised.value.__cause__)
    body = tap(emulator).final_body(registration_id)
    assert body["status"] == "failed"
    state = body["registrationState"]
    assert state["errorCode"] == (error_code or state["errorCode"])
    if error_code == 400207:
        assert state["errorMessage"] == "Custom allocation failed with status code: 400"
    if error_code is None:
        hubs = emulator.emulator.hubs
        assert hubs is not None
        assert "elsewhere.azure-devices.net" not in emulator.call(hubs.hub_names)


def test_webhook_500_then_200_is_retried_to_assigned(
    emulator: RunningEmulator, webhook: ScriptedWebhook
) -> None:
    """5xx answers are retried on DPS's (time-scaled) schedule until the webhook succeeds."""
    webhook.by_registration["retry-1"] = [
        (500, None),
        (503, None),
        (200, {"iotHubHostName": HEATPUMPS}),
    ]
    result = register(emulator, "retry-1", derive_device_key(CUSTOM_KEY, "retry-1"))
    assert result.registration_state.assigned_hub == HEATPUMPS
    assert len(webhook.requests_for("retry-1")) == 3


def test_reprovision_migrate_moves_device_and_twin(
    emulator: RunningEmulator, webhook: ScriptedWebhook
) -> None:
    """Under migrate, a second registration to another hub moves the device and its twin."""
    key = derive_device_key(CUSTOM_KEY, "move-1")
    webhook.by_registration["move-1"] = [
        (200, {"iotHubHostName": TOASTERS}),
        (200, {"iotHubHostName": HEATPUMPS}),
    ]
    assert register(emulator, "move-1", key).registration_state.assigned_hub == TOASTERS
    on_hub(
        emulator,
        TOASTERS,
        "move-1",
        key,
        lambda c: c.patch_twin_reported_properties({"battery": 90}),
    )
    second = register(emulator, "move-1", key).registration_state
    assert (second.assigned_hub, second.sub_status) == (HEATPUMPS, "deviceDataMigrated")
    twin = on_hub(emulator, HEATPUMPS, "move-1", key, lambda c: c.get_twin())
    assert twin["reported"]["battery"] == 90
    assert emulator.call(lambda: emulator.emulator.hub(TOASTERS).twin("move-1")) is None


def test_reprovision_reset_restores_the_initial_twin(
    emulator: RunningEmulator, webhook: ScriptedWebhook
) -> None:
    """Under reset, re-registering on the same hub resets the twin to the webhook's initial twin
    (a factory reset); the substatus is reprovisionedToInitialAssignment, as the REST spec keeps
    deviceDataReset for a move to a different hub."""
    key = derive_device_key(RESET_KEY, "reset-1")
    answer = {
        "iotHubHostName": TOASTERS,
        "initialTwin": {"properties": {"desired": {"mode": "factory"}}},
    }
    webhook.by_registration["reset-1"] = [(200, answer)]
    assert register(emulator, "reset-1", key).registration_state.assigned_hub == TOASTERS
    on_hub(
        emulator,
        TOASTERS,
        "reset-1",
        key,
        lambda c: c.patch_twin_reported_properties({"battery": 90}),
    )
    second = register(emulator, "reset-1", key).registration_state
    assert (second.assigned_hub, second.sub_status) == (
        TOASTERS,
        "reprovisionedToInitialAssignment",
    )
    twin = on_hub(emulator, TOASTERS, "reset-1", key, lambda c: c.get_twin())
    assert "battery" not in twin["reported"]
    assert twin["desired"]["mode"] == "factory"


def test_reprovision_never_keeps_the_hub(
    emulator: RunningEmulator, webhook: ScriptedWebhook
) -> None:
    """Under never, the webhook still runs, offered only the current hub; when it names another
    hub the registration still succeeds (no 400207): the device and its twin stay where they are
    and the device gets the webhook's new payload."""
    key = derive_device_key(NEVER_KEY, "never-1")
    webhook.by_registration["never-1"] = [
        (200, {"iotHubHostName": TOASTERS}),
        (200, {"iotHubHostName": HEATPUMPS, "payload": {"firmware": "2.0"}}),
    ]
    assert register(emulator, "never-1", key).registration_state.assigned_hub == TOASTERS
    on_hub(
        emulator,
        TOASTERS,
        "never-1",
        key,
        lambda c: c.patch_twin_reported_properties({"battery": 50}),
    )
    second = register(emulator, "never-1", key).registration_state
    assert second.assigned_hub == TOASTERS
    assert second.sub_status == "reprovisionedToInitialAssignment"
    assert json.loads(second.response_payload) == {"firmware": "2.0"}
    assert emulator.call(lambda: emulator.emulator.hub(HEATPUMPS).device("never-1")) is None
    first_request, second_request = webhook.requests_for("never-1")
    assert sorted(first_request["linkedHubs"]) == sorted([TOASTERS, HEATPUMPS])
    assert second_request["linkedHubs"] == [TOASTERS]
    twin = on_hub(emulator, TOASTERS, "never-1", key, lambda c: c.get_twin())
    assert twin["reported"]["battery"] == 50
