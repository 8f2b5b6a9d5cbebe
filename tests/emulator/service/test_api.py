"""The pure service API core: SAS forms from the vectors, routing, errors, methods, query paging."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings

from emulator.hub.directory import Hubs
from emulator.hub.messages import MethodResponse
from emulator.service.api import MethodCall, Request, ServiceApi, ServicePolicyKey, ServiceResponse
from sas import generate_sas_token, sign
from tests.fixtures import FIXTURES
from tests.strategies import json_values

VECTORS = FIXTURES / "sas" / "vectors.json"
SVC1 = next(v for v in json.loads(VECTORS.read_text()) if v["id"] == "SVC1")
HOST = SVC1["uri"]  # 127.0.0.3:8443
HUB = "toasters.azure-devices.net"
NOW = SVC1["expiry"] - 100
DEVICE_KEY = "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E="


def api() -> tuple[ServiceApi, Hubs]:
    hubs = Hubs([HUB, "heatpumps.azure-devices.net"], clock=lambda: NOW)
    policies = {
        HUB: ServicePolicyKey(key_name="iothubowner", key=SVC1["key"]),
        "heatpumps.azure-devices.net": ServicePolicyKey(key_name="iothubowner", key=SVC1["key"]),
    }
    return ServiceApi(hubs, policies, make_key=lambda: DEVICE_KEY), hubs


def request(
    method: str,
    path: str,
    body: object = None,
    *,
    token: str | None = SVC1["token"],
    host: str = HOST,
    **headers: str,
) -> Request:
    all_headers = {"host": host, **{k.replace("_", "-"): v for k, v in headers.items()}}
    if token is not None:
        all_headers["authorization"] = token
    return Request(
        method=method,
        target=f"{path}?api-version=2021-04-12",
        headers=all_headers,
        body=b"" if body is None else json.dumps(body).encode(),
    )


def answer(service: ServiceApi, req: Request, now: float = NOW) -> ServiceResponse:
    result = service.handle(req, port_hub=HUB, now=now)
    assert isinstance(result, ServiceResponse)
    return result


def error_code(response: ServiceResponse) -> str:
    """The `iothub-errorcode` header, checked against the body (either form)."""
    headers = dict(response.headers)
    message = json.loads(response.body)["Message"]
    if message.startswith("{"):  # the structured form direct methods get
        assert isinstance(json.loads(message)["errorCode"], int)
    else:
        assert message.startswith(f"ErrorCode:{headers['iothub-errorcode']};")
    return headers["iothub-errorcode"]


def node_token() -> str:
    """The Node azure-iothub form for the SVC1 inputs: raw sr, order sr, sig, skn, se."""
    signature = sign(SVC1["key"], f"{HOST}\n{SVC1['expiry']}")
    return (
        f"SharedAccessSignature sr={HOST}&sig={quote(signature, safe='')}"
        f"&skn=iothubowner&se={SVC1['expiry']}"
    )


def test_python_and_node_sas_forms_are_accepted() -> None:
    """The recorded Python token and a Node-form token over the same inputs both authorize."""
    service, _ = api()
    assert answer(service, request("GET", "/statistics/devices")).status == 200
    assert answer(service, request("GET", "/statistics/devices", token=node_token())).status == 200


@pytest.mark.parametrize(
    ("token", "now"),
    [
        (None, NOW),
        ("Bearer x", NOW),
        (SVC1["token"], SVC1["expiry"] + 1),
        (SVC1["token"].replace("skn=iothubowner", "skn=registryRead"), NOW),
        (generate_sas_token("other:8443", SVC1["key"], SVC1["expiry"], "iothubowner"), NOW),
        (generate_sas_token(HOST, DEVICE_KEY, SVC1["expiry"], "iothubowner"), NOW),
    ],
)
def test_bad_credentials_are_401(token: str | None, now: float) -> None:
    """Missing, malformed, expired, other policy, other resource or other key -> 401."""
    service, _ = api()
    response = answer(service, request("GET", "/statistics/devices", token=token), now)
    assert response.status == 401
    assert error_code(response) == "IotHubUnauthorizedAccess"
    assert SVC1["key"].encode() not in response.body


def test_missing_api_version_unknown_path_and_method() -> None:
    """No api-version -> 400; unknown path -> 404; wrong method -> 405; all in the error form."""
    service, _ = api()
    bare = Request(
        method="GET",
        target="/statistics/devices",
        headers={"host": HOST},
        body=b"",
    )
    assert error_code(answer(service, bare)) == "InvalidProtocolVersion"
    assert answer(service, request("GET", "/jobs")).status == 404
    assert answer(service, request("POST", "/statistics/devices")).status == 405


def test_put_without_if_match_creates_then_conflicts() -> None:
    """PUT creates with generated keys (200 + ETag), then 409; a bad key is 400 naming the field."""
    service, hubs = api()
    created = answer(service, request("PUT", "/devices/d%2D1x", {}))
    assert created.status == 200
    body = json.loads(created.body)
    assert body["authentication"]["symmetricKey"]["primaryKey"] == DEVICE_KEY
    assert dict(created.headers)["ETag"] == f'"{body["etag"]}"'
    assert error_code(answer(service, request("PUT", "/devices/d-1x", {}))) == "DeviceAlreadyExists"
    bad = {"authentication": {"symmetricKey": {"primaryKey": "not base64!"}}}
    response = answer(service, request("PUT", "/devices/d-2", bad))
    assert response.status == 400
    assert b"authentication.symmetricKey.primaryKey" in response.body
    assert hubs.hub(HUB).device("d-2") is None


def test_host_header_naming_a_hub_routes_there() -> None:
    """A Host header naming the other hub reaches it, whatever port the request came in on."""
    service, hubs = api()
    other = "heatpumps.azure-devices.net"
    token = generate_sas_token(other, SVC1["key"], SVC1["expiry"], "iothubowner")
    response = answer(service, request("PUT", "/devices/h-1", {}, token=token, host=other))
    assert response.status == 200
    assert hubs.hub(other).device("h-1") is not None
    assert hubs.hub(HUB).device("h-1") is None


def test_query_pages_and_rejects_foreign_tokens() -> None:
    """Pages of 2 with a continuation until the last; a forged continuation is 400."""
    service, _ = api()
    for name in ("a", "b", "c"):
        answer(service, request("PUT", f"/devices/{name}", {}))
    query = {"query": "select *  from DEVICES"}
    first = answer(service, request("POST", "/devices/query", query, x_ms_max_item_count="2"))
    headers = dict(first.headers)
    assert [item["deviceId"] for item in json.loads(first.body)] == ["a", "b"]
    assert headers["x-ms-item-type"] == "twin"
    second = answer(
        service,
        request(
            "POST",
            "/devices/query",
            query,
            x_ms_max_item_count="2",
            x_ms_continuation=headers["x-ms-continuation"],
        ),
    )
    assert [item["deviceId"] for item in json.loads(second.body)] == ["c"]
    assert "x-ms-continuation" not in dict(second.headers)
    forged = request("POST", "/devices/query", query, x_ms_continuation="!!")
    assert answer(service, forged).status == 400


def test_query_shapes_item_types_and_page_cap() -> None:
    """A projection answers raw objects; twins come at most 100 a page even when 1000 are asked."""
    service, _ = api()
    for index in range(101):
        answer(service, request("PUT", f"/devices/p{index:03}", {}))
    projection = answer(
        service,
        request(
            "POST",
            "/devices/query",
            {"query": "SELECT deviceId FROM devices WHERE deviceId < 'p002'"},
        ),
    )
    assert json.loads(projection.body) == [{"deviceId": "p000"}, {"deviceId": "p001"}]
    assert dict(projection.headers)["x-ms-item-type"] == "raw"
    capped = answer(
        service,
        request(
            "POST", "/devices/query", {"query": "SELECT * FROM devices"}, x_ms_max_item_count="1000"
        ),
    )
    assert len(json.loads(capped.body)) == 100
    assert "x-ms-continuation" in dict(capped.headers)


@pytest.mark.parametrize(
    ("body", "headers", "code", "text"),
    [
        (
            {"query": "SELECT * FROM devices.modules"},
            {},
            "ArgumentInvalid",
            "query: FROM devices.modules",
        ),
        (
            {"query": "SELECT * FROM devices WHERE"},
            {},
            "ArgumentInvalid",
            "query: at line 1, column 28",
        ),
        (
            {"query": "SELECT * FROM devices"},
            {"x_ms_max_item_count": "0"},
            "ArgumentInvalid",
            "x-ms-max-item-count: ",
        ),
        ({"query": 5}, {}, "ArgumentNull", "query: expected a body"),
        (None, {}, "ArgumentNull", "query: expected a body"),
    ],
)
def test_bad_queries_are_400_with_iot_hubs_error_body(
    body: Any, headers: dict[str, str], code: str, text: str
) -> None:
    """A query the language refuses is 400 with the semicolon body naming what is wrong."""
    service, _ = api()
    response = answer(service, request("POST", "/devices/query", body, **headers))
    assert response.status == 400
    assert error_code(response) == code
    assert json.loads(response.body)["Message"].startswith(f"ErrorCode:{code};{text}")


def test_direct_method_round_trip_and_timeout() -> None:
    """A MethodCall goes to the connected device; its answer is 200, no answer is 504."""
    service, hubs = api()
    hub = hubs.hub(HUB)
    hub.upsert_device("m-1", primary_key=DEVICE_KEY, secondary_key=DEVICE_KEY, twin=None, now=NOW)
    sent: list[tuple[str, bytes]] = []
    token = generate_sas_token(f"{HUB}/devices/m-1", DEVICE_KEY, SVC1["expiry"])
    hub.connect(
        client_id="m-1",
        username=f"{HUB}/m-1/?api-version=2021-04-12",
        password=token.encode(),
        send=lambda topic, payload, **_: sent.append((topic, payload)),
        close=lambda: None,
        now=NOW,
    )
    hub.subscribe(client_id="m-1", topic_filter="$iothub/methods/POST/#")
    body = {"methodName": "reboot", "payload": {"d": 1}, "responseTimeoutInSeconds": 5}
    call = service.handle(request("POST", "/twins/m-1/methods", body), port_hub=HUB, now=NOW)
    assert isinstance(call, MethodCall)
    answers: list[MethodResponse] = []
    rid = service.invoke(call, answers.append, now=NOW)
    assert isinstance(rid, str)
    assert sent[-1] == (f"$iothub/methods/POST/reboot/?$rid={rid}", b'{"d": 1}')
    hub.publish(
        client_id="m-1",
        topic=f"$iothub/methods/res/200/?$rid={rid}",
        payload=b'{"ok":1}',
        send=lambda *_: None,
        now=NOW,
    )
    assert json.loads(service.method_result(answers[0]).body) == {
        "status": 200,
        "payload": {"ok": 1},
    }
    second = service.invoke(call, answers.append, now=NOW)
    assert isinstance(second, str)
    timeout = service.method_timeout(call, second, now=NOW)
    assert (timeout.status, error_code(timeout)) == (504, "GatewayTimeout")
    assert structured(timeout) == {
        "errorCode": 504101,
        "trackingId": structured(timeout)["trackingId"],
        "message": "Timed out waiting for the response from device.",
        "info": {},
        "timestampUtc": "2026-11-29T04:36:48.0000000Z",
    }
    hub.publish(
        client_id="m-1",
        topic=f"$iothub/methods/res/200/?$rid={second}",
        payload=b"{}",
        send=lambda *_: None,
        now=NOW,
    )
    assert len(answers) == 1  # the late answer is ignored


def structured(response: ServiceResponse) -> Any:
    """The JSON document inside `Message` of a structured error body (ExceptionMessage empty)."""
    body = json.loads(response.body)
    assert body["ExceptionMessage"] == ""
    return json.loads(body["Message"])


def test_a_method_for_an_offline_or_unsubscribed_device_is_404103() -> None:
    """DeviceNotOnline has IoT Hub's structured body (errorCode 404103, info) and header; the
    connect timeout the call asked for is carried on the MethodCall."""
    service, hubs = api()
    hubs.hub(HUB).upsert_device(
        "m-2", primary_key=DEVICE_KEY, secondary_key=DEVICE_KEY, twin=None, now=NOW
    )
    body = {"methodName": "reboot", "responseTimeoutInSeconds": 5, "connectTimeoutInSeconds": 7}
    call = service.handle(request("POST", "/twins/m-2/methods", body), port_hub=HUB, now=NOW)
    assert isinstance(call, MethodCall)
    assert (call.timeout, call.connect_timeout) == (5.0, 7.0)
    refused = service.invoke(call, lambda _: None, now=NOW)
    assert isinstance(refused, ServiceResponse)
    assert (refused.status, error_code(refused)) == (404, "DeviceNotOnline")
    detail = structured(refused)
    assert (detail["errorCode"], detail["info"]) == (404103, {})
    assert "isn't online" in detail["message"]
    assert len(detail["trackingId"]) == 32


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payload": 1}, "methodName"),
        ({"methodName": "m", "responseTimeoutInSeconds": 1}, "responseTimeoutInSeconds"),
        ({"methodName": "m", "connectTimeoutInSeconds": 301}, "connectTimeoutInSeconds"),
        ({"methodName": "m", "connectTimeoutInSeconds": -1}, "connectTimeoutInSeconds"),
        ({"methodName": "m", "connectTimeoutInSeconds": "5"}, "connectTimeoutInSeconds"),
        ({"methodName": "m", "connectTimeoutInSeconds": True}, "connectTimeoutInSeconds"),
        ([], "body"),
    ],
)
def test_bad_method_requests_name_the_field(body: Any, field: str) -> None:
    """A malformed method request is 400 naming the field."""
    service, _ = api()
    response = answer(service, request("POST", "/twins/x/methods", body))
    assert response.status == 400
    assert field.encode() in response.body


@settings(max_examples=200, deadline=None)
@given(response=json_values, connect=json_values)
def test_any_method_timeouts_give_a_call_or_a_400_naming_the_field(
    response: object, connect: object
) -> None:
    """Whatever JSON the two timeouts hold: a MethodCall with both in IoT Hub's ranges, or a 400
    ArgumentInvalid naming the field; never a 5xx or an exception."""
    service, _ = api()
    body = {
        "methodName": "m",
        "responseTimeoutInSeconds": response,
        "connectTimeoutInSeconds": connect,
    }
    result = service.handle(request("POST", "/twins/x/methods", body), port_hub=HUB, now=NOW)
    if isinstance(result, MethodCall):
        assert 5 <= result.timeout <= 300
        assert 0 <= result.connect_timeout <= 300
        return
    assert result.status == 400
    assert error_code(result) == "ArgumentInvalid"
    message = json.loads(result.body)["Message"]
    assert "TimeoutInSeconds" in message
    assert ": expected" in message
