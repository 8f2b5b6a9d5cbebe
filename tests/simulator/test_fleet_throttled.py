"""`python -m simulator fleet --local` as a user runs it (a subprocess, two worker processes)
against an emulator on 127.56.3.1 with small quotas: DPS throttles registrations (429 +
retry-after, retried by the SDK) and the hubs refuse connections (CONNACK 3, retried by the
fleet); every device succeeds and the summary reports the throttled retries apart from failures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.quotas.limits import Kind
from tests.emulator.e2e.harness import HEATPUMPS, TOASTERS, RunningEmulator, emulator_toml, options
from tests.scripted_webhook import ScriptedWebhook

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIND = "127.56.3.1"
PRIMARY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
SECONDARY = "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ="
COUNT = 8
QUOTAS = """
[quotas]
dps_max_assigning = 2
hub_connections_per_second = 1

[faults.dps]
webhook_latency = 0.5
"""


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """A custom-allocation group whose webhook answers after 0.5 s; DPS takes two allocations
    at a time (retry-after 1 s at time scale 0.3), each hub one new connection a second."""
    reply = (200, {"iotHubHostName": HEATPUMPS})
    with ScriptedWebhook(BIND, by_path={"/api/allocate": [reply]}) as hook:
        config = emulator_toml(
            hubs=(TOASTERS, HEATPUMPS),
            groups=[
                {
                    "id": "factory",
                    "primary_key": PRIMARY,
                    "secondary_key": SECONDARY,
                    "allocation": "custom",
                    "webhook_url": hook.url,
                }
            ],
        )
        run_options = options(
            tmp_path_factory.mktemp("fleet-throttled"), BIND, config + QUOTAS, time_scale=0.3
        )
        with RunningEmulator(run_options) as running:
            yield running


def test_fleet_under_throttling_provisions_every_device_and_reports_the_retries(
    emulator: RunningEmulator,
) -> None:
    """8 devices at once over 2 worker processes: exit 0, no failure, DPS 429s retried by the
    SDK and hub CONNACK 3s retried by the fleet, each counted as the emulator refused them."""
    env = {**os.environ, "DPS_GROUP_PRIMARY_KEY": PRIMARY, "DPS_GROUP_SECONDARY_KEY": SECONDARY}
    command = [sys.executable, "-m", "simulator", "fleet", "--local", "--gateway", BIND]
    command += ["--state-dir", str(emulator.emulator.options.state_dir), "--prefix", "sub-"]
    command += ["--count", str(COUNT), "--concurrency", str(COUNT), "--processes", "2"]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"{COUNT}/{COUNT} device(s)" in out
    assert "failures: none" in out
    assert "over 2 worker processes" in result.stderr
    quotas = emulator.emulator.quotas
    assert quotas is not None
    refused = emulator.call(lambda: dict(quotas.refused))
    dps = re.search(r"^dps: 429, retried by the SDK after retry-after +(\d+)$", out, re.M)
    hub = re.search(r"^hub: CONNACK 3, retried by the fleet +(\d+)$", out, re.M)
    assert dps is not None, out
    assert hub is not None, out
    assert int(dps.group(1)) == refused[Kind.DPS_ASSIGNING] >= 1
    assert int(hub.group(1)) == refused[Kind.HUB_CONNECTIONS] >= 1
    assert re.search(rf"^throttled retries: {int(dps.group(1)) + int(hub.group(1))} ", out, re.M)
    placed = emulator.call(lambda: emulator.emulator.hub(HEATPUMPS).device_ids())
    assert len([device for device in placed if device.startswith("sub-")]) == COUNT
