"""Fleet provisioning throughput: `simulator fleet`'s code against the emulator, devices per second.

The emulator runs as a child process (`python -m emulator`, its own core and GIL) on 127.45.250.1;
the fleet runs here with the real azure-iot-device SDK: register with DPS, connect to the hub,
send one message, disconnect. The baseline, measured in the same run, is one device at a time:
the SDK's fixed 2 s wait before its first DPS poll (docs/protocol/dps-mqtt.md §4) caps it near
0.5 devices/s. The reference line is DPS's documented ceiling of 1,000 registrations per minute
per service (docs/protocol/limits.md §1), 16.7 per second.

The fleets run as `simulator fleet` runs them (`run_spread`: 100 SDK clients per worker process)
at 100, 500 and 1,000 devices in flight. The emulator keeps its admission control but not DPS's
registration quota (`dps_registrations_per_minute = 0`): with it, every fleet after the first
would measure the quota's 16.7/s, not the emulator. Throttled retries (DPS 429s retried by the
SDK, CONNACK 3s retried by the fleet) are counted apart from failures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emulator.config import load_config
from simulator.device import Target, quiet_sdk_logs
from simulator.fleet import run_spread, summarize
from simulator.secrets_file import derive_secrets

ROOT = Path(__file__).resolve().parents[1]
BIND = "127.45.250.1"
DPS_CEILING_PER_SECOND = 1000 / 60
CONFIG = """
[dps]
id_scope = "0ne0000bench"

[[hubs]]
name = "bench-hub-1.azure-devices.net"

[[hubs]]
name = "bench-hub-2.azure-devices.net"

[[enrollment_groups]]
id = "bench"
allocation = "hashed"

[quotas]
dps_registrations_per_minute = 0
"""


def run(*, quick: bool) -> str:
    """Baseline (one at a time) and the fleet (bounded concurrency) as a Markdown table."""
    quiet_sdk_logs()
    plans = [("baseline: one device at a time", 3 if quick else 10, 1)]
    # 100 (the fleet command's default, one process), then 500 and 1,000 over worker processes.
    plans += (
        [("fleet", 50, 50), ("fleet", 200, 200)]
        if quick
        else [("fleet", 1000, 100), ("fleet", 1000, 500), ("fleet", 1000, 1000)]
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as scratch:
        config = Path(scratch) / "emulator.toml"
        config.touch(mode=0o600)
        config.write_text(CONFIG)
        state = Path(scratch) / "state"
        with _emulator(config, state):
            loaded = load_config(config)
            group = loaded.enrollment_groups[0]
            target = Target(gateway=BIND, ca_pem=(state / "ca.pem").read_text(encoding="ascii"))
            for number, (label, count, concurrency) in enumerate(plans):
                devices = [
                    derive_secrets(
                        loaded.dps.host,
                        loaded.dps.id_scope,
                        f"bench{number}-{index:05d}",
                        group.primary_key,
                        group.secondary_key,
                    )
                    for index in range(count)
                ]
                started = time.monotonic()
                ran = run_spread(devices, target, concurrency=concurrency, messages=1)
                summary = summarize(
                    ran.outcomes,
                    seconds=time.monotonic() - started,
                    dps_throttled=ran.dps_throttled,
                )
                rows.append((label, summary, concurrency))
    lines = [
        f"### Fleet provisioning against the emulator ({os.cpu_count()} CPU(s))",
        "",
        "| run | devices | concurrency | failed | throttled retries | seconds | devices/s "
        "| p50 / p99 DPS latency | vs DPS ceiling (16.7/s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, summary, concurrency in rows:
        lines.append(
            f"| {label} | {summary.devices} | {concurrency} | {summary.failed} "
            f"| {summary.throttled_retries} | {summary.seconds:.1f} | {summary.devices_per_second:.1f} "
            f"| {summary.latency_p50 or 0:.2f} s / {summary.latency_p99 or 0:.2f} s "
            f"| {summary.devices_per_second / DPS_CEILING_PER_SECOND:.2f}x |"
        )
    return "\n".join(lines)


class _emulator:
    """`python -m emulator` as a child process, ready when it prints its ready line."""

    def __init__(self, config: Path, state: Path) -> None:
        self.command = [
            sys.executable,
            "-m",
            "emulator",
            "--config",
            str(config),
            "--bind",
            BIND,
            "--state-dir",
            str(state),
        ]
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> subprocess.Popen[str]:
        self.process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            self.command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("emulator ready"):
                return self.process
        raise RuntimeError("the emulator exited before it was ready")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
