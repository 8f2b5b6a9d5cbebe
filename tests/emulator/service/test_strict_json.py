"""Service API bodies decoded strictly: deep nesting or NaN/Infinity is a 400 in IoT Hub's error
form naming the problem, never a 500, and nothing is changed."""

from __future__ import annotations

import json

import pytest

from allocation.strict_json import MAX_DEPTH
from emulator.service.api import Request
from tests.emulator.service.test_api import HOST, HUB, SVC1, answer, api, error_code

DEPTH = 10_000
NESTING = f"expected at most {MAX_DEPTH} levels of nesting"


def raw(method: str, path: str, body: bytes) -> Request:
    """A request with an authorized SAS token and `body` exactly as given."""
    return Request(
        method=method,
        target=f"{path}?api-version=2021-04-12",
        headers={"host": HOST, "authorization": SVC1["token"]},
        body=body,
    )


# (method, path, body, what the message names)
NOT_STANDARD = {
    "device nested 10,000 deep": (
        "PUT",
        "/devices/d-1",
        b'{"tags":' * DEPTH + b"1" + b"}" * DEPTH,
        f"body: {NESTING}",
    ),
    "device arrays nested 10,000 deep": (
        "PUT",
        "/devices/d-1",
        b'{"x":' + b"[" * DEPTH + b"]" * DEPTH + b"}",
        f"body: {NESTING}",
    ),
    "device one level too deep": (
        "PUT",
        "/devices/d-1",
        b'{"tags":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1),
        f"{'.'.join(['tags'] * MAX_DEPTH)}: {NESTING}",
    ),
    "top-level array nested 10,000 deep": (
        "PUT",
        "/devices/d-1",
        b"[" * DEPTH + b"]" * DEPTH,
        f"body: {NESTING}",
    ),
    "device with NaN": (
        "PUT",
        "/devices/d-1",
        b'{"deviceId": "d-1", "x": NaN}',
        "x: expected a finite JSON number, got NaN",
    ),
    "twin patch with Infinity": (
        "PATCH",
        "/twins/d-0",
        b'{"properties": {"desired": {"t": Infinity}}}',
        "properties.desired.t: expected a finite JSON number, got Infinity",
    ),
    "twin patch with 1e400": (
        "PATCH",
        "/twins/d-0",
        b'{"properties": {"desired": {"t": 1e400}}}',
        "properties.desired.t: expected a finite JSON number, got 1e400",
    ),
    "method call with -Infinity": (
        "POST",
        "/twins/d-0/methods",
        b'{"methodName": "m", "payload": [-Infinity], "responseTimeoutInSeconds": 5}',
        "payload[0]: expected a finite JSON number, got -Infinity",
    ),
    "query with NaN": (
        "POST",
        "/devices/query",
        b'{"query": "SELECT * FROM devices", "x": NaN}',
        "x: expected a finite JSON number, got NaN",
    ),
}


@pytest.mark.parametrize(
    ("method", "path", "body", "problem"), NOT_STANDARD.values(), ids=NOT_STANDARD.keys()
)
def test_a_non_standard_body_is_400_argument_invalid_naming_the_problem(
    method: str, path: str, body: bytes, problem: str
) -> None:
    """400 ArgumentInvalid whose message names the field and what is wrong; no change made."""
    service, hubs = api()
    assert answer(service, raw("PUT", "/devices/d-0", b"{}")).status == 200
    twin_before = hubs.hub(HUB).twin("d-0")
    response = answer(service, raw(method, path, body))
    assert response.status == 400
    assert error_code(response) == "ArgumentInvalid"
    assert json.loads(response.body)["Message"] == f"ErrorCode:ArgumentInvalid;{problem}"
    assert hubs.hub(HUB).device("d-1") is None
    assert hubs.hub(HUB).twin("d-0") == twin_before


def test_the_error_answer_itself_is_standard_json() -> None:
    """The 400 body parses as standard JSON (it echoes no non-finite number)."""
    service, _ = api()
    response = answer(service, raw("PUT", "/devices/d-1", b'{"x": NaN}'))

    def refuse(constant: str) -> object:
        raise ValueError(f"non-standard constant {constant}")

    assert set(json.loads(response.body, parse_constant=refuse)) == {"Message", "ExceptionMessage"}
