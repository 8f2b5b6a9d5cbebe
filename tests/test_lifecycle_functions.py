"""The lifecycle/admin Blueprint: wiring, the Event Grid trigger with the Event Grid fixtures, and the
ADMIN HTTP routes called directly with func.HttpRequest against an in-memory store and hub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

import lifecycle_functions as lf
from store.base import StoreUnavailable
from store.memory import MemoryStore
from store.records import ConnectionState, DeviceStatus, Outcome, RegistrationRecord
from store.retire import MemoryHubRegistry
from store.runtime import Runtime, set_runtime
from tests.fixtures import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "eventgrid"
NOW = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
HUB = "egtesthub1.azure-devices.net"


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    """An in-memory store (with device LogicAppTestDevice provisioned) behind the cached runtime."""
    memory = MemoryStore()
    memory.record_provisioning(
        RegistrationRecord(
            time=NOW, registration_id="LogicAppTestDevice", device_id="LogicAppTestDevice",
            outcome=Outcome.ASSIGNED, hub=HUB,
        )
    )  # fmt: skip
    memory.append_registration(
        RegistrationRecord(
            time=NOW, registration_id="LogicAppTestDevice", outcome=Outcome.ASSIGNED, hub=HUB
        )
    )
    hub = MemoryHubRegistry({"LogicAppTestDevice": True})
    set_runtime(Runtime(store=memory, hubs=lambda h: hub if h == HUB else None, clock=lambda: NOW))
    yield memory
    set_runtime(None)


def grid_event(name: str) -> func.EventGridEvent:
    """A fixture as the Functions binding hands it over."""
    raw = json.loads((FIXTURES / name).read_text())[0]
    return func.EventGridEvent(
        id=raw["id"], data=raw["data"], topic=raw["topic"], subject=raw["subject"],
        event_type=raw["eventType"],
        event_time=datetime.fromisoformat(raw["eventTime"]), data_version=raw["dataVersion"],
    )  # fmt: skip


def http(
    method: str,
    route: str,
    params: dict[str, str] | None = None,
    body: bytes = b"",
    **route_params: str,
) -> func.HttpRequest:
    """An HttpRequest for an admin route."""
    return func.HttpRequest(
        method,
        f"http://localhost/api/{route}",
        params=params or {},
        route_params=route_params,
        body=body,
    )


def payload(resp: func.HttpResponse) -> Any:
    """The JSON body of a response."""
    assert resp.mimetype == "application/json"
    return json.loads(resp.get_body())


def test_wiring() -> None:
    """Registered on an app, the blueprint exposes five functions with the expected bindings."""
    app = func.FunctionApp()
    app.register_functions(lf.bp)
    found = {f.get_function_name(): json.loads(f.get_function_json()) for f in app.get_functions()}
    assert set(found) == {
        "device_lifecycle", "admin_get_device", "admin_list_devices", "admin_retire_device", "admin_reinstate_device",
    }  # fmt: skip
    assert found["device_lifecycle"]["bindings"][0]["type"] == "eventGridTrigger"
    routes = {}
    for name, spec in found.items():
        if name == "device_lifecycle":
            continue
        trigger = spec["bindings"][0]
        assert trigger["authLevel"] == "ADMIN"
        routes[name] = (trigger["route"], trigger["methods"])
    assert routes == {
        "admin_get_device": ("devices/{registrationId}", ["GET"]),
        "admin_list_devices": ("devices", ["GET"]),
        "admin_retire_device": ("devices/{registrationId}/retire", ["POST"]),
        "admin_reinstate_device": ("devices/{registrationId}/reinstate", ["POST"]),
    }


def test_lifecycle_fixtures_update_the_inventory(store: MemoryStore) -> None:
    """Created, connected, then a stale redelivered connected and the disconnected fixture."""
    lf.device_lifecycle(grid_event("device-created.json"))
    lf.device_lifecycle(grid_event("device-disconnected.json"))
    lf.device_lifecycle(grid_event("device-connected.json"))  # older sequence number: ignored
    device = store.get_device("LogicAppTestDevice")
    assert device is not None
    assert device.connection_state is ConnectionState.DISCONNECTED
    assert device.hub == HUB
    assert device.provisioning_count == 1


def test_unknown_and_malformed_events_are_ignored(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Telemetry is logged and ignored; a malformed event is logged and dropped; nothing changes."""
    before = store.get_device("LogicAppTestDevice")
    telemetry = func.EventGridEvent(
        id="t1", data={"body": {}}, topic="t", subject="devices/x",
        event_type="Microsoft.Devices.DeviceTelemetry", event_time=NOW, data_version="",
    )  # fmt: skip
    broken = func.EventGridEvent(
        id="b1", data={"hubName": "egtesthub1"}, topic="t", subject="devices/x",
        event_type="Microsoft.Devices.DeviceCreated", event_time=NOW, data_version="1",
    )  # fmt: skip
    with caplog.at_level("INFO"):
        lf.device_lifecycle(telemetry)
        lf.device_lifecycle(broken)
    assert store.get_device("LogicAppTestDevice") == before
    assert "not handled" in caplog.text
    assert "data.deviceId" in caplog.text


