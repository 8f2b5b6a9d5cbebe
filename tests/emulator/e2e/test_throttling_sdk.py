"""Throttling with the real SDK on 127.56.1.1: DPS answers 429 + retry-after and the
ProvisioningDeviceClient registers after retrying; a hub answers CONNACK 3 and `simulator fleet`
retries the connection and reports it as a throttled retry, not a failure."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from emulator.__main__ import main as emulator_main
from emulator.quotas.limits import Kind
from sas import derive_device_key
from simulator.__main__ import main
from tests.emulator.e2e.harness import (
    HEATPUMPS,
    TOASTERS,
    RunningEmulator,
    emulator_toml,
    options,
    register,
)
from tests.scripted_webhook import ScriptedWebhook

pytestmark = pytest.mark.e2e

BIND = "127.56.1.1"
SLOW_KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
FLEET_PRIMARY = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
FLEET_SECONDARY = "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ="
# One allocation at a time, each held 1 s by the webhook; one new hub connection every 2 s.
QUOTAS = """
[quotas]
dps_max_assigning = 1
hub_connections_per_second = 0.5

[faults.dps]
webhook_latency = 1.0
"""


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """DPS with a slow custom group and a hashed one, under small quotas; time scale 0.3 makes
    DPS's retry-after 1 s."""
    with ScriptedWebhook(
        BIND, by_path={"/api/allocate": [(200, {"iotHubHostName": TOASTERS})]}
    ) as hook:
        config = emulator_toml(
            groups=[
                {
                    "id": "slow",
                    "primary_key": SLOW_KEY,
                    "secondary_key": FLEET_SECONDARY,
                    "allocation": "custom",
                    "webhook_url": hook.url,
                },
                {
                    "id": "fleet",
                    "primary_key": FLEET_PRIMARY,
                    "secondary_key": FLEET_SECONDARY,
                    "allocation": "hashed",
                },
            ]
        )
        run_options = options(
            tmp_path_factory.mktemp("throttling"), BIND, config + QUOTAS, time_scale=0.3
        )
        with RunningEmulator(run_options) as running:
            yield running


def test_a_throttled_registration_is_retried_by_the_sdk_and_assigned(
    emulator: RunningEmulator,
) -> None:
    """Two devices register at once while DPS takes one allocation at a time: the second gets
    429 (retry-after 1) until the first is done, and the SDK's register() still returns
    `assigned` for both."""
    results: dict[str, Any] = {}

    def provision(registration_id: str) -> None:
        key = derive_device_key(SLOW_KEY, registration_id)
        results[registration_id] = register(emulator, registration_id, key)

    threads = [threading.Thread(target=provision, args=(f"slow-{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == ["slow-1", "slow-2"]
    for result in results.values():
        assert result.status == "assigned"
        assert result.registration_state.assigned_hub == TOASTERS
    quotas = emulator.emulator.quotas
    assert quotas is not None
    assert emulator.call(lambda: quotas.refused[Kind.DPS_ASSIGNING]) >= 1


def test_the_fleet_retries_a_hub_connack_3_and_reports_it_apart_from_failures(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Four devices, one new hub connection every 2 s: CONNACK 3 for the others, retried by
    the fleet with backoff; every device succeeds and the summary counts the retries."""
    env = {"DPS_GROUP_PRIMARY_KEY": FLEET_PRIMARY, "DPS_GROUP_SECONDARY_KEY": FLEET_SECONDARY}
    args = ["fleet", "--local", "--state-dir", str(emulator.emulator.options.state_dir)]
    args += ["--gateway", BIND, "--count", "4", "--concurrency", "4", "--prefix", "busy-"]
    code = main(args, env)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "4/4 device(s)" in out
    assert "failures: none" in out
    retried = re.search(r"^hub: CONNACK 3, retried by the fleet +(\d+)$", out, re.MULTILINE)
    assert retried is not None, out
    quotas = emulator.emulator.quotas
    assert quotas is not None
    refused = emulator.call(lambda: quotas.refused[Kind.HUB_CONNECTIONS])
    assert int(retried.group(1)) == refused >= 1
    placed = [
        device
        for hub in (TOASTERS, HEATPUMPS)
        for device in emulator.call(lambda h=hub: emulator.emulator.hub(h).device_ids())
        if device.startswith("busy-")
    ]
    assert len(placed) == 4


def test_status_counts_the_requests_each_quota_refused(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m emulator status` says how many requests were refused, by rule (only the rules
    that refused some)."""
    quotas = emulator.emulator.quotas
    assert quotas is not None
    # Two connection decisions in a row: the quota (one every 2 s) refuses at least the second.
    emulator.call(lambda: [quotas.hub_connect(TOASTERS, time.time()) for _ in range(2)])
    assert emulator_main(["status", "--state-dir", str(emulator.emulator.options.state_dir)]) == 0
    out = capsys.readouterr().out
    refused = emulator.call(lambda: {kind.value: n for kind, n in quotas.refused.items() if n})
    line = next(line for line in out.splitlines() if line.startswith("throttled: "))
    assert line.startswith(f"throttled: {sum(refused.values())} request(s) refused (")
    for kind, count in refused.items():
        assert f"{kind} {count}" in line
    assert "hub_twin_reads_per_second" not in line
