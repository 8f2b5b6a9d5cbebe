"""The local DPS itself: registrations per second with lightweight raw MQTT/TLS clients.

`python -m emulator up` runs in a subprocess (Azurite, DPS and the hubs, the Functions app hosted
with the tutorial policy), with two enrollment groups: `bench-hashed` (DPS's own hashed
allocation) and `bench-custom` (custom allocation: DPS calls the hosted app's webhook over HTTP,
which decides with the policy and writes its two Table requests to Azurite). The load generator is
this process: `concurrency` asyncio clients, each registering devices one after another over its
own TLS connection as DPS's MQTT API expects (CONNECT with a SAS token from the group key, SUBSCRIBE
to the replies, PUBLISH register, then PUBLISH a poll 50 ms after each 202 — no SDK and no fixed
2-second wait before the first poll, so what is measured is the emulator; a 429 is obeyed).

Reported per allocation: registrations per second and p50 / p99 latency from the TCP connect to the
`assigned` reply, against DPS's documented ceiling (1,000 registrations per minute per service,
16.7 per second) in the same units. Everything (generator, emulator, Azurite) shares the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from bench import procs
from emulator.mqtt import (
    Connack,
    Connect,
    NeedMoreData,
    Puback,
    Publish,
    Subscribe,
    decode,
    encode,
)
from sas import derive_device_key, generate_sas_token

ROOT = Path(__file__).resolve().parents[1]
BIND = "127.44.252.1"
MQTT_PORT = 18885
FUNCTIONS_PORT = 17072
ID_SCOPE = "0ne00000bench"
GROUP_KEYS = {  # one key per group: DPS finds a device's group by the key it was derived from
    "bench-hashed": "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY=",
    "bench-custom": "OSANXEslinwdWI7CugTZIIMS97VdG65m3pD753neq7E=",
}
DPS_CEILING_PER_SECOND = 1000 / 60  # registrations per minute per DPS service (service limits)
API_VERSION = "2019-03-31"
# While DPS is assigning, poll again after this long instead of the `retry-after` the SDKs obey
# (whole seconds): short enough to measure DPS rather than the wait, long enough not to flood it.
POLL_INTERVAL = 0.05
# Ids the tutorial policy admits (toasters and heat pumps), so custom allocation assigns them.
ID_TEMPLATES = ("bench{n}-contoso-tstrsd-007", "bench{n}-contoso-hpsd-088")


def config_text() -> str:
    hubs = ["contoso-toasters-hub.azure-devices.net", "contoso-heatpumps-hub.azure-devices.net"]
    webhook = f"http://{BIND}:{FUNCTIONS_PORT}/api/allocate?code=local-dev-key"
    tables = [f'[dps]\nid_scope = "{ID_SCOPE}"\n']
    tables += [f'[[hubs]]\nname = "{hub}"\n' for hub in hubs]
    for group, allocation in (("bench-hashed", "hashed"), ("bench-custom", "custom")):
        entry = (
            f'[[enrollment_groups]]\nid = "{group}"\nallocation = "{allocation}"\n'
            f'primary_key = "{GROUP_KEYS[group]}"\nsecondary_key = "{GROUP_KEYS[group]}"\n'
        )
        if allocation == "custom":
            entry += f'webhook_url = "{webhook}"\n'
        tables.append(entry)
    # The local DPS's own capacity is measured against DPS's ceiling: without the quotas that
    # would enforce that ceiling (and 429s the raw clients here do not retry).
    tables.append("[quotas]\nenabled = false\n")
    return "\n".join(tables)


class LocalCloud:
    """`python -m emulator up` in a subprocess, with its own state, config and settings."""

    def __init__(self, workdir: Path) -> None:
        self.state_dir = workdir / "state"
        config = workdir / "bench.toml"
        config.touch(mode=0o600)
        config.write_text(config_text())
        settings = workdir / "local.settings.json"
        shutil.copy(ROOT / "local.settings.sample.json", settings)
        self._log = (workdir / "up.log").open("w")
        self.process = subprocess.Popen(  # noqa: S603 -- our own interpreter and module
            [
                sys.executable,
                "-m",
                "emulator",
                "up",
                "--state-dir",
                str(self.state_dir),
                "--config",
                str(config),
                "--settings",
                str(settings),
                "--bind",
                BIND,
                "--mqtt-port",
                str(MQTT_PORT),
                "--functions-port",
                str(FUNCTIONS_PORT),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while not (self.state_dir / "admin.json").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the local cloud did not start (see {self._log.name})")
            time.sleep(0.1)

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.state_dir / "ca.pem")
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds so far of the emulator's process, and of the processes below it (Azurite)."""
        below = 0.0
        for pid in procs.descendants(self.process.pid):
            with contextlib.suppress(OSError):
                below += procs.cpu_seconds(pid)
        return procs.cpu_seconds(self.process.pid), below

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    throttled: int = 0


def opening(registration_id: str, group_key: str) -> bytes:
    """CONNECT with the device's SAS token, SUBSCRIBE to DPS's replies, PUBLISH the register."""
    resource = f"{ID_SCOPE}/registrations/{registration_id}"
    token = generate_sas_token(
        resource,
        derive_device_key(group_key, registration_id),
        int(time.time()) + 3600,
        policy_name="registration",
    )
    connect = Connect(
        client_id=registration_id,
        username=f"{resource}/api-version={API_VERSION}",
        password=token.encode(),
        clean_session=True,
        keep_alive=60,
    )
    body = json.dumps({"registrationId": registration_id}).encode()
    register = Publish(
        topic="$dps/registrations/PUT/iotdps-register/?$rid=1", payload=body, qos=1, packet_id=2
    )
    subscribe = Subscribe(1, (("$dps/registrations/res/#", 1),))
    return encode(connect) + encode(subscribe) + encode(register)


