"""Tests for emulator.functions.host: real HTTP requests against FunctionApps."""

from __future__ import annotations

import http.client
import json
import logging
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from emulator.functions.host import FunctionsHost, FunctionsHostError, load_function_app, state_key
from emulator.in_process import LoopThread
from store.memory import MemoryStore
from store.runtime import Runtime, set_runtime
from tests.fixtures import FIXTURES as ALL_FIXTURES

FUNCTION_KEY = "function-key-123"
MASTER_KEY = "master-key-456"
FIXTURES = ALL_FIXTURES

received_events: list[func.EventGridEvent] = []


def build_app() -> func.FunctionApp:
    """A FunctionApp exercising every auth level, route templates, async and Event Grid."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="allocate", methods=["POST"])
    def allocate(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(
            json.dumps({"body": req.get_json(), "method": req.method}),
            status_code=200,
            mimetype="application/json",
        )

    @app.route(
        route="items/{item_id}/{kind?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS
    )
    def items(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(
            json.dumps({"route": dict(req.route_params), "q": req.params.get("q")}),
            mimetype="application/json",
        )

    @app.route(route="admin/ping", auth_level=func.AuthLevel.ADMIN)
    def ping(req: func.HttpRequest) -> str:
        return "pong"

    @app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("secret-traceback-detail")

    @app.route(route="later", auth_level=func.AuthLevel.ANONYMOUS)
    async def later(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("async ok", status_code=201)

    @app.function_name("OnDeviceEvent")
    @app.event_grid_trigger(arg_name="event")
    def on_device_event(event: func.EventGridEvent) -> None:
        if event.subject == "devices/bad":
            raise ValueError("handler failed")
        received_events.append(event)

    return app


@pytest.fixture
def host() -> Iterator[FunctionsHost]:
    """The test app served on a free port."""
    served = FunctionsHost(
        build_app(),
        function_key=FUNCTION_KEY,
        master_key=MASTER_KEY,
        system_key=SYSTEM_KEY,
        port=0,
    )
    with LoopThread("functions-host") as loop:
        loop.run(served.start())
        received_events.clear()
        yield served
        loop.run(served.close())


def request(
    host: FunctionsHost,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, Any]:
    """One real HTTP request; returns status, body and headers (names case-insensitive)."""
    connection = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), response.headers
    finally:
        connection.close()


def test_function_route_accepts_the_key_in_query_or_header(host: FunctionsHost) -> None:
    """?code= and x-functions-key both reach a FUNCTION route, with the JSON body converted."""
    status, body, headers = request(host, "POST", f"/api/allocate?code={FUNCTION_KEY}", b'{"a": 1}')
    assert (status, json.loads(body)) == (200, {"body": {"a": 1}, "method": "POST"})
    assert headers["Content-Type"].startswith("application/json")
    status, _, _ = request(
        host, "POST", "/api/allocate", b"{}", headers={"x-functions-key": MASTER_KEY}
    )
    assert status == 200


@pytest.mark.parametrize(
    "path", ["/api/allocate", "/api/allocate?code=wrong", "/api/allocate?code="]
)
def test_function_route_without_a_valid_key_is_401(host: FunctionsHost, path: str) -> None:
    """A missing, wrong or empty key gets 401 and the function does not run."""
    status, body, _ = request(host, "POST", path, b"{}")
    assert (status, body) == (401, b"")


def test_admin_route_needs_the_master_key(host: FunctionsHost) -> None:
    """ADMIN routes refuse the function key and accept the master key."""
    assert request(host, "GET", f"/api/admin/ping?code={FUNCTION_KEY}")[0] == 401
    status, body, _ = request(host, "GET", f"/api/admin/ping?code={MASTER_KEY}")
    assert (status, body) == (200, b"pong")


def test_route_templates_fill_route_params(host: FunctionsHost) -> None:
    """Route parameters, optional segments and the query reach the function."""
    _, body, _ = request(host, "GET", "/api/items/42/big?q=x")
    assert json.loads(body) == {"route": {"item_id": "42", "kind": "big"}, "q": "x"}
    _, body, _ = request(host, "GET", "/api/items/7")
    assert json.loads(body)["route"] == {"item_id": "7"}


def test_unknown_paths_and_methods_are_404(host: FunctionsHost) -> None:
    """No route, or a method the route does not allow, gives 404."""
    assert request(host, "GET", "/api/nowhere")[0] == 404
    assert request(host, "POST", "/api/items/1")[0] == 404


def test_raising_function_gives_500_without_traceback(
    host: FunctionsHost, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception is logged and answered 500 with an empty body."""
    with caplog.at_level(logging.ERROR, logger="emulator.functions.host"):
        status, body, _ = request(host, "GET", "/api/boom")
    assert (status, body) == (500, b"")
    assert "secret-traceback-detail" in caplog.text


def test_async_functions_run(host: FunctionsHost) -> None:
    """An async def function is awaited and its response returned."""
    assert request(host, "GET", "/api/later")[:2] == (201, b"async ok")


def test_keys_never_reach_the_log(host: FunctionsHost, caplog: pytest.LogCaptureFixture) -> None:
    """Request logging shows paths, never the ?code= query."""
    with caplog.at_level(logging.DEBUG):
        request(host, "POST", f"/api/allocate?code={FUNCTION_KEY}", b"{}")
        request(host, "POST", "/api/allocate?code=wrong-key-789", b"{}")
    assert FUNCTION_KEY not in caplog.text
    assert "wrong-key-789" not in caplog.text


