"""IoT Plug and Play: the `model-id` a device announces at CONNECT becomes its twin's `modelId`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from emulator.endpoints import connack_of
from emulator.hub.endpoint import Hub, _announced_model
from emulator.persistence.document import DeviceState, device_to_json, parse_device
from emulator.service.views import twin_json
from sas import generate_sas_token
from tests.emulator.hub.test_endpoint import E2, HUB, NOW, WRONG_KEY, Client, new_hub

THERMOSTAT = "dtmi:com:example:Thermostat;1"
PY_SDK = f"{HUB}/dev-001/?api-version=2020-09-30&DeviceClientType=py&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1"
C_SDK = f"{HUB}/dev-001/?api-version=2020-09-30&DeviceClientType=c&model-id=dtmi%3acom%3aexample%3aThermostat%3b1"
PLAIN = f"{HUB}/dev-001/?api-version=2019-10-01&DeviceClientType=x"


def connect_as(hub: Hub, username: str, password: bytes | None = None) -> int:
    client = Client()
    answer = hub.connect(
        client_id="dev-001",
        username=username,
        password=E2["token"].encode() if password is None else password,
        send=client.send,
        close=client.close,
        now=NOW,
    )
    return connack_of(answer).code


def model(hub: Hub) -> str:
    twin = hub.twin("dev-001")
    assert twin is not None
    return twin.model_id


def test_a_twin_has_an_empty_model_id_until_the_device_announces_one() -> None:
    """Before any PnP CONNECT the service twin says `"modelId": ""`, as IoT Hub's twins do."""
    hub = new_hub()
    assert connect_as(hub, PLAIN) == 0
    view = hub.device_view("dev-001")
    assert view is not None
    assert twin_json(view)["modelId"] == ""


def test_the_python_and_c_sdk_usernames_announce_the_decoded_model() -> None:
    """`model-id` percent-encoded as the Python SDK (upper hex) or the C SDK (lower hex) sends it
    is stored decoded, and the service twin shows it."""
    for username in (PY_SDK, C_SDK):
        hub = new_hub()
        assert connect_as(hub, username) == 0
        assert model(hub) == THERMOSTAT
        view = hub.device_view("dev-001")
        assert view is not None
        assert twin_json(view)["modelId"] == THERMOSTAT


def test_the_model_id_stays_until_another_is_announced_and_journals_each_change() -> None:
    """A plain reconnect keeps the model; a new one replaces it; each change is a twin change."""
    hub = new_hub()
    changes: list[str] = []
    hub.on_change = lambda name, device_id: changes.append(device_id)
    assert connect_as(hub, PY_SDK) == 0
    assert connect_as(hub, PLAIN) == 0
    assert model(hub) == THERMOSTAT
    assert connect_as(hub, PY_SDK.replace("Thermostat%3B1", "Thermostat%3B2")) == 0
    assert model(hub) == "dtmi:com:example:Thermostat;2"
    assert changes == ["dev-001", "dev-001"]


def test_a_refused_connect_announces_nothing() -> None:
    """A CONNECT refused (wrong key) leaves the twin's model alone."""
    hub = new_hub()
    token = generate_sas_token(f"{HUB}/devices/dev-001", WRONG_KEY, int(NOW) + 3600)
    assert connect_as(hub, PY_SDK, token.encode()) == 5
    assert model(hub) == ""


def test_the_model_id_survives_a_twin_patch_and_persistence() -> None:
    """Service and device patches keep `modelId`; the state file round-trips it."""
    hub = new_hub()
    assert connect_as(hub, PY_SDK) == 0
    hub.update_desired("dev-001", {"target": 21}, now=NOW)
    identity, twin = hub.device("dev-001"), hub.twin("dev-001")
    assert identity is not None
    assert twin is not None
    assert twin.model_id == THERMOSTAT
    stored = device_to_json(DeviceState(identity, twin))
    restored = parse_device(stored, path="state.json", location="hubs[0]")
    assert restored.twin.model_id == THERMOSTAT
    del stored["twin"]["model_id"]  # a file written before modelId existed still loads
    assert parse_device(stored, path="state.json", location="hubs[0]").twin.model_id == ""


@given(st.text(max_size=200))
def test_any_username_yields_no_model_or_a_string(tail: str) -> None:
    """Whatever the username holds, reading its model id never fails."""
    found = _announced_model(f"{HUB}/dev-001/?{tail}")
    assert found is None or (isinstance(found, str) and found)
