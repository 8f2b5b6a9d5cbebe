"""The admin API: its routes transport-free over in-memory DPS and hubs, then over real loopback
HTTP with the operator commands (`main(argv)`) against it (e2e)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import stat
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.__main__ import main
from emulator.app import Emulator
from emulator.config import load_config
from emulator.dps.service import DpsService
from emulator.dps.webhook import FunctionWebhook, WebhookResponse
from emulator.faults.spec import Faults
from emulator.hub.c2d import AckMode
from emulator.hub.directory import Hubs
from emulator.operator.api import AdminApi
from emulator.operator.cli import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE
from tests.emulator.dps.test_service import (
    GROUP_PRIMARY,
    GROUP_SECONDARY,
    HEATPUMPS,
    NOW,
    TOASTERS,
    WEBHOOK_URL,
    Sleeps,
    group_device,
    to_hub,
)
from tests.emulator.e2e.harness import RunningEmulator, emulator_toml, options
from tests.strategies import json_values

BIND = "127.44.1.1"
HUB = "toasters.azure-devices.net"
KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
CONFIG = emulator_toml(
    hubs=[HUB],
    groups=[{"id": "contoso", "primary_key": KEY, "secondary_key": KEY}],
    individuals=[{"registration_id": "dev-solo", "primary_key": KEY, "secondary_key": KEY}],
)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """One emulator for the module with a device `dev-1` in the hub."""
    settings = options(tmp_path_factory.mktemp("admin"), BIND, CONFIG, service_port=0)
    with RunningEmulator(settings) as running:
        hub = running.emulator.hub(HUB)
        running.call(
            lambda: hub.upsert_device(
                "dev-1", primary_key=KEY, secondary_key=KEY, twin=None, now=time.time()
            )
        )
        yield running


def state_dir(emulator: RunningEmulator) -> Path:
    return emulator.emulator.options.state_dir


def run(emulator: RunningEmulator, *argv: str) -> int:
    return main([*argv, "--state-dir", str(state_dir(emulator))])


def raw(emulator: RunningEmulator, request: bytes) -> tuple[int, dict[str, object]]:
    """Send raw bytes to the admin API; return the status and JSON body."""
    url = json.loads((state_dir(emulator) / "admin.json").read_text())["url"]
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(request)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    json_body = head.lower().find(b"content-type: application/json") >= 0
    return int(head.split(b" ")[1]), json.loads(body) if json_body else {}


def token(emulator: RunningEmulator) -> str:
    return (state_dir(emulator) / "admin-token").read_text().strip()


def request(emulator: RunningEmulator, method: str, path: str, body: bytes = b"") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token(emulator)}\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.mark.e2e
def test_token_file_is_private(emulator: RunningEmulator) -> None:
    """The admin token is kept 0600 beside admin.json, which holds a loopback URL."""
    mode = stat.S_IMODE((state_dir(emulator) / "admin-token").stat().st_mode)
    assert mode == 0o600
    url = json.loads((state_dir(emulator) / "admin.json").read_text())["url"]
    assert url.startswith("http://127.0.0.1:")


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (
            lambda e: b"GET /admin/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            401,
            "Unauthorized",
        ),
        (
            lambda e: (
                b"GET /admin/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Authorization: Bearer nope\r\n\r\n"
            ),
            401,
            "Unauthorized",
        ),
        (lambda e: b"NONSENSE\r\n\r\n", 400, None),
        (lambda e: request(e, "GET", "/admin/unknown"), 404, "NotFound"),
        (lambda e: request(e, "GET", "/elsewhere"), 404, "NotFound"),
        (lambda e: request(e, "PATCH", "/admin/status"), 405, "MethodNotAllowed"),
        (
            lambda e: request(e, "POST", "/admin/enrollments/group/contoso/regenerate-key", b"{"),
            400,
            "BadJson",
        ),
        (
            lambda e: request(
                e, "POST", "/admin/enrollments/group/contoso/regenerate-key", b'{"slot": "third"}'
            ),
            400,
            "BadField",
        ),
        (lambda e: request(e, "POST", "/admin/enrollments/pool/x/enable"), 404, "NotFound"),
        (lambda e: request(e, "GET", "/admin/hubs/nohub.example/devices"), 404, "UnknownHub"),
        (
            lambda e: request(e, "PUT", "/admin/faults/dps", b'{"refuse_seconds": -1}'),
            400,
            "BadField",
        ),
        (lambda e: request(e, "PUT", "/admin/faults/elsewhere", b"{}"), 404, "UnknownTarget"),
        (
            lambda e: request(e, "POST", f"/admin/hubs/{HUB}/devices/dev-1/c2d", b'{"body": 5}'),
            400,
            "BadField",
        ),
        (
            lambda e: request(e, "GET", "/admin/status").replace(
                b"Content-Length: 0", b"Content-Length: 99999999"
            ),
            413,
            "MessageTooLarge",
        ),
        (
            lambda e: request(e, "GET", "/admin/status").replace(
                b"Content-Length: 0", b"X-Filler: " + b"y" * 20_000
            ),
            431,
            "HeadersTooLarge",
        ),
    ],
)
def test_malformed_requests_get_errors_and_the_server_keeps_serving(
    emulator: RunningEmulator, make: object, status: int, code: str | None
) -> None:
    """Each bad request gets its status and error code (none for what is not HTTP at all); the
    next good request still works."""
    answer = raw(emulator, make(emulator))  # type: ignore[operator]
    assert answer[0] == status
    if code is not None:
        assert answer[1]["error"]["code"] == code  # type: ignore[index]
    assert raw(emulator, request(emulator, "GET", "/admin/status"))[0] == 200


@pytest.mark.e2e
def test_status_enrollments_and_devices_commands(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """status, enrollments and devices print one clear line per item and exit 0."""
    assert run(emulator, "status") == 0
    assert run(emulator, "enrollments") == 0
    assert run(emulator, "devices", HUB) == 0
    out = capsys.readouterr().out
    assert f"hub {HUB}: 1 device(s), 0 connected, 0 message(s) received" in out
    assert "state in memory" in out
    assert "group      contoso" in out
    assert "individual dev-solo" in out
    assert "dev-1" in out
    assert KEY not in out


@pytest.mark.e2e
def test_enable_disable_and_registrations(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """disable / enable flip the enrollment DPS uses; registrations lists none yet."""
    assert run(emulator, "disable", "dev-solo", "--individual") == 0
    assert not emulator.emulator.dps.config.individual_enrollments[0].enabled  # type: ignore[union-attr]
    assert run(emulator, "enable", "dev-solo", "--individual") == 0
    assert emulator.emulator.dps.config.individual_enrollments[0].enabled  # type: ignore[union-attr]
    assert run(emulator, "registrations") == 0
    out = capsys.readouterr().out
    assert "individual enrollment 'dev-solo' disabled (in memory only" in out
    assert "individual enrollment 'dev-solo' enabled" in out
    assert "no registrations" in out


@pytest.mark.e2e
def test_show_device_send_c2d_and_delete_device(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """show-device prints the twin without keys; send-c2d queues; delete-device removes."""
    hub = emulator.emulator.hub(HUB)
    emulator.call(
        lambda: hub.upsert_device(
            "dev-gone", primary_key=KEY, secondary_key=KEY, twin=None, now=time.time()
        )
    )
    assert run(emulator, "show-device", HUB, "dev-gone", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["device_id"], shown["connected"], shown["twin"]["version"]) == (
        "dev-gone",
        False,
        2,
    )
    assert KEY not in json.dumps(shown)
    assert run(emulator, "send-c2d", HUB, "dev-gone", "hello", "--property", "kind=test") == 0
    assert "queued until the device connects" in capsys.readouterr().out
    assert run(emulator, "delete-device", HUB, "dev-gone") == 0
    assert emulator.call(lambda: hub.device("dev-gone")) is None
    assert run(emulator, "show-device", HUB, "dev-gone") == EXIT_REFUSED
    assert "device 'dev-gone' is not in" in capsys.readouterr().err


@pytest.mark.e2e
def test_exit_codes_for_refusals_usage_and_no_emulator(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown hub -> 1, bad arguments -> 2, no running emulator -> 3, each with a message."""
    assert run(emulator, "devices", "nohub.example") == EXIT_REFUSED
    assert "hub 'nohub.example' is not configured" in capsys.readouterr().err
    assert main(["regenerate-key", "contoso"]) == EXIT_USAGE  # --slot is required
    assert main(["status", "--state-dir", str(tmp_path)]) == EXIT_UNREACHABLE
    assert f"no running local cloud found in {tmp_path}" in capsys.readouterr().err
    assert run(emulator, "send-c2d", HUB, "dev-1", "x", "--property", "novalue") == EXIT_REFUSED