def test_lifecycle_store_failure_raises_for_redelivery(store: MemoryStore) -> None:
    """A store outage raises, so the host answers 500 and Event Grid redelivers."""
    store.fail_with = StoreUnavailable("down")
    with pytest.raises(StoreUnavailable):
        lf.device_lifecycle(grid_event("device-connected.json"))


def test_get_device_with_history(store: MemoryStore) -> None:
    """GET devices/{id} returns the row (under the canonical id) and the latest registrations."""
    resp = lf.admin_get_device(
        http("GET", "devices/LogicAppTestDevice", registrationId="LogicAppTestDevice")
    )
    assert resp.status_code == 200
    body = payload(resp)
    assert body["device"]["registration_id"] == "logicapptestdevice"
    assert body["device"]["device_id"] == "LogicAppTestDevice"
    assert body["device"]["provisioning_count"] == 1
    assert "counted" not in body["device"]
    assert [r["outcome"] for r in body["registrations"]] == ["assigned"]


@pytest.mark.parametrize(
    ("params", "route_id", "status", "field"),
    [
        ({}, "ghost", 404, "registrationId: no device 'ghost'"),
        ({"limit": "zero"}, "LogicAppTestDevice", 400, "limit: expected an integer"),
        ({"limit": "101"}, "LogicAppTestDevice", 400, "limit: expected an integer 1..100"),
        ({}, " ", 400, "registrationId: expected a non-empty"),
        ({}, "x" * 600, 400, "registration_id: too long"),
        ({}, "dev-\ud800", 400, "registration_id: expected valid Unicode text"),
    ],
)
def test_get_device_errors(
    store: MemoryStore, params: dict[str, str], route_id: str, status: int, field: str
) -> None:
    """Bad input is a 400 and a missing device a 404, each naming the field."""
    resp = lf.admin_get_device(http("GET", "devices/x", params=params, registrationId=route_id))
    assert resp.status_code == status
    assert field in payload(resp)["error"]


def test_list_devices_filters(store: MemoryStore) -> None:
    """GET devices filters by hub and status; a bad status is a 400 naming it."""
    resp = lf.admin_list_devices(http("GET", "devices", params={"hub": HUB, "status": "active"}))
    assert [d["registration_id"] for d in payload(resp)["devices"]] == ["logicapptestdevice"]
    resp = lf.admin_list_devices(http("GET", "devices", params={"status": "retired"}))
    assert payload(resp)["devices"] == []
    resp = lf.admin_list_devices(http("GET", "devices", params={"status": "gone"}))
    assert resp.status_code == 400
    assert "status: expected active or retired" in payload(resp)["error"]


def test_retire_and_reinstate(store: MemoryStore) -> None:
    """POST retire blocks the device and disables it in the hub; reinstate undoes both."""
    resp = lf.admin_retire_device(
        http(
            "POST",
            "devices/LogicAppTestDevice/retire",
            body=b'{"reason": "stolen"}',
            registrationId="LogicAppTestDevice",
        )
    )
    body = payload(resp)
    assert resp.status_code == 200
    assert body["hub_touched"] is True
    assert body["device"]["status"] == "retired"
    assert body["device"]["retired_reason"] == "stolen"
    assert body["device"]["retired_at"] == NOW.isoformat(timespec="microseconds")
    device = store.get_device("LogicAppTestDevice")
    assert device is not None
    assert device.status is DeviceStatus.RETIRED
    resp = lf.admin_reinstate_device(
        http("POST", "devices/LogicAppTestDevice/reinstate", registrationId="LogicAppTestDevice")
    )
    assert payload(resp)["device"]["status"] == "active"


