"""IoT Hub queries from the real azure-iot-hub SDK against the emulator over TLS (127.52.1.1).

Twins get tags and desired properties through `update_twin`, reported properties from a real
device client; each test scopes its queries to its own device id prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import QuerySpecification, Twin, TwinProperties
from msrest.exceptions import HttpOperationError

from tests.emulator.e2e.harness import (
    TOASTERS,
    RunningEmulator,
    device_client,
    options,
    service_connection_strings,
)

pytestmark = pytest.mark.e2e

BIND = "127.52.1.1"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """One emulator for this module, its service API on 127.52.1.1:8443 (toasters)."""
    with RunningEmulator(options(tmp_path_factory.mktemp("query"), BIND)) as running:
        yield running


@pytest.fixture
def registry(emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> IoTHubRegistryManager:
    """A registry manager for the toasters hub, trusting the emulator's CA for this test only."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.emulator.ca_path))
    return IoTHubRegistryManager.from_connection_string(
        service_connection_strings(emulator)[TOASTERS]
    )


def add(
    registry: IoTHubRegistryManager,
    device_id: str,
    *,
    tags: dict[str, Any],
    desired: dict[str, Any] | None = None,
) -> str:
    """A device with these tags and desired properties; its primary key."""
    device = registry.create_device_with_sas(device_id, "", "", "enabled")
    registry.update_twin(
        device_id, Twin(tags=tags, properties=TwinProperties(desired=desired or {}))
    )
    key: str = device.authentication.symmetric_key.primary_key
    return key


def ids(registry: IoTHubRegistryManager, query: str) -> list[str]:
    """The device ids a `SELECT * ...` query answers, all pages followed."""
    result = registry.query_iot_hub(QuerySpecification(query=query))
    assert result.type == "twin"
    assert result.continuation_token is None
    return [twin.device_id for twin in result.items]


def raw(
    registry: IoTHubRegistryManager, query: str, page: int | None = None
) -> tuple[list[Any], dict[str, str]]:
    """One page of a projection or aggregate as JSON (query_iot_hub would cast it to Twins)."""
    response = registry.protocol.query.get_twins(
        QuerySpecification(query=query), None, None if page is None else str(page), raw=True
    ).response
    return response.json(), dict(response.headers)


def refusal(registry: IoTHubRegistryManager, query: str) -> tuple[int, str, str]:
    with pytest.raises(HttpOperationError) as caught:
        registry.query_iot_hub(QuerySpecification(query=query))
    response = caught.value.response
    return response.status_code, response.headers["iothub-errorcode"], response.json()["Message"]


def test_where_filters_on_tags_properties_status_and_connection(
    emulator: RunningEmulator, registry: IoTHubRegistryManager
) -> None:
    """Tags, desired and reported properties, status and connectionState filter what the SDK gets."""
    add(
        registry,
        "w-redmond",
        tags={"location": {"region": "US", "plant": "Redmond43"}},
        desired={"fan": "high"},
    )
    add(
        registry,
        "w-dublin",
        tags={"location": {"region": "EU", "plant": "Dublin2"}},
        desired={"fan": "low"},
    )
    key = add(
        registry, "w-austin", tags={"location": {"region": "US", "plant": "Austin1"}, "floor": 3}
    )
    registry.update_device_with_sas("w-dublin", "*", "", "", "disabled")
    client = device_client(emulator, TOASTERS, "w-austin", key)
    client.connect()
    try:
        client.patch_twin_reported_properties(
            {"telemetryConfig": {"sendFrequencyInSecs": 300}, "firmware": "1.2.0"}
        )
        scope = "STARTSWITH(deviceId, 'w-')"
        assert ids(
            registry, f"SELECT * FROM devices WHERE {scope} AND tags.location.region = 'US'"
        ) == ["w-austin", "w-redmond"]
        assert ids(
            registry,
            f"SELECT * FROM devices WHERE {scope} AND tags.location.region = 'US' "
            "AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
        ) == ["w-austin"]
        assert ids(
            registry, f"select * from devices where {scope} and connectionState = 'Connected'"
        ) == ["w-austin"]
        assert ids(registry, f"SELECT * FROM devices WHERE {scope} AND status = 'disabled'") == [
            "w-dublin"
        ]
        assert ids(
            registry,
            f"SELECT * FROM devices WHERE {scope} AND (properties.desired.fan = 'low' OR tags.floor > 2)",
        ) == ["w-austin", "w-dublin"]
        assert ids(
            registry,
            f"SELECT * FROM devices WHERE {scope} AND NOT is_defined(properties.reported.firmware)",
        ) == [
            "w-dublin",
            "w-redmond",
        ]
        assert ids(
            registry,
            f"SELECT * FROM devices WHERE {scope} AND tags.location.plant IN ['Dublin2', 'Austin1']",
        ) == [
            "w-austin",
            "w-dublin",
        ]
        assert ids(
            registry,
            f"SELECT * FROM devices WHERE {scope} AND deviceId NIN ['w-austin', 'w-dublin']",
        ) == ["w-redmond"]
        assert (
            ids(registry, f"SELECT * FROM devices WHERE {scope} AND tags.floor = '3'") == []
        )  # types never mix
        assert ids(
            registry,
            f"SELECT * FROM devices WHERE {scope} AND properties.desired.$version >= 2 AND version >= 3",
        ) == [
            "w-dublin",
            "w-redmond",
        ]
        (twin,) = registry.query_iot_hub(
            QuerySpecification(query="SELECT * FROM devices WHERE deviceId = 'w-austin'")
        ).items
        assert twin.properties.reported["firmware"] == "1.2.0"
        assert twin.tags["floor"] == 3
        assert twin.connection_state == "Connected"
    finally:
        client.shutdown()


