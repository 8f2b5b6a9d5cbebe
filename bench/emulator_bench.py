"""The emulator at scale: connections held, telemetry messages per second, memory per device.

The emulator runs as `python -m emulator run` in a subprocess (so its RSS and CPU are its own),
with N device identities put in its hub through `--state-dir` (a state.json written with
`emulator.persistence.writer`). The load generator is this process: raw MQTT 3.1.1 over TLS with the
project's own codec (`emulator.mqtt`), one asyncio connection per device, each CONNECTing with a
SAS token and then publishing QoS 1 telemetry once a second; PUBACKs are counted. Not N SDK
clients: the SDK costs a thread pool per client and would measure itself.

Baselines from the same run: the RSS of an emulator with no devices, of one holding N idle
identities, and the message rate of a single client keeping 100 QoS 1 messages in flight.
The soft fd limit is raised to the hard limit for the generator (the emulator inherits it).
"""

from __future__ import annotations

import asyncio
import os
import resource
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import procs
from emulator.hub.registry import DeviceIdentity
from emulator.hub.twin import TwinDocument
from emulator.mqtt import Connack, Connect, NeedMoreData, Puback, Publish, decode, encode
from emulator.persistence.document import DeviceState, Snapshot
from emulator.persistence.writer import write_state
from sas import generate_sas_token

ROOT = Path(__file__).resolve().parents[1]
BIND = "127.44.250.1"
PORT = 18883
HUB = "bench.azure-devices.net"
KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
# Capacity is what is measured: without the hub's quotas (100 new connections a second would
# pace the 2,000 connects, and the raw clients here do not retry a CONNACK 3).
CONFIG = f'[[hubs]]\nname = "{HUB}"\n\n[quotas]\nenabled = false\n'
PAYLOAD = b'{"temperature": 21.5, "humidity": 40}'


@dataclass
class Counters:
    connected: int = 0
    acked: int = 0
    failed: int = 0


