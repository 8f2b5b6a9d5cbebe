"""`python -m simulator run` end to end: the real azure-iot-device SDK against the emulator on
127.45.1.1 (provision, reconnect, key fallback, re-provision, twin, telemetry, methods, C2D)."""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.hub.messages import MethodResponse
from simulator.__main__ import main
from simulator.device_settings import DeviceSettings, write_settings
from tests.emulator.e2e.harness import RunningEmulator, options
from tests.simulator.local_cloud import (
    CONFIG,
    DPS_HOST,
    HUBS,
    ID_SCOPE,
    device_secrets,
    run_args,
    secrets_in,
    settings_document,
    write_secrets,
)

pytestmark = pytest.mark.e2e

BIND = "127.45.1.1"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """The emulator with the test group on BIND."""
    with RunningEmulator(options(tmp_path_factory.mktemp("run"), BIND, CONFIG)) as running:
        yield running


def _hub_of(emulator: RunningEmulator, device_id: str) -> str | None:
    hubs = emulator.emulator.hubs
    assert hubs is not None
    return next(
        (hub for hub in HUBS if emulator.call(lambda h=hub: hubs.device_twin(h, device_id))), None
    )


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _bodies(emulator: RunningEmulator, hub: str, device_id: str) -> list[dict[str, Any]]:
    messages = emulator.call(lambda: emulator.emulator.hub(hub).messages)
    return [json.loads(m.body) for m in messages if m.device_id == device_id]


def _preinstalled(emulator: RunningEmulator, tmp_path: Path, registration_id: str) -> str:
    """A device already in a hub with settings.json (as a previous run left it); its hub."""
    secrets = device_secrets(registration_id)
    hub = HUBS[1]
    hubs = emulator.emulator.hubs
    assert hubs is not None
    emulator.call(
        lambda: hubs.upsert_device(
            hub,
            registration_id,
            primary_key=secrets.primary_key,
            secondary_key=secrets.secondary_key,
            twin=None,
        )
    )
    settings = DeviceSettings.for_device(
        hub=hub,
        device_id=registration_id,
        primary_key=secrets.primary_key,
        secondary_key=secrets.secondary_key,
        payload=None,
    )
    write_settings(tmp_path / "settings.json", settings)
    return hub


