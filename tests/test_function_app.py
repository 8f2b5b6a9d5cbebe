"""The Functions app: wiring, and the allocate function over func.HttpRequest."""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import function_app
from emulator.functions.host import index_functions
from store.memory import MemoryStore
from store.runtime import Runtime, set_runtime
from tests.fixtures import FIXTURES as ALL_FIXTURES
from tests.strategies import allocation_requests, json_values

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ALL_FIXTURES / "webhook"


@pytest.fixture(autouse=True)
def tutorial_policy(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryStore]:
    """Each test gets a fresh handler reading the tutorial policy, over an in-memory store."""
    monkeypatch.setenv("ALLOCATION_POLICY_FILE", "examples/tutorial-policy.toml")
    function_app.reset()
    store = MemoryStore()
    set_runtime(Runtime(store=store, hubs=lambda hub: None))
    yield store
    function_app.reset()


@functools.cache
def indexed_functions() -> dict[str, str]:
    """Function name -> function.json, as the host indexes them (get_functions builds only once)."""
    return {f.get_function_name(): f.get_function_json() for f in index_functions(function_app.app)}


def post(body: bytes) -> tuple[int, Any]:
    request = func.HttpRequest(
        "POST", "https://app.example/api/allocate", body=body, params={"code": "k"}
    )
    response = function_app.allocate(request)
    assert response.mimetype == "application/json"
    return response.status_code, json.loads(response.get_body())


@pytest.mark.parametrize(
    ("name", "trigger_type", "route", "methods", "auth"),
    [
        ("allocate", "httpTrigger", "allocate", ["POST"], "FUNCTION"),
        ("device_lifecycle", "eventGridTrigger", None, None, None),
        ("admin_get_device", "httpTrigger", "devices/{registrationId}", ["GET"], "ADMIN"),
        ("admin_list_devices", "httpTrigger", "devices", ["GET"], "ADMIN"),
        (
            "admin_retire_device",
            "httpTrigger",
            "devices/{registrationId}/retire",
            ["POST"],
            "ADMIN",
        ),
        (
            "admin_reinstate_device",
            "httpTrigger",
            "devices/{registrationId}/reinstate",
            ["POST"],
            "ADMIN",
        ),
    ],
)
def test_functions_are_wired_with_routes_and_auth_levels(
    name: str, trigger_type: str, route: str | None, methods: list[str] | None, auth: str | None
) -> None:
    """Each function has its documented trigger, route, methods and auth level."""
    trigger = json.loads(indexed_functions()[name])["bindings"][0]
    assert trigger["type"] == trigger_type
    assert trigger.get("route") == route
    assert trigger.get("methods") == methods
    assert trigger.get("authLevel") == auth


def test_documented_request_gets_documented_response() -> None:
    """The documented toaster request gets the documented response, byte for byte in JSON."""
    status, body = post((FIXTURES / "initial-group-request.json").read_bytes())
    assert status == 200
    assert body == json.loads((FIXTURES / "response-toaster.json").read_text())


def test_deny_is_400_naming_rule_and_reason() -> None:
    """A device the policy refuses gets 400 (DPS: 400207) with the rule and reason."""
    status, body = post((FIXTURES / "pnp-request.json").read_bytes())
    assert status == 400
    assert body == {
        "error": "denied",
        "rule": "(default)",
        "reason": "Unrecognized device registration",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"", "body"),
        (b'{"linkedHubs": ["h"]}', "deviceRuntimeContext"),
        (
            b'{"deviceRuntimeContext": {"registrationId": 5}, "linkedHubs": ["h"]}',
            "deviceRuntimeContext.registrationId",
        ),
        (b'{"deviceRuntimeContext": {"registrationId": "d"}, "linkedHubs": []}', "linkedHubs"),
    ],
)
def test_malformed_requests_are_400_naming_the_field(body: bytes, field: str) -> None:
    """Malformed bodies are answered 400 with the field named, never 5xx."""
    status, answer = post(body)
    assert status == 400
    assert answer["field"] == field
    assert "Traceback" not in json.dumps(answer)