def test_admin_routes_find_the_device_in_any_letter_case(store: MemoryStore) -> None:
    """Retiring LOGICAPPTESTDEVICE retires the row of LogicAppTestDevice and disables its identity;
    lifecycle events for the hub's device id keep landing on that row."""
    resp = lf.admin_retire_device(
        http("POST", "devices/x/retire", registrationId="LOGICAPPTESTDEVICE")
    )
    assert resp.status_code == 200
    assert payload(resp)["hub_touched"] is True
    device = store.get_device("LogicAppTestDevice")
    assert device is not None
    assert device.status is DeviceStatus.RETIRED
    lf.device_lifecycle(grid_event("device-disconnected.json"))
    (row,) = store.list_devices()
    assert row.connection_state is ConnectionState.DISCONNECTED


def test_retire_without_hub_credentials(store: MemoryStore) -> None:
    """A device on a hub with no credentials is retired and the answer says the hub was not touched."""
    store.record_provisioning(
        RegistrationRecord(
            time=NOW, registration_id="d2", outcome=Outcome.ASSIGNED, hub="other.azure-devices.net"
        )
    )
    body = payload(lf.admin_retire_device(http("POST", "devices/d2/retire", registrationId="d2")))
    assert body["hub_touched"] is False
    assert (
        body["message"]
        == "no credentials for hub other.azure-devices.net: provisioning blocked, hub not touched"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [(b"{not json", "body: expected a JSON object"), (b"[1]", "body: expected a JSON object"),
     (b'{"reason": 5}', "reason: expected a string"), (json.dumps({"reason": "x" * 300}).encode(), "reason"),
     (b"[" * 100_000, "body: expected a JSON object"), (b'{"reason": [[[[[]]]]]}', "at most 4 levels"),
     (b'{"reason": "\\ud800"}', "reason: expected valid Unicode text"), (b'{"reason": NaN}', "reason: expected a finite")],
)  # fmt: skip
def test_retire_bad_body(store: MemoryStore, body: bytes, field: str) -> None:
    """A malformed retire body (deeply nested, NaN, a lone surrogate: issue #14.10) is a 400 naming
    the field, never a 500, and nothing is retired."""
    resp = lf.admin_retire_device(
        http("POST", "devices/x/retire", body=body, registrationId="LogicAppTestDevice")
    )
    assert resp.status_code == 400
    assert field in payload(resp)["error"]
    device = store.get_device("LogicAppTestDevice")
    assert device is not None
    assert device.status is DeviceStatus.ACTIVE


def test_store_outage_is_a_json_503(store: MemoryStore) -> None:
    """Store unreachable: 503 with Retry-After and a JSON error, no traceback."""
    store.fail_with = StoreUnavailable("down")
    resp = lf.admin_get_device(http("GET", "devices/x", registrationId="LogicAppTestDevice"))
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "5"
    assert payload(resp) == {"error": "store unavailable, retry later"}


def test_unconfigured_store_is_a_json_500(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AzureWebJobsStorage: the first call answers a JSON 500 naming no secret."""
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    set_runtime(None)
    resp = lf.admin_list_devices(http("GET", "devices"))
    assert resp.status_code == 500
    assert payload(resp) == {"error": "store is not configured; see the function log"}


def test_event_and_route_values_cannot_plant_log_lines(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Device ids from events and registration ids from routes are logged escaped, one line each."""
    planted = "evil\nREPLAY-REGISTRATION {}\u2028more"
    event = func.EventGridEvent(
        id="e\n1", data={"hubName": "egtesthub1", "deviceId": planted,
                          "deviceConnectionStateEventInfo": {"sequenceNumber": "1"}},
        topic="t", subject="devices/x", event_type="Microsoft.Devices.DeviceConnected",
        event_time=NOW, data_version="1",
    )  # fmt: skip
    store.record_provisioning(
        RegistrationRecord(time=NOW, registration_id="x\u2028y", outcome=Outcome.ASSIGNED, hub=HUB)
    )
    with caplog.at_level("DEBUG"):
        lf.device_lifecycle(event)
        lf.admin_retire_device(http("POST", "devices/x/retire", registrationId="x\u2028y"))
    assert len(caplog.records) >= 2
    for record in caplog.records:
        assert len(record.getMessage().splitlines()) == 1, record.getMessage()