class Emulator:
    """`python -m emulator run` in a subprocess with `devices` identities in its hub."""

    def __init__(self, workdir: Path, devices: int, *, bind: str = BIND, port: int = PORT) -> None:
        self.state_dir = workdir / f"state-{devices}"
        self.state_dir.mkdir()
        config = workdir / "bench.toml"
        config.write_text(CONFIG)
        now = time.time()
        states = tuple(
            DeviceState(
                DeviceIdentity(device_id=f"dev-{n:05d}", primary_key=KEY, secondary_key=KEY),
                TwinDocument.new(None, now=now),
            )
            for n in range(devices)
        )
        write_state(self.state_dir / "state.json", Snapshot(hubs={HUB: states}))
        self._log = (workdir / f"emulator-{devices}.log").open("w")
        self.process = subprocess.Popen(  # noqa: S603 -- our own interpreter and module
            [
                sys.executable,
                "-m",
                "emulator",
                "run",
                "--config",
                str(config),
                "--state-dir",
                str(self.state_dir),
                "--bind",
                bind,
                "--mqtt-port",
                str(port),
                "--service-port",
                "0",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "emulator ready" not in line:
            self.close()
            raise RuntimeError(f"emulator did not start: {line!r} (see {self._log.name})")

    def rss_mib(self) -> float:
        return procs.rss_mib(self.process.pid)

    def cpu_seconds(self) -> float:
        return procs.cpu_seconds(self.process.pid)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self._log.close()


class Device:
    """One raw MQTT/TLS device connection."""

    def __init__(self, device_id: str, counters: Counters) -> None:
        self.device_id = device_id
        self.counters = counters
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.buffer = bytearray()
        self.next_id = 1

    async def connect(self, context: ssl.SSLContext) -> None:
        self.reader, self.writer = await asyncio.open_connection(BIND, PORT, ssl=context)
        token = generate_sas_token(f"{HUB}/devices/{self.device_id}", KEY, int(time.time()) + 3600)
        self.writer.write(
            encode(
                Connect(
                    client_id=self.device_id,
                    username=f"{HUB}/{self.device_id}/?api-version=2021-04-12",
                    password=token.encode(),
                    clean_session=False,
                    keep_alive=300,
                )
            )
        )
        packet = await self.read_packet()
        if not isinstance(packet, Connack) or packet.return_code != 0:
            raise RuntimeError(f"{self.device_id}: refused {packet!r}")
        self.counters.connected += 1

    async def read_packet(self) -> object:
        assert self.reader is not None
        while True:
            try:
                packet, used = decode(self.buffer)
            except NeedMoreData:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("closed by the emulator") from None
                self.buffer += data
                continue
            del self.buffer[:used]
            return packet

    def publish(self) -> None:
        assert self.writer is not None
        topic = f"devices/{self.device_id}/messages/events/"
        self.writer.write(
            encode(Publish(topic=topic, payload=PAYLOAD, qos=1, packet_id=self.next_id))
        )
        self.next_id = self.next_id % 65535 + 1

    async def count_acks(self) -> None:
        try:
            while True:
                if isinstance(await self.read_packet(), Puback):
                    self.counters.acked += 1
        except (ConnectionError, ssl.SSLError):
            self.counters.connected -= 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def client_context(state_dir: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=state_dir / "ca.pem")
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def single_client_rate(context: ssl.SSLContext, seconds: float) -> float:
    """Messages per second one connection gets acknowledged with 100 in flight."""
    counters = Counters()
    device = Device("dev-00000", counters)
    await device.connect(context)
    acks = asyncio.create_task(device.count_acks())
    window, sent = 100, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        while sent - counters.acked < window:
            device.publish()
            sent += 1
        await asyncio.sleep(0)
        assert device.writer is not None
        await device.writer.drain()
        await asyncio.sleep(0.001)
    rate = counters.acked / (time.perf_counter() - started)
    acks.cancel()
    device.close()
    return rate


async def fleet(
    emulator: Emulator, context: ssl.SSLContext, count: int, seconds: float
) -> dict[str, float]:
    """Connect `count` devices, measure RSS, then 1 message/s each for `seconds`."""
    counters = Counters()
    devices = [Device(f"dev-{n:05d}", counters) for n in range(count)]
    gate = asyncio.Semaphore(100)

    async def connect(device: Device) -> None:
        async with gate:
            try:
                await device.connect(context)
            except (OSError, RuntimeError, ConnectionError):
                counters.failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(connect(device) for device in devices))
    connect_seconds = time.perf_counter() - started
    await asyncio.sleep(1)
    rss_connected = emulator.rss_mib()
    live = [device for device in devices if device.writer is not None]
    readers = [asyncio.create_task(device.count_acks()) for device in live]
    cpu_before, started = emulator.cpu_seconds(), time.perf_counter()
    sent = 0
    for tick in range(int(seconds)):
        for index, device in enumerate(live):  # spread each second's messages over the second
            device.publish()
            sent += 1
            if index % 200 == 199:
                await asyncio.sleep(0.9 / max(1, len(live) // 200))
        await asyncio.sleep(max(0.0, started + tick + 1 - time.perf_counter()))
    await asyncio.sleep(1)  # the last acknowledgements
    elapsed = time.perf_counter() - started
    cpu = (emulator.cpu_seconds() - cpu_before) / elapsed
    held = counters.connected
    for reader in readers:
        reader.cancel()
    for device in live:
        device.close()
    return {
        "connect_seconds": connect_seconds,
        "failed": counters.failed,
        "held": held,
        "rss_connected": rss_connected,
        "rate": counters.acked / elapsed,
        "acked": counters.acked,
        "sent": sent,
        "cpu": cpu * 100,
    }


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run(*, quick: bool = False) -> str:
    count = 500 if quick else 2000
    seconds = 5 if quick else 20
    limit = raise_fd_limit(2 * count + 200)
    if limit < 2 * count + 200:
        return f"emulator bench skipped: the fd limit is {limit}, {2 * count + 200} needed"
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        empty = Emulator(workdir, 0)
        rss_empty = empty.rss_mib()
        empty.close()
        emulator = Emulator(workdir, count)
        try:
            rss_idle = emulator.rss_mib()
            context = client_context(emulator.state_dir)
            single = asyncio.run(single_client_rate(context, 2.0 if quick else 5.0))
            time.sleep(0.5)
            result = asyncio.run(fleet(emulator, context, count, seconds))
        finally:
            emulator.close()
    per_identity = (rss_idle - rss_empty) * 1024 / count
    per_connection = (result["rss_connected"] - rss_idle) * 1024 / count
    lines = [
        f"### Emulator at scale ({count} devices, 1 QoS 1 message/s each for {seconds} s, "
        f"{os.cpu_count()} cores)",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| RSS, emulator with no devices (baseline) | {rss_empty:.1f} MiB |",
        f"| RSS, {count} identities + twins, none connected | {rss_idle:.1f} MiB |",
        f"| RSS, {count} connected (TLS) | {result['rss_connected']:.1f} MiB |",
        f"| memory per identity + twin | {per_identity:.1f} KiB |",
        f"| memory per connected device (TLS session, MQTT engine, session) | {per_connection:.1f} KiB |",
        f"| connections made / held at the end / failed | {count - int(result['failed'])} / {int(result['held'])} / {int(result['failed'])} |",
        f"| time to connect all ({100} at a time) | {result['connect_seconds']:.1f} s |",
        f"| telemetry acknowledged, whole fleet | {result['rate']:.0f} msg/s "
        f"({int(result['acked'])} of {int(result['sent'])} sent) |",
        f"| emulator CPU during the fleet's telemetry | {result['cpu']:.0f} % of one core |",
        f"| single client, 100 in flight (baseline) | {single:.0f} msg/s |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