def test_projections_and_counts(registry: IoTHubRegistryManager) -> None:
    """Projections answer plain objects (item type raw); COUNT() with and without GROUP BY."""
    for index, region in enumerate(["US", "US", "EU", "US"]):
        add(registry, f"p-{index}", tags={"location": {"region": region}})
    add(registry, "p-none", tags={})
    scope = "WHERE STARTSWITH(deviceId, 'p-')"
    items, headers = raw(
        registry, f"SELECT deviceId, tags.location.region AS region FROM devices {scope}"
    )
    assert headers["x-ms-item-type"] == "raw"
    assert items == [
        {"deviceId": "p-0", "region": "US"},
        {"deviceId": "p-1", "region": "US"},
        {"deviceId": "p-2", "region": "EU"},
        {"deviceId": "p-3", "region": "US"},
        {"deviceId": "p-none"},
    ]
    result = registry.query_iot_hub(
        QuerySpecification(
            query=f"SELECT DeviceId FROM devices {scope} AND tags.location.region = 'EU'"
        )
    )
    assert result.type == "raw"
    assert [twin.device_id for twin in result.items] == ["p-2"]
    assert raw(registry, f"SELECT COUNT() AS n FROM devices {scope}")[0] == [{"n": 5}]
    groups, _ = raw(
        registry,
        f"SELECT tags.location.region AS region, COUNT() AS numberOfDevices FROM devices {scope} GROUP BY tags.location.region",
    )
    assert groups == [
        {"region": "US", "numberOfDevices": 3},
        {"region": "EU", "numberOfDevices": 1},
        {"numberOfDevices": 1},
    ]


def test_paging_across_pages_with_continuation_tokens_and_top(
    registry: IoTHubRegistryManager,
) -> None:
    """Seven twins in pages of two: four pages, tokens between them, none after the last; TOP 5
    stops after five twins; an aggregate pages too."""
    for index in range(7):
        add(registry, f"pg-{index}", tags={"batch": "pg"})
    query = QuerySpecification(query="SELECT * FROM devices WHERE tags.batch = 'pg'")
    seen: list[str] = []
    tokens: list[str | None] = []
    token = None
    while True:
        result = registry.query_iot_hub(query, token, 2)
        assert len(result.items) <= 2
        seen += [twin.device_id for twin in result.items]
        token = result.continuation_token
        tokens.append(token)
        if token is None:
            break
    assert seen == [f"pg-{index}" for index in range(7)]
    assert len(tokens) == 4
    assert all(tokens[:3])
    top = QuerySpecification(query="SELECT TOP 5 * FROM devices WHERE tags.batch = 'pg'")
    first = registry.query_iot_hub(top, None, 2)
    second = registry.query_iot_hub(top, first.continuation_token, 2)
    third = registry.query_iot_hub(top, second.continuation_token, 2)
    assert [twin.device_id for twin in first.items + second.items + third.items] == [
        f"pg-{index}" for index in range(5)
    ]
    assert third.continuation_token is None
    grouped = QuerySpecification(
        query="SELECT deviceId AS id, COUNT() AS n FROM devices WHERE tags.batch = 'pg' GROUP BY deviceId"
    )
    page = registry.query_iot_hub(grouped, None, 4)
    assert page.type == "raw"
    assert len(page.items) == 4
    assert registry.query_iot_hub(grouped, page.continuation_token, 4).continuation_token is None
    other = QuerySpecification(query="SELECT * FROM devices")
    with pytest.raises(HttpOperationError) as caught:
        registry.query_iot_hub(other, first.continuation_token, 2)
    assert caught.value.response.headers["iothub-errorcode"] == "ArgumentInvalid"


def test_modules_jobs_and_syntax_errors_are_400_naming_the_problem(
    registry: IoTHubRegistryManager,
) -> None:
    """FROM devices.modules / devices.jobs and malformed queries are 400 ArgumentInvalid with
    IoT Hub's error body naming the position and what was expected."""
    status, code, message = refusal(
        registry, "SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning'"
    )
    assert (status, code) == (400, "ArgumentInvalid")
    assert message.startswith(
        "ErrorCode:ArgumentInvalid;query: FROM devices.modules at line 1, column 15"
    )
    assert "not emulated" in message
    assert refusal(registry, "SELECT * FROM devices.jobs")[:2] == (400, "ArgumentInvalid")
    status, code, message = refusal(registry, "SELECT * FROM devices WHERE tags.location.region = ")
    assert (status, code) == (400, "ArgumentInvalid")
    assert "line 1, column 51: expected an expression, found the end of the query" in message
    assert (
        "is a message-routing function"
        in refusal(registry, "SELECT * FROM devices WHERE CONTAINS(deviceId, 'x')")[2]
    )
