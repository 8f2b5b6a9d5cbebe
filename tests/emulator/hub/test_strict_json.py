"""Device bodies the hub decodes strictly: deep nesting and non-standard numbers in a reported
patch or a direct method response are refused as data, never raised, and change nothing."""

from __future__ import annotations

import json

import pytest

from emulator.endpoints import Outbound
from emulator.hub.endpoint import Hub
from emulator.hub.messages import MethodResponse
from tests.emulator.hub.test_endpoint import NOW, Client, online

DEPTH = 10_000
REPORTED = "$iothub/twin/PATCH/properties/reported/?$rid={rid}"
METHODS = "$iothub/methods/POST/#"


def nested_objects(depth: int) -> bytes:
    """`{"a":{"a":...1...}}`, `depth` objects deep."""
    return b'{"a":' * depth + b"1" + b"}" * depth


def nested_arrays(depth: int) -> bytes:
    """An object whose value is `depth` arrays deep."""
    return b'{"a":' + b"[" * depth + b"1" + b"]" * depth + b"}"


# name -> (body, what the 400's message must say)
NOT_STANDARD = {
    "objects nested 10,000 deep": (
        nested_objects(DEPTH),
        "reported: expected at most 32 levels of nesting",
    ),
    "arrays nested 10,000 deep": (
        nested_arrays(DEPTH),
        "reported: expected at most 32 levels of nesting",
    ),
    "NaN": (b'{"a": NaN}', "reported.a: expected a finite JSON number, got NaN"),
    "Infinity": (b'{"a": Infinity}', "reported.a: expected a finite JSON number, got Infinity"),
    "-Infinity in an array": (
        b'{"a": {"b": [1, -Infinity]}}',
        "reported.a.b[1]: expected a finite JSON number, got -Infinity",
    ),
    "1e400": (b'{"a": 1e400}', "reported.a: expected a finite JSON number, got 1e400"),
}


def standard_json(payload: bytes) -> object:
    """`payload` parsed as standard JSON only (NaN and Infinity raise)."""

    def refuse(constant: str) -> object:
        raise ValueError(f"non-standard constant {constant}")

    return json.loads(payload, parse_constant=refuse)


def publish(hub: Hub, client: Client, topic: str, payload: bytes) -> bool:
    """The shell's call for one device PUBLISH; True when the hub accepts it (not refused)."""
    return hub.publish(client_id="dev-001", topic=topic, payload=payload, send=client.send, now=NOW)


@pytest.mark.parametrize(("body", "problem"), NOT_STANDARD.values(), ids=NOT_STANDARD.keys())
def test_a_non_standard_reported_patch_gets_400_and_changes_nothing(
    body: bytes, problem: str
) -> None:
    """A 400 twin response with a JSON message; the twin, the connection and later patches are
    unaffected."""
    hub, client = online(None, "$iothub/twin/res/#")
    before = hub.twin("dev-001")
    assert publish(hub, client, REPORTED.format(rid="bad"), body)
    [answer] = client.sent
    assert answer.topic == "$iothub/twin/res/400/?$rid=bad"
    assert standard_json(answer.payload) == {"message": problem}
    assert hub.twin("dev-001") == before
    assert hub.is_connected("dev-001")
    assert not client.closed

    assert publish(hub, client, REPORTED.format(rid="good"), b'{"a": 1}')
    assert client.sent[-1] == Outbound("$iothub/twin/res/204/?$rid=good&$version=2", b"")


@pytest.mark.parametrize(
    "body", [body for body, _ in NOT_STANDARD.values()], ids=NOT_STANDARD.keys()
)
def test_a_non_standard_method_response_is_a_failed_call(body: bytes) -> None:
    """The caller gets status 500 with no payload (not a value JSON cannot carry); the device
    stays connected and is sent nothing."""
    hub, client = online(None, METHODS)
    answers: list[MethodResponse] = []
    rid = hub.invoke_method("dev-001", "reboot", None, on_response=answers.append)
    sent = len(client.sent)
    assert publish(hub, client, f"$iothub/methods/res/200/?$rid={rid}", body)
    assert answers == [MethodResponse(500, None)]
    assert len(client.sent) == sent
    assert hub.is_connected("dev-001")
    assert not client.closed


def test_a_standard_method_response_still_reaches_the_caller() -> None:
    """The same path with a standard body passes the device's status and payload on."""
    hub, client = online(None, METHODS)
    answers: list[MethodResponse] = []
    rid = hub.invoke_method("dev-001", "reboot", None, on_response=answers.append)
    assert publish(hub, client, f"$iothub/methods/res/201/?$rid={rid}", b'{"a": [1.5, {"b": 2}]}')
    assert answers == [MethodResponse(201, {"a": [1.5, {"b": 2}]})]