SYSTEM_KEY = "eventgrid-system-key-456"
EVENT_GRID = f"/runtime/webhooks/EventGrid?functionName=OnDeviceEvent&code={SYSTEM_KEY}"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("", 401),
        ("&code=not-the-key", 401),
        (f"&code={FUNCTION_KEY}", 401),
        (f"&code={MASTER_KEY}", 202),
    ],
)
def test_event_grid_needs_the_system_key(
    host: FunctionsHost, code: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Event Grid delivers with the app's system key (`eventgrid_extension`) in `code`; the master
    key also works, a function key does not, nothing is 401, and no key reaches the log. A forged
    DeviceCreated without the key invokes nothing."""
    events = (FIXTURES / "eventgrid" / "device-created.json").read_bytes()
    path = "/runtime/webhooks/EventGrid?functionName=OnDeviceEvent" + code
    assert request(host, "POST", path, events, headers={"aeg-event-type": "Notification"})[0] == (
        status
    )
    assert len(received_events) == (1 if status == 202 else 0)
    for key in (SYSTEM_KEY, MASTER_KEY, FUNCTION_KEY, "not-the-key"):
        assert key not in caplog.text


def test_event_grid_event_type_header_is_case_insensitive(host: FunctionsHost) -> None:
    """`aeg-event-type: notification` is a Notification, as the Functions host compares it."""
    events = (FIXTURES / "eventgrid" / "device-created.json").read_bytes()
    status, _, _ = request(
        host, "POST", EVENT_GRID, events, headers={"aeg-event-type": "notification"}
    )
    assert (status, len(received_events)) == (202, 1)


def test_event_grid_notification_invokes_the_function(host: FunctionsHost) -> None:
    """A Notification batch is converted to EventGridEvents and answered 202."""
    events = (FIXTURES / "eventgrid" / "device-created.json").read_bytes()
    status, _, _ = request(
        host, "POST", EVENT_GRID, events, headers={"aeg-event-type": "Notification"}
    )
    assert status == 202
    (event,) = received_events
    assert (event.event_type, event.subject) == (
        "Microsoft.Devices.DeviceCreated",
        "devices/LogicAppTestDevice",
    )
    assert event.event_time is not None
    assert event.event_time.year == 2018
    assert event.get_json()["twin"]["deviceId"] == "LogicAppTestDevice"


def test_event_grid_failure_is_500(host: FunctionsHost) -> None:
    """If any invocation of the batch fails the answer is 500 (Event Grid re-sends)."""
    batch = json.dumps(
        [{"id": "1", "subject": "devices/ok"}, {"id": "2", "subject": "devices/bad"}]
    )
    status, _, _ = request(
        host, "POST", EVENT_GRID, batch.encode(), headers={"aeg-event-type": "Notification"}
    )
    assert status == 500


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        (EVENT_GRID, {}, 400),
        (EVENT_GRID, {"aeg-event-type": "Other"}, 400),
        (EVENT_GRID, {"aeg-event-type": "Unsubscribe"}, 202),
        (
            f"/runtime/webhooks/eventgrid?functionName=Missing&code={SYSTEM_KEY}",
            {"aeg-event-type": "Notification"},
            404,
        ),
    ],
)
def test_event_grid_status_codes(
    host: FunctionsHost, path: str, headers: dict[str, str], status: int
) -> None:
    """Missing/other header 400, Unsubscribe 202, unknown function 404, as Core Tools."""
    assert request(host, "POST", path, b"[]", headers=headers)[0] == status


def test_event_grid_subscription_validation_echoes_the_code(host: FunctionsHost) -> None:
    """SubscriptionValidation answers 200 with the validation code."""
    body = json.dumps([{"id": "v", "data": {"validationCode": "abc-123"}}]).encode()
    status, answer, _ = request(
        host, "POST", EVENT_GRID, body, headers={"aeg-event-type": "SubscriptionValidation"}
    )
    assert (status, json.loads(answer)) == (200, {"validationResponse": "abc-123"})


def test_state_key_is_generated_once_and_kept_0600(tmp_path: Path) -> None:
    """A missing key is generated, stored 0600 and returned again next time; a given key wins."""
    key, generated = state_key(tmp_path, "function-key")
    assert generated
    assert stat.S_IMODE((tmp_path / "function-key").stat().st_mode) == 0o600
    assert state_key(tmp_path, "function-key") == (key, False)
    assert state_key(tmp_path, "function-key", "given") == ("given", False)


def test_port_in_use_is_a_clear_error(host: FunctionsHost) -> None:
    """A second host on the same port fails with FunctionsHostError naming the address."""
    clash = FunctionsHost(build_app(), function_key="k", port=host.port)
    with LoopThread() as loop, pytest.raises(FunctionsHostError, match=f"127.0.0.1:{host.port}"):
        loop.run(clash.start())


def test_loading_a_module_without_an_app_fails_clearly() -> None:
    """load_function_app names the module when it has no FunctionApp."""
    with pytest.raises(FunctionsHostError, match=r"json\.app"):
        load_function_app("json")


def test_project_allocate_function_is_served_behind_the_key() -> None:
    """function_app.allocate answers at /api/allocate?code=KEY and a wrong key gets 401."""
    store = MemoryStore()
    set_runtime(Runtime(store=store, hubs=lambda hub: None))
    served = FunctionsHost(load_function_app(), function_key=FUNCTION_KEY, port=0)
    loop = LoopThread()
    loop.run(served.start())
    try:
        fixture = (FIXTURES / "webhook" / "initial-group-request.json").read_bytes()
        status, body, _ = request(served, "POST", f"/api/allocate?code={FUNCTION_KEY}", fixture)
        assert status == 200
        assert json.loads(body)["iotHubHostName"] in json.loads(fixture)["linkedHubs"]
        assert request(served, "POST", "/api/allocate?code=nope", fixture)[0] == 401
        assert len(store.registration_history("breakroom499-contoso-tstrsd-007")) == 1
    finally:
        loop.run(served.close())
        loop.close()
        set_runtime(None)