def test_no_policy_file_hashes_over_linked_hubs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ALLOCATION_POLICY_FILE every device is assigned to a linked hub, nothing echoed."""
    monkeypatch.delenv("ALLOCATION_POLICY_FILE")
    function_app.reset()
    set_runtime(Runtime(store=MemoryStore(), hubs=lambda hub: None))
    status, body = post((FIXTURES / "pnp-request.json").read_bytes())
    assert (status, body) == (200, {"iotHubHostName": "IoTPnPWS-Hub-20210726.azure-devices.net"})


def test_invalid_policy_file_is_503_and_logged_with_location(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken policy makes DPS retry (503) and the log names file, rule and field."""
    broken = tmp_path / "broken.toml"
    broken.write_text('[[rules]]\nname = "r"\nstrategy = "random"\n')
    monkeypatch.setenv("ALLOCATION_POLICY_FILE", str(broken))
    function_app.reset()
    set_runtime(Runtime(store=MemoryStore(), hubs=lambda hub: None))
    with caplog.at_level(logging.ERROR):
        status, body = post((FIXTURES / "initial-group-request.json").read_bytes())
    assert status == 503
    assert "rules[0] (r).strategy" not in json.dumps(body)
    assert "broken.toml: rules[0] (r).strategy" in caplog.text


def test_missing_policy_file_is_503(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A policy file that does not exist is a loading error, not a crash."""
    monkeypatch.setenv("ALLOCATION_POLICY_FILE", str(tmp_path / "absent.toml"))
    function_app.reset()
    set_runtime(Runtime(store=MemoryStore(), hubs=lambda hub: None))
    status, _ = post((FIXTURES / "initial-group-request.json").read_bytes())
    assert status == 503


def test_request_body_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """Payload values are never logged, whatever the outcome."""
    document = json.loads((FIXTURES / "reprovision-with-payload-request.json").read_text())
    document["deviceRuntimeContext"]["payload"] = {"token": "s3cret-payload-value"}
    with caplog.at_level(logging.DEBUG):
        post(json.dumps(document).encode())
        document["linkedHubs"] = []
        post(json.dumps(document).encode())
    assert "s3cret-payload-value" not in caplog.text
    assert "breakroom499-contoso-tstrsd-007" in caplog.text


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(
    st.one_of(
        allocation_requests(),
        json_values,
        st.binary(max_size=64).map(lambda raw: {"raw": raw.hex()}),
        allocation_requests().map(lambda d: {**d, "linkedHubs": d["deviceRuntimeContext"]}),
    ),
)
def test_no_input_gives_a_server_error(document: Any) -> None:
    """Any JSON input is answered 200 or 400, never 5xx."""
    status, body = post(json.dumps(document).encode())
    assert status in (200, 400)
    if status == 200:
        assert body["iotHubHostName"] in document["linkedHubs"]


def test_import_does_no_io() -> None:
    """Importing function_app opens no file beyond modules and makes no connection."""
    probe = (
        "import builtins, io, socket\n"
        "opened = []\n"
        "real_open = io.open\n"
        "def spy(*a, **k):\n"
        "    opened.append(str(a[0]))\n"
        "    return real_open(*a, **k)\n"
        "builtins.open = io.open = spy\n"
        "socket.socket.connect = lambda *a, **k: (_ for _ in ()).throw(AssertionError('connect'))\n"
        "import function_app\n"
        "print(repr(opened))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_configured_serves_given_settings_then_the_environment_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """configured() swaps the settings and store for its block only; the environment applies after."""
    monkeypatch.delenv("ALLOCATION_POLICY_FILE")
    function_app.reset()
    pnp = (FIXTURES / "pnp-request.json").read_bytes()
    store = MemoryStore()
    with function_app.configured(
        settings={"ALLOCATION_POLICY_FILE": "examples/tutorial-policy.toml"},
        runtime=Runtime(store=store, hubs=lambda hub: None),
    ):
        assert post(pnp)[0] == 400  # the tutorial denies the PnP device
    assert len(store.registration_history("SAS-IoT-Devices")) == 1
    set_runtime(Runtime(store=MemoryStore(), hubs=lambda hub: None))
    assert post(pnp)[0] == 200  # no policy in the environment: hashed
