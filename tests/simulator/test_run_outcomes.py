"""`python -m simulator run` failure paths against the emulator on 127.46.4.1: re-provisioning
happens once and only once, and an unreachable DPS or hub exits 1 with the reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import simulator.run_cli
from simulator.__main__ import main
from simulator.device import connect as real_connect
from simulator.device import register as real_register
from simulator.device_settings import DeviceSettings, write_settings
from tests.emulator.e2e.harness import RunningEmulator, options
from tests.simulator.local_cloud import CONFIG, HUBS, device_secrets, run_args, write_secrets

pytestmark = pytest.mark.e2e

BIND = "127.46.4.1"
NOBODY = "127.46.4.2"  # nothing listens here


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """The emulator with the test group on BIND."""
    with RunningEmulator(options(tmp_path_factory.mktemp("outcomes"), BIND, CONFIG)) as running:
        yield running


def preinstall(emulator: RunningEmulator, directory: Path, registration_id: str) -> None:
    """settings.json for a device the hub holds, as a previous run left it; and secrets.json."""
    secrets = device_secrets(registration_id)
    hubs = emulator.emulator.hubs
    assert hubs is not None
    emulator.call(
        lambda: hubs.upsert_device(
            HUBS[0],
            registration_id,
            primary_key=secrets.primary_key,
            secondary_key=secrets.secondary_key,
            twin=None,
        )
    )
    settings = DeviceSettings.for_device(
        hub=HUBS[0],
        device_id=registration_id,
        primary_key=secrets.primary_key,
        secondary_key=secrets.secondary_key,
        payload=None,
    )
    write_settings(directory / "settings.json", settings)
    write_secrets(directory / "secrets.json", secrets)


def test_hub_refusing_again_after_reprovisioning_exits_1_without_a_second_round(
    emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hub forgets the device before every connect: one re-provisioning, then exit 1."""
    preinstall(emulator, tmp_path, "sim-once-001")
    hubs = emulator.emulator.hubs
    assert hubs is not None
    calls = {"connect": 0, "register": 0}

    async def forgetting_connect(settings: DeviceSettings, *args: Any, **kwargs: Any) -> Any:
        calls["connect"] += 1
        hub, device = settings.assigned_hub, settings.device_id
        if emulator.call(lambda: hubs.hub(hub).device(device)) is not None:
            emulator.call(lambda: hubs.delete_device(hub, device))
        return await real_connect(settings, *args, **kwargs)

    async def counted_register(*args: Any, **kwargs: Any) -> Any:
        calls["register"] += 1
        return await real_register(*args, **kwargs)

    monkeypatch.setattr(simulator.run_cli, "connect", forgetting_connect)
    monkeypatch.setattr(simulator.run_cli, "register", counted_register)
    assert main(run_args(emulator, tmp_path, "--messages", "1")) == 1
    out, err = capsys.readouterr()
    assert calls == {"connect": 2, "register": 1}
    assert out.count("provisioning once more") == 1
    assert out.count("dps: registered with the primary key") == 1
    assert "refused device 'sim-once-001' with both connection strings" in err
    assert "done" not in out.splitlines()


def test_unreachable_hub_exits_1_naming_the_hub(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """settings.json but no listener at the gateway: exit 1, 'cannot connect to <hub>'."""
    preinstall(emulator, tmp_path, "sim-gone-001")
    args = run_args(emulator, tmp_path, "--messages", "1")
    args[args.index("--gateway") + 1] = NOBODY
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert f"run: error: hub: cannot connect to {HUBS[0]}" in err
    assert "done" not in out.splitlines()


def test_unreachable_dps_exits_1_naming_dps(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """secrets.json only and no listener at the gateway: exit 1, 'cannot reach' the DPS host."""
    secrets = device_secrets("sim-gone-002")
    write_secrets(tmp_path / "secrets.json", secrets)
    args = run_args(emulator, tmp_path, "--messages", "1")
    args[args.index("--gateway") + 1] = NOBODY
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert f"run: error: dps: cannot reach {secrets.provisioning_host}" in err
    assert not (tmp_path / "settings.json").exists()
    assert "done" not in out.splitlines()
