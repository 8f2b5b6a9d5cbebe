"""The key-rotation drill from the symmetric-key sample, end to end against the emulator on
127.45.2.1: roll the group primary key, then both, and watch what `simulator run` does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.__main__ import main
from simulator.secrets_file import derive_secrets
from tests.emulator.e2e.harness import RunningEmulator, options
from tests.simulator.local_cloud import (
    CONFIG,
    DPS_HOST,
    GROUP,
    ID_SCOPE,
    device_secrets,
    regenerate_group_key,
    run_args,
    secrets_in,
    write_secrets,
)

pytestmark = pytest.mark.e2e

BIND = "127.45.2.1"
DEVICE = "drill-toaster-001"


@pytest.fixture
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """A fresh emulator: the drill changes the group's keys."""
    with RunningEmulator(options(tmp_path_factory.mktemp("drill"), BIND, CONFIG)) as running:
        yield running


def test_key_rotation_drill(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Settings survive a primary roll; without them the secondary key wins; both rolled -> re-derive."""
    secrets = device_secrets(DEVICE)
    write_secrets(tmp_path / "secrets.json", secrets)
    settings = tmp_path / "settings.json"
    args = run_args(emulator, tmp_path, "--messages", "1")

    # 0. first start: provisioned with the primary key, settings.json written
    assert main(args) == 0
    out, _ = capsys.readouterr()
    assert "dps: registered with the primary key" in out
    assert settings.exists()

    # 1. the group primary key is regenerated; the device keeps its settings: the hub kept its keys
    new_primary = regenerate_group_key(emulator, GROUP, "primary")
    assert main(args) == 0
    out, _ = capsys.readouterr()
    assert "without provisioning" in out
    assert "dps:" not in out
    assert "with the primary connection string" in out

    # 2. settings.json deleted: DPS refuses the primary derived key, the secondary registers it;
    # DPS gave the hub identity the new primary, so the hub takes the secondary connection string
    settings.unlink()
    assert main(args) == 0
    out, _ = capsys.readouterr()
    assert "dps: the primary key was refused" in out
    assert "dps: registered with the secondary key" in out
    assert "hub: the primary connection string was refused" in out
    assert "with the secondary connection string" in out

    # 3. both group keys regenerated, settings.json gone: nothing works until keys are re-derived
    new_secondary = regenerate_group_key(emulator, GROUP, "secondary")
    settings.unlink()
    assert main(args) == 3
    out, err = capsys.readouterr()
    assert "dps: the primary key was refused" in out
    assert "dps: the secondary key was refused" in out
    assert "must be re-derived" in err
    assert not settings.exists()
    assert secrets_in(out + err, secrets) == []

    # 4. the fix: derive the device keys again from the new group keys
    fresh = derive_secrets(DPS_HOST, ID_SCOPE, DEVICE, new_primary, new_secondary)
    write_secrets(tmp_path / "secrets.json", fresh)
    assert main(args) == 0
    out, _ = capsys.readouterr()
    assert "dps: registered with the primary key" in out
    assert "with the primary connection string" in out
    assert secrets_in(out, fresh) == []