class Registrar:
    """One raw MQTT/TLS connection per registration, as a device would."""

    def __init__(self, context: ssl.SSLContext, results: Results, group_key: str) -> None:
        self.context = context
        self.results = results
        self.group_key = group_key

    async def register(self, registration_id: str) -> None:
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection(BIND, MQTT_PORT, ssl=self.context)
        buffer = bytearray()

        async def read_packet() -> Any:
            while True:
                try:
                    packet, used = decode(buffer)
                except NeedMoreData:
                    data = await reader.read(65536)
                    if not data:
                        raise ConnectionError("closed by DPS") from None
                    buffer.extend(data)
                    continue
                del buffer[:used]
                return packet

        try:
            writer.write(opening(registration_id, self.group_key))
            rid, packet_id = 1, 2
            while True:
                packet = await read_packet()
                if isinstance(packet, Connack) and packet.return_code != 0:
                    raise ConnectionError(f"CONNACK {packet.return_code}")
                if not isinstance(packet, Publish):
                    continue
                if packet.qos:
                    writer.write(encode(Puback(packet.packet_id or 0)))
                status = int(packet.topic.split("/")[3])
                reply = json.loads(packet.payload or b"{}")
                query = parse_qs(packet.topic.partition("?")[2])
                if status == 429:
                    self.results.throttled += 1
                if status in (202, 429) or reply.get("status") == "assigning":
                    retry_after = float(query.get("retry-after", ["0"])[0])
                    await asyncio.sleep(min(retry_after, 5.0) if status == 429 else POLL_INTERVAL)
                    rid, packet_id = rid + 1, packet_id % 65535 + 1
                    operation = reply.get("operationId", "")
                    poll = (
                        f"$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}"
                        f"&operationId={operation}"
                    )
                    writer.write(
                        encode(Publish(topic=poll, payload=b"", qos=1, packet_id=packet_id))
                    )
                    continue
                if status == 200 and reply.get("status") == "assigned":
                    self.results.latencies.append(time.perf_counter() - started)
                else:
                    self.results.failed.append(f"{registration_id}: {status} {reply}")
                return
        finally:
            writer.close()


async def drive(
    cloud: LocalCloud, group: str, *, count: int, concurrency: int, prefix: str = ""
) -> tuple[Results, float]:
    results = Results()
    registrar = Registrar(cloud.context(), results, GROUP_KEYS[group])
    tag = group.removeprefix("bench-")
    ids = [ID_TEMPLATES[n % 2].format(n=f"{tag}{prefix}{n}") for n in range(count)]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for registration_id in ids:
        queue.put_nowait(registration_id)

    async def worker() -> None:
        while not queue.empty():
            registration_id = queue.get_nowait()
            try:
                await asyncio.wait_for(registrar.register(registration_id), 60)
            except (OSError, ssl.SSLError, TimeoutError, ValueError) as error:
                results.failed.append(f"{registration_id}: {type(error).__name__} {error}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, time.perf_counter() - started


def run(*, quick: bool = False) -> str:
    count = 200 if quick else 2000
    concurrency = 50
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        cloud = LocalCloud(Path(directory))
        try:
            for group, label in (
                ("bench-hashed", "hashed"),
                ("bench-custom", "custom, webhook + Azurite"),
            ):
                asyncio.run(drive(cloud, group, count=20, concurrency=10, prefix="w"))  # warm up
                before = cloud.cpu_seconds(), time.process_time()
                results, seconds = asyncio.run(
                    drive(cloud, group, count=count, concurrency=concurrency)
                )
                after = cloud.cpu_seconds(), time.process_time()
                per = max(1, len(results.latencies))
                cpu = (
                    (after[0][0] - before[0][0]) / per * 1000,
                    (after[0][1] - before[0][1]) / per * 1000,
                    (after[1] - before[1]) / per * 1000,
                )
                rows.append((label, results, seconds, cpu))
        finally:
            cloud.close()
    lines = [
        f"### Local DPS, raw MQTT/TLS clients ({count} registrations each, {concurrency} at a time, "
        f"{os.cpu_count()} cores shared by clients, emulator and Azurite)",
        "",
        "| allocation | assigned | failed | throttled (429) | registrations/s | p50 ms | p99 ms "
        "| vs DPS ceiling (16.7/s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, results, seconds, _ in rows:
        latencies = sorted(results.latencies) or [float("nan")]
        rate = len(results.latencies) / seconds
        p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
        lines.append(
            f"| {label} | {len(results.latencies)} | {len(results.failed)} | {results.throttled} "
            f"| {rate:.0f} | {statistics.median(latencies) * 1000:.1f} | {p99 * 1000:.1f} "
            f"| {rate / DPS_CEILING_PER_SECOND:.1f}x |"
        )
    lines += [
        "",
        "CPU per registration (from /proc around the timed run):",
        "",
        "| allocation | emulator (DPS, hubs, hosted app) | Azurite | the bench's clients |",
        "|---|---:|---:|---:|",
    ]
    for label, results, seconds, (emulator_ms, azurite_ms, client_ms) in rows:
        busy = emulator_ms * len(results.latencies) / seconds / 10  # ms x per second / 1000 x 100
        lines.append(
            f"| {label} | {emulator_ms:.2f} ms ({busy:.0f} % of a core) | {azurite_ms:.2f} ms "
            f"| {client_ms:.2f} ms |"
        )
    return "\n".join(lines)
