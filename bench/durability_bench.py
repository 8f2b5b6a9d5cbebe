"""What durable acknowledgements cost: service API device creates with state in memory (baseline)
and with `--state-dir` (every create journalled and fsynced before its 200), in the same run.

The emulator runs as `python -m emulator run` in a subprocess; the load generator is this process:
`concurrency` HTTPS keep-alive connections (httpx), each creating devices one after another with
`PUT /devices/{id}` and a SAS token from `hubs.json`. Reported: creates per second and p50 / p99
latency. With many clients the journal's group commit lets concurrent creates share one fsync.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sas import generate_sas_token

ROOT = Path(__file__).resolve().parents[1]
BIND = "127.44.251.1"
MQTT_PORT = 18884
HUB = "bench.azure-devices.net"
CONFIG = f'[[hubs]]\nname = "{HUB}"\n'
KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
API = "api-version=2021-04-12"


class Emulator:
    """`python -m emulator run` in a subprocess, state in memory or journalled."""

    def __init__(self, workdir: Path, *, durable: bool) -> None:
        self.state_dir = workdir / ("durable" if durable else "memory")
        self.state_dir.mkdir()
        config = workdir / "bench.toml"
        config.write_text(CONFIG)
        command = [
            sys.executable,
            "-m",
            "emulator",
            "run",
            "--config",
            str(config),
            "--state-dir",
            str(self.state_dir),
            "--bind",
            BIND,
            "--mqtt-port",
            str(MQTT_PORT),
            "--service-port",
            "0",
            "--log-level",
            "warning",
        ]
        if not durable:
            command.append("--in-memory")
        self.process = subprocess.Popen(  # noqa: S603 -- our own interpreter and module
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.process.stdout is not None
        if "emulator ready" not in self.process.stdout.readline():
            self.close()
            raise RuntimeError("emulator did not start")
        strings = json.loads((self.state_dir / "hubs.json").read_text())
        fields = dict(part.split("=", 1) for part in strings[HUB].split(";"))
        self.base_url = f"https://{fields['HostName']}"
        self.token = generate_sas_token(
            fields["HostName"],
            fields["SharedAccessKey"],
            int(time.time()) + 3600,
            policy_name=fields["SharedAccessKeyName"],
        )

    def close(self) -> float:
        """Stop (SIGTERM: the last snapshot is written); seconds it took."""
        started = time.perf_counter()
        self.process.terminate()
        self.process.wait(120)
        return time.perf_counter() - started


async def create_devices(
    emulator: Emulator, *, concurrency: int, each: int, prefix: str = "dev"
) -> list[float]:
    """Latencies (s) of `concurrency * each` creates, `concurrency` connections at a time."""
    latencies: list[float] = []

    async def worker(number: int) -> None:
        async with httpx.AsyncClient(
            base_url=emulator.base_url,
            verify=str(emulator.state_dir / "ca.pem"),
            headers={"Authorization": emulator.token},
        ) as client:
            for index in range(each):
                device_id = f"{prefix}-{number}-{index}"
                body = {
                    "deviceId": device_id,
                    "status": "enabled",
                    "authentication": {
                        "type": "sas",
                        "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY},
                    },
                }
                started = time.perf_counter()
                response = await client.put(f"/devices/{device_id}?{API}", json=body)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"create answered {response.status_code}")

    await asyncio.gather(*(worker(number) for number in range(concurrency)))
    return latencies


def measure(workdir: Path, *, durable: bool, concurrency: int, each: int) -> dict[str, float]:
    emulator = Emulator(workdir, durable=durable)
    try:
        asyncio.run(create_devices(emulator, concurrency=4, each=25, prefix="warm"))
        started = time.perf_counter()
        latencies = asyncio.run(create_devices(emulator, concurrency=concurrency, each=each))
        elapsed = time.perf_counter() - started
    finally:
        stop_seconds = emulator.close()
    latencies.sort()
    return {
        "rate": len(latencies) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "stop": stop_seconds,
        "count": len(latencies),
    }


def sync_micros(directory: Path, count: int = 200) -> float:
    """What one journal batch costs the disk here: a small write and an fdatasync."""
    path = directory / "probe"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        started = time.perf_counter()
        for _ in range(count):
            os.write(descriptor, b"x" * 200 + b"\n")
            os.fdatasync(descriptor)
        return (time.perf_counter() - started) / count * 1e6
    finally:
        os.close(descriptor)
        path.unlink()


def run(*, quick: bool = False) -> str:
    total = 128 if quick else 640
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        disk = sync_micros(Path(directory))
        for concurrency in (1, 32):
            for durable in (False, True):
                workdir = Path(directory) / f"{concurrency}-{durable}"
                workdir.mkdir()
                result = measure(
                    workdir, durable=durable, concurrency=concurrency, each=total // concurrency
                )
                rows.append((concurrency, durable, result))
    lines = [
        "### Durable acknowledgements (service API device creates, HTTPS keep-alive, 2 cores)",
        "",
        "| clients | state | creates | creates/s | p50 ms | p99 ms | vs in memory |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    baseline: dict[int, float] = {}
    for concurrency, durable, result in rows:
        if not durable:
            baseline[concurrency] = result["rate"]
        label = "journalled, fsync before the ack" if durable else "in memory (baseline)"
        lines.append(
            f"| {concurrency} | {label} | {result['count']:.0f} | {result['rate']:.0f} | "
            f"{result['p50']:.2f} | {result['p99']:.2f} | "
            f"{result['rate'] / baseline[concurrency]:.2f}x |"
        )
    lines += ["", f"One 200-byte write and fdatasync on this run's disk: {disk:.0f} µs."]
    return "\n".join(lines)
