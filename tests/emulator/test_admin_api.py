"""The admin API over real loopback HTTP and the operator commands (`main(argv)`) against it."""

from __future__ import annotations

import json
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.__main__ import main
from emulator.admin_cli import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE
from tests.emulator.e2e.harness import RunningEmulator, options

pytestmark = pytest.mark.e2e

BIND = "127.44.1.1"
HUB = "toasters.azure-devices.net"
KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
CONFIG = f"""
[[hubs]]
name = "{HUB}"

[[enrollment_groups]]
id = "contoso"
primary_key = "{KEY}"
secondary_key = "{KEY}"

[[individual_enrollments]]
registration_id = "dev-solo"
primary_key = "{KEY}"
secondary_key = "{KEY}"
"""


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
    return int(head.split(b" ")[1]), json.loads(body)


def token(emulator: RunningEmulator) -> str:
    return (state_dir(emulator) / "admin-token").read_text().strip()


def request(emulator: RunningEmulator, method: str, path: str, body: bytes = b"") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token(emulator)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_token_file_is_private(emulator: RunningEmulator) -> None:
    """The admin token is kept 0600 beside admin.json, which holds a loopback URL."""
    mode = stat.S_IMODE((state_dir(emulator) / "admin-token").stat().st_mode)
    assert mode == 0o600
    url = json.loads((state_dir(emulator) / "admin.json").read_text())["url"]
    assert url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda e: b"GET /admin/status HTTP/1.1\r\n\r\n", 401, "Unauthorized"),
        (
            lambda e: b"GET /admin/status HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n",
            401,
            "Unauthorized",
        ),
        (lambda e: b"NONSENSE\r\n\r\n", 400, "BadRequest"),
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
            "BodyTooLarge",
        ),
        (
            lambda e: request(e, "GET", "/admin/status").replace(
                b"Content-Length: 0", b"Transfer-Encoding: chunked"
            ),
            411,
            "LengthRequired",
        ),
    ],
)
def test_malformed_requests_get_errors_and_the_server_keeps_serving(
    emulator: RunningEmulator, make: object, status: int, code: str
) -> None:
    """Each bad request gets its status and error code; the next good request still works."""
    answer = raw(emulator, make(emulator))  # type: ignore[operator]
    assert answer[0] == status
    assert answer[1]["error"]["code"] == code  # type: ignore[index]
    assert raw(emulator, request(emulator, "GET", "/admin/status"))[0] == 200


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