def test_run_without_settings_provisions_and_writes_settings(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No settings.json: DPS with the primary key, settings.json 0600, twin applied, telemetry."""
    secrets = device_secrets("sim-run-001")
    write_secrets(tmp_path / "secrets.json", secrets)
    assert main(run_args(emulator, tmp_path, "--messages", "2")) == 0
    out, err = capsys.readouterr()
    hub = _hub_of(emulator, "sim-run-001")
    assert hub is not None
    assert "dps: registered with the primary key" in out
    assert f"hub: connected to {hub} as 'sim-run-001' with the primary connection string" in out
    assert 'twin: desired (version 1) {"state": "ready"}' in out
    settings_path = tmp_path / "settings.json"
    assert stat.S_IMODE(settings_path.stat().st_mode) == 0o600
    document = settings_document(settings_path)
    assert (document["assignedHub"], document["deviceId"]) == (hub, "sim-run-001")
    assert document["primaryConnectionString"].endswith(secrets.primary_key)
    assert document["secondaryConnectionString"].endswith(secrets.secondary_key)
    assert [body["sequence"] for body in _bodies(emulator, hub, "sim-run-001")] == [1, 2]
    twin = emulator.call(lambda: emulator.emulator.hub(hub).twin("sim-run-001"))
    assert twin is not None
    assert twin.reported["state"] == "ready"
    assert secrets_in(out + err, secrets) == []


def test_run_with_settings_reconnects_without_provisioning(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """settings.json present: straight to its hub, no DPS line, no secrets.json needed."""
    hub = _preinstalled(emulator, tmp_path, "sim-run-002")
    assert main(run_args(emulator, tmp_path, "--messages", "1")) == 0
    out, err = capsys.readouterr()
    assert "dps:" not in out
    assert f"reconnecting to {hub} as 'sim-run-002' without provisioning" in out
    assert "SharedAccessKey=****" in out
    assert [body["sequence"] for body in _bodies(emulator, hub, "sim-run-002")] == [1]
    assert secrets_in(out + err, device_secrets("sim-run-002")) == []


def test_run_falls_back_to_the_secondary_key(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DPS refuses a wrong primary key; the secondary registers the device."""
    good = device_secrets("sim-run-003")
    wrong = device_secrets("sim-run-999")
    secrets = type(good)(
        provisioning_host=DPS_HOST,
        id_scope=ID_SCOPE,
        registration_id="sim-run-003",
        primary_key=wrong.primary_key,
        secondary_key=good.secondary_key,
    )
    write_secrets(tmp_path / "secrets.json", secrets)
    assert main(run_args(emulator, tmp_path, "--messages", "0")) == 0
    out, _ = capsys.readouterr()
    assert "dps: the primary key was refused" in out
    assert "dps: registered with the secondary key" in out
    assert _hub_of(emulator, "sim-run-003") is not None


def test_run_reprovisions_once_when_the_hub_refuses(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """settings.json names a device the hub no longer has: provision again, then connect."""
    hub = _preinstalled(emulator, tmp_path, "sim-run-004")
    hubs = emulator.emulator.hubs
    assert hubs is not None
    emulator.call(lambda: hubs.delete_device(hub, "sim-run-004"))
    write_secrets(tmp_path / "secrets.json", device_secrets("sim-run-004"))
    assert main(run_args(emulator, tmp_path, "--messages", "1")) == 0
    out, _ = capsys.readouterr()
    assert "hub: the primary connection string was refused" in out
    assert "hub: the secondary connection string was refused" in out
    assert "provisioning once more" in out
    new_hub = _hub_of(emulator, "sim-run-004")
    assert new_hub is not None
    assert settings_document(tmp_path / "settings.json")["assignedHub"] == new_hub
    assert [body["sequence"] for body in _bodies(emulator, new_hub, "sim-run-004")] == [1]


def test_run_fails_when_the_hub_refuses_without_secrets(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused device with no secrets.json to provision from exits 1 and says so."""
    hub = _preinstalled(emulator, tmp_path, "sim-run-005")
    hubs = emulator.emulator.hubs
    assert hubs is not None
    emulator.call(lambda: hubs.delete_device(hub, "sim-run-005"))
    assert main(run_args(emulator, tmp_path)) == 1
    _, err = capsys.readouterr()
    assert "refused device 'sim-run-005' with both connection strings" in err


def test_run_answers_reboot_prints_c2d_and_follows_desired_updates(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While lingering: reboot answered 200, C2D printed, a desired update applied and reported."""
    hub = _preinstalled(emulator, tmp_path, "sim-run-006")
    codes: list[int] = []
    runner = threading.Thread(
        target=lambda: codes.append(
            main(run_args(emulator, tmp_path, "--messages", "1", "--linger", "3"))
        )
    )
    runner.start()
    device = emulator.emulator.hub(hub)
    methods = "$iothub/methods/POST/#"
    _wait_until(lambda: methods in emulator.call(lambda: device.subscriptions("sim-run-006")))
    answers: list[MethodResponse] = []
    emulator.call(
        lambda: device.invoke_method(
            "sim-run-006", "reboot", {"delay": 0}, on_response=answers.append
        )
    )
    c2d = "devices/sim-run-006/messages/devicebound/#"
    _wait_until(lambda: c2d in emulator.call(lambda: device.subscriptions("sim-run-006")))
    emulator.call(
        lambda: device.send_c2d(
            "sim-run-006", b"hello toaster", message_id="m-1", properties={"kind": "greeting"}
        )
    )
    desired = "$iothub/twin/PATCH/properties/desired/#"
    _wait_until(lambda: desired in emulator.call(lambda: device.subscriptions("sim-run-006")))
    emulator.call(
        lambda: device.update_desired("sim-run-006", {"darkness": "high"}, now=time.time())
    )
    _wait_until(lambda: bool(answers))
    runner.join(30)
    assert codes == [0]
    assert (answers[0].status, answers[0].payload) == (200, {"result": "rebooting"})
    out, _ = capsys.readouterr()
    assert 'method: reboot {"delay": 0} -> 200' in out
    assert 'c2d: hello toaster properties {"kind": "greeting"}' in out
    assert 'twin: desired update (version 2) {"darkness": "high"}' in out
    twin = emulator.call(lambda: device.twin("sim-run-006"))
    assert twin is not None
    assert twin.reported["darkness"] == "high"


def test_run_reports_a_disabled_enrollment(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DPS answers `disabled`: exit 1 with the status named, no settings.json written."""
    from simulator.secrets_file import DeviceSecrets  # noqa: PLC0415

    write_secrets(
        tmp_path / "secrets.json",
        DeviceSecrets(
            provisioning_host=DPS_HOST,
            id_scope=ID_SCOPE,
            registration_id="switched-off-001",
            primary_key="AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
            secondary_key="BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ=",
        ),
    )
    assert main(run_args(emulator, tmp_path)) == 1
    out, err = capsys.readouterr()
    assert "disabled" in err
    assert not (tmp_path / "settings.json").exists()
    assert secrets_in(out + err) == []


def test_run_without_secrets_or_settings_is_a_usage_error(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Neither file: exit 2, and the message says how to create secrets.json."""
    assert main(run_args(emulator, tmp_path)) == 2
    assert "python -m simulator derive-key" in capsys.readouterr().err


def test_run_local_without_emulator_state_says_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--local with a state dir that has no ca.pem: exit 1 naming the file."""
    write_secrets(tmp_path / "secrets.json", device_secrets("sim-run-007"))
    code = main(["run", "--local", "--state-dir", str(tmp_path / "nowhere")])
    assert code == 1
    assert "nowhere/ca.pem" in capsys.readouterr().err