@pytest.mark.e2e
def test_run_refuses_a_corrupt_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --state-dir` with a corrupt state.json exits 2 naming the file; the file is kept."""
    settings = options(tmp_path, BIND, CONFIG)
    settings.state_dir.mkdir()
    corrupt = settings.state_dir / "state.json"
    corrupt.write_text('{"format": "azure-iot-emulator-state", "version": 1, "hubs": [')
    argv = ["run", "--config", str(settings.config_path), "--state-dir", str(settings.state_dir)]
    assert main([*argv, "--bind", BIND, "--mqtt-port", "0", "--service-port", "0"]) == 2
    assert f"error: {corrupt}: file: expected JSON" in capsys.readouterr().err
    assert corrupt.read_text().endswith('"hubs": [')


# --- the routes, transport-free: AdminApi over an Emulator with in-memory DPS and hubs ----------

GROUP_CONFIG = f"""# the local cloud: keys are written back here
[[hubs]]
name = "{TOASTERS}"

[[hubs]]
name = "{HEATPUMPS}"

[[enrollment_groups]]
id = "contoso"
primary_key = "{GROUP_PRIMARY}"
secondary_key = "{GROUP_SECONDARY}"
allocation = "custom"               # the hosted app decides
webhook_url = "{WEBHOOK_URL}"

[[individual_enrollments]]
registration_id = "dev-solo"
primary_key = "{KEY}"
secondary_key = "{KEY}"
"""


async def decide(url: str, request: Any) -> WebhookResponse:
    """The webhook: denies `dev-denied` with a reason, keeps `dev-slow` waiting, assigns the rest."""
    registration_id = request["deviceRuntimeContext"]["registrationId"]
    if registration_id == "dev-denied":
        return FunctionWebhook.json(400, {"error": "denied by rule pnp"})
    if registration_id == "dev-slow":
        await asyncio.Event().wait()
    return to_hub(TOASTERS)


def local_cloud(
    tmp_path: Path, webhook: FunctionWebhook | None = None
) -> tuple[Emulator, DpsService, AdminApi]:
    """An Emulator with its config loaded from a file, in-memory hubs and DPS; nothing listens."""
    emulator = Emulator(options(tmp_path, BIND, GROUP_CONFIG))
    config = load_config(emulator.options.config_path)
    emulator.loaded_config = config
    emulator.hubs = Hubs(config.hubs, clock=lambda: NOW)
    emulator.faults = Faults(config.hubs)
    dps = DpsService(
        config, emulator.hubs, webhook or FunctionWebhook(decide), clock=lambda: NOW, sleep=Sleeps()
    )
    emulator.dps = dps
    return emulator, dps, AdminApi(emulator, token=TEST_TOKEN, clock=lambda: NOW + 5)


TEST_TOKEN = "operator-test-token"


async def ask(api: AdminApi, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """One request through the API's real routing and middleware, in this event loop."""
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        answer = await client.request(
            method,
            path,
            content=b"" if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {TEST_TOKEN}"},
        )
    return answer.status_code, answer.json()


def test_keys_route_returns_both_keys_of_an_enrollment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """GET .../keys answers the canonical id and both keys; the log line shows neither key."""
    _, _, api = local_cloud(tmp_path)

    async def scenario() -> list[tuple[int, Any]]:
        return [
            await ask(api, "GET", "/admin/enrollments/group/CONTOSO/keys"),
            await ask(api, "GET", "/admin/enrollments/individual/dev-solo/keys"),
        ]

    with caplog.at_level(logging.INFO, logger="emulator.operator.api"):
        group, individual = asyncio.run(scenario())
    assert group == (
        200,
        {
            "kind": "group",
            "id": "contoso",
            "primary_key": GROUP_PRIMARY,
            "secondary_key": GROUP_SECONDARY,
        },
    )
    assert individual[1]["id"] == "dev-solo"
    assert individual[1]["primary_key"] == KEY
    assert "keys of group enrollment 'CONTOSO' read" in caplog.text
    assert GROUP_PRIMARY not in caplog.text
    assert KEY not in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/admin/enrollments/group/nobody/keys", 404, "UnknownEnrollment"),
        ("GET", "/admin/enrollments/individual/contoso/keys", 404, "UnknownEnrollment"),
        ("GET", "/admin/enrollments/pool/contoso/keys", 404, "NotFound"),
        ("POST", "/admin/enrollments/group/contoso/keys", 405, "MethodNotAllowed"),
        ("GET", "/admin/registrations/nobody", 404, "NotFound"),
    ],
)
def test_unknown_enrollments_and_registrations_are_404(
    tmp_path: Path, method: str, path: str, status: int, code: str
) -> None:
    """An enrollment or registration that does not exist, or the wrong method: its error code."""
    _, _, api = local_cloud(tmp_path)
    answer = asyncio.run(ask(api, method, path))
    assert (answer[0], answer[1]["error"]["code"]) == (status, code)
    assert GROUP_PRIMARY not in json.dumps(answer[1])


def test_registrations_merge_records_and_attempts_and_status_counts_them(tmp_path: Path) -> None:
    """Assigned, re-registered and denied, denied, and still waiting: each id once, as it is now."""
    webhook_calls: dict[str, int] = {}

    async def once_assigned_then_denied(url: str, request: Any) -> WebhookResponse:
        registration_id = request["deviceRuntimeContext"]["registrationId"]
        webhook_calls[registration_id] = webhook_calls.get(registration_id, 0) + 1
        if registration_id == "dev-moved" and webhook_calls[registration_id] > 1:
            return FunctionWebhook.json(400, {"error": "retired"})
        return await decide(url, request)

    _, dps, api = local_cloud(tmp_path, FunctionWebhook(once_assigned_then_denied))

    async def scenario() -> tuple[Any, ...]:
        moved = group_device(dps, "dev-moved")
        await moved.provision()
        await moved.provision()  # denied this time: DPS keeps its record of the assignment
        await group_device(dps, "dev-ok").provision()
        await group_device(dps, "dev-denied").provision()
        group_device(dps, "dev-slow").register()
        await asyncio.sleep(0)  # the webhook call starts and waits
        listing = await ask(api, "GET", "/admin/registrations")
        one = await ask(api, "GET", "/admin/registrations/DEV-DENIED")
        status = await ask(api, "GET", "/admin/status")
        await dps.aclose()
        return listing, one, status

    listing, one, status = asyncio.run(scenario())
    assert listing[0] == 200
    entries = {entry["registration_id"]: entry for entry in listing[1]["registrations"]}
    assert list(entries) == ["dev-moved", "dev-ok", "dev-denied", "dev-slow"]
    moved = entries["dev-moved"]
    assert (moved["status"], moved["assigned_hub"], moved["device_id"]) == (
        "failed",
        TOASTERS,
        "dev-moved",
    )
    assert (moved["substatus"], moved["error_code"]) == ("initialAssignment", 400207)
    ok = entries["dev-ok"]
    assert (ok["status"], ok["assigned_hub"], ok["webhook_calls"]) == ("assigned", TOASTERS, 1)
    slow = entries["dev-slow"]
    assert (slow["status"], slow["webhook_calls"], slow["assigned_hub"]) == ("assigning", 0, None)
    assert slow["seconds_since_start"] == 5.0
    assert one == (200, entries["dev-denied"])
    denied = one[1]
    assert (denied["status"], denied["error_code"], denied["webhook_status"]) == (
        "failed",
        400207,
        400,
    )
    assert denied["error_message"] == "Custom allocation failed with status code: 400"
    assert denied["webhook_answer"] == '{"error": "denied by rule pnp"}'
    assert (denied["assigned_hub"], denied["device_id"]) == (None, None)
    assert status[0] == 200
    assert {k: status[1]["dps"][k] for k in ("registrations", "assigning", "failed")} == {
        "registrations": 2,
        "assigning": 1,
        "failed": 2,
    }


def test_regenerate_key_writes_the_new_key_into_the_config_file(tmp_path: Path) -> None:
    """The new key is used by DPS, served by .../keys, and is in the file; the rest is unchanged."""
    emulator, dps, api = local_cloud(tmp_path)
    path = emulator.options.config_path

    async def scenario() -> tuple[tuple[int, Any], tuple[int, Any]]:
        made = await ask(
            api,
            "POST",
            "/admin/enrollments/group/Contoso/regenerate-key",
            {"slot": "secondary", "return_key": True},
        )
        return made, await ask(api, "GET", "/admin/enrollments/group/contoso/keys")

    made, keys = asyncio.run(scenario())
    assert made[0] == 200
    new_key = made[1]["key"]
    assert new_key not in (GROUP_PRIMARY, GROUP_SECONDARY)
    assert (made[1]["id"], made[1]["slot"], made[1]["persisted"]) == ("contoso", "secondary", False)
    assert keys[1]["secondary_key"] == new_key
    assert dps.config.enrollment_groups[0].keys == (GROUP_PRIMARY, new_key)
    written = tomllib.loads(path.read_text())
    assert written["enrollment_groups"][0]["secondary_key"] == new_key
    assert written["enrollment_groups"][0]["primary_key"] == GROUP_PRIMARY
    assert written["individual_enrollments"][0]["secondary_key"] == KEY
    assert path.read_text() == GROUP_CONFIG.replace(GROUP_SECONDARY, new_key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config(path).enrollment_groups[0].secondary_key == new_key
    assert emulator.loaded_config is not None
    assert emulator.loaded_config.enrollment_groups[0].secondary_key == new_key


def test_regenerate_key_without_return_key_keeps_the_key_out_of_the_answer(
    tmp_path: Path,
) -> None:
    """The individual enrollment's new primary key is in the file, not in the answer."""
    emulator, _, api = local_cloud(tmp_path)
    made = asyncio.run(
        ask(
            api,
            "POST",
            "/admin/enrollments/individual/DEV-SOLO/regenerate-key",
            {"slot": "primary"},
        )
    )
    assert made == (
        200,
        {"kind": "individual", "id": "dev-solo", "slot": "primary", "persisted": False},
    )
    written = tomllib.loads(emulator.options.config_path.read_text())
    assert written["individual_enrollments"][0]["primary_key"] != KEY
    assert written["individual_enrollments"][0]["secondary_key"] == KEY


def test_regenerate_key_with_the_config_file_gone_still_answers_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The file cannot be rewritten: the key is in use anyway, with a warning naming the file."""
    emulator, dps, api = local_cloud(tmp_path)
    emulator.options.config_path.unlink()
    with caplog.at_level(logging.WARNING, logger="emulator.operator.api"):
        made = asyncio.run(
            ask(
                api,
                "POST",
                "/admin/enrollments/group/contoso/regenerate-key",
                {"slot": "primary", "return_key": True},
            )
        )
    assert made[0] == 200
    assert dps.config.enrollment_groups[0].primary_key == made[1]["key"]
    assert "the new key is in use but not in the config file: emulator.toml" in caplog.text
    assert made[1]["key"] not in caplog.text


def c2d_device(tmp_path: Path) -> tuple[Hubs, AdminApi]:
    """An in-memory cloud whose toasters hub holds `dev-c2d`, offline."""
    emulator, _, api = local_cloud(tmp_path)
    hubs = emulator.hubs
    assert hubs is not None
    hubs.hub(TOASTERS).upsert_device(
        "dev-c2d", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW
    )
    return hubs, api


def test_send_c2d_sets_expiry_ack_and_properties_as_asked(tmp_path: Path) -> None:
    """`ttl_seconds` or an absolute `expiry`, `ack`, `correlation_id`: the queued message carries
    them; without them it expires in an hour and asks no feedback; both expiries at once is 400."""
    hubs, api = c2d_device(tmp_path)
    path = f"/admin/hubs/{TOASTERS}/devices/dev-c2d/c2d"

    async def scenario() -> list[tuple[int, Any]]:
        return [
            await ask(api, "POST", path, {"body": "a", "message_id": "m-default"}),
            await ask(
                api,
                "POST",
                path,
                {"body": "b", "message_id": "m-ttl", "ttl_seconds": 30, "ack": "full"},
            ),
            await ask(
                api,
                "POST",
                path,
                {"body": "c", "expiry": "2031-01-01T00:00:00Z", "correlation_id": "c-1"},
            ),
            await ask(api, "POST", path, {"body": "d", "ttl_seconds": 5, "expiry": "2031-01-01Z"}),
        ]

    default, ttl, absolute, both = asyncio.run(scenario())
    assert (default[0], ttl[0], absolute[0]) == (200, 200, 200)
    assert default[1]["ack"] == "none"
    assert both[0] == 400
    assert "ttl_seconds, expiry" in both[1]["error"]["message"]
    queued = hubs.hub(TOASTERS).c2d_queue("dev-c2d")
    assert [(m.expiry - (NOW + 5), m.expiry_set, m.ack) for m in queued[:2]] == [
        (3600.0, False, AckMode.NONE),
        (30.0, True, AckMode.FULL),
    ]
    assert (queued[2].expiry, queued[2].correlation_id) == (1924992000.0, "c-1")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ttl=st.none() | json_values,
    expiry=st.none() | json_values | st.datetimes().map(lambda moment: moment.isoformat()),
    ack=st.none() | json_values | st.sampled_from([mode.value for mode in AckMode]),
)
def test_any_c2d_options_are_queued_or_refused_naming_the_field(
    ttl: object, expiry: object, ack: object
) -> None:
    """Whatever JSON `ttl_seconds`, `expiry` and `ack` hold: 200, or 400 naming the field;
    never a 5xx (each example starts with an empty queue)."""
    with tempfile.TemporaryDirectory() as directory:
        _, api = c2d_device(Path(directory))
        body = {"body": "x", "ttl_seconds": ttl, "expiry": expiry, "ack": ack}
        status, answer = asyncio.run(
            ask(api, "POST", f"/admin/hubs/{TOASTERS}/devices/dev-c2d/c2d", body)
        )
    assert status in (200, 400), answer
    if status == 400:
        assert answer["error"]["message"].startswith(("ttl_seconds", "expiry", "ack"))
