"""10,000 connected devices: the emulator's memory per device and CPU at one message/s each.

The emulator runs as `python -m emulator run` in a subprocess (`emulator_bench.Emulator`: its hub
holds the devices' identities), so its RSS and CPU are its own. The devices are raw MQTT 3.1.1
clients over TLS (the project's own codec, as in `emulator_bench`; not the SDK, whose thread pool
per client would measure itself), spread over `CLIENT_PROCESSES` processes, each from its own
loopback source address (one address would do: the emulator takes 16,384 connections from one,
and the kernel has 28,000 ephemeral ports per source address).

Each client process connects its devices with at most `CONNECT_WINDOW` connects in progress, so
the fleet connects as fast as the emulator answers. A connect the emulator refuses for now (TCP
refused or reset, a TLS handshake cut off, CONNACK 3 "server unavailable") is retried after a
backoff and counted apart: throttled (CONNACK 3) or refused; only a device never connected within
`CONNECT_DEADLINE`, or refused for good (another CONNACK code), is a failure. Once every process has
connected its share, all devices publish one QoS 1 message per second each, spread over the
second, for the run's duration; PUBACKs are counted.

Reported for the full fleet and, as the baseline from the same run, for a tenth of it: RSS (empty
emulator, identities loaded, devices connected) and memory per connected device, connect time and
rate, retries, failures, messages acknowledged per second, the emulator's CPU, and its CPU per
message. The emulator and the client processes share the machine's cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.emulator_bench import HUB, KEY, PAYLOAD, Emulator, raise_fd_limit
from emulator.mqtt import Connack, Connect, NeedMoreData, Puback, Publish, decode, encode
from sas import generate_sas_token

ROOT = Path(__file__).resolve().parents[1]
BIND = "127.57.250.1"
PORT = 18887
SOURCES = tuple(f"127.57.251.{n}" for n in range(1, 9))
CLIENT_PROCESSES = 4
CONNECT_WINDOW = 32  # connects in progress per client process
CONNECT_DEADLINE = 300.0  # seconds a device keeps retrying before it counts as failed
SERVER_UNAVAILABLE = 3  # CONNACK 3: IoT Hub's "try again later"


@dataclass
class Tally:
    connected: int = 0
    failed: int = 0
    throttled: int = 0
    refused: int = 0
    acked: int = 0
    sent: int = 0
    dropped: int = 0


class Device:
    """One raw MQTT/TLS device connection, from a given source address."""

    def __init__(self, device_id: str, tally: Tally) -> None:
        self.device_id = device_id
        self.tally = tally
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.buffer = bytearray()
        self.next_id = 1

    async def connect(self, context: ssl.SSLContext, source: str) -> None:
        """Connect until accepted, retrying what the emulator refuses for now."""
        deadline = time.monotonic() + CONNECT_DEADLINE
        backoff = 0.1
        while True:
            try:
                code = await asyncio.wait_for(self._attempt(context, source), 30)
            except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
                self.tally.refused += 1
                code = None
            if code == 0:
                self.tally.connected += 1
                return
            self.close()
            self.reader = self.writer = None
            self.buffer.clear()
            if code is not None and code != SERVER_UNAVAILABLE:
                self.tally.failed += 1
                return
            if code == SERVER_UNAVAILABLE:
                self.tally.throttled += 1
            if time.monotonic() + backoff > deadline:
                self.tally.failed += 1
                return
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 5.0)

    async def _attempt(self, context: ssl.SSLContext, source: str) -> int:
        self.reader, self.writer = await asyncio.open_connection(
            BIND, PORT, ssl=context, local_addr=(source, 0)
        )
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
        if not isinstance(packet, Connack):
            raise ConnectionError(f"expected CONNACK, got {type(packet).__name__}")
        return int(packet.return_code)

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
        self.tally.sent += 1

    async def count_acks(self) -> None:
        try:
            while True:
                if isinstance(await self.read_packet(), Puback):
                    self.tally.acked += 1
        except (ConnectionError, ssl.SSLError):
            self.tally.dropped += 1
            self.writer = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def client_process(first: int, count: int, source: str, ca_file: str) -> None:
    """One client process: connect devices `first`..`first + count`, then telemetry on `go`.

    Talks to the parent with one JSON line per phase on stdout; reads `go <seconds>` and `stop`
    lines on stdin.
    """
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    tally = Tally()
    devices = [Device(f"dev-{n:05d}", tally) for n in range(first, first + count)]
    window = asyncio.Semaphore(CONNECT_WINDOW)

    async def connect(device: Device) -> None:
        async with window:
            await device.connect(context, source)

    started = time.perf_counter()
    await asyncio.gather(*(connect(device) for device in devices))
    report(
        phase="connected",
        seconds=time.perf_counter() - started,
        connected=tally.connected,
        failed=tally.failed,
        throttled=tally.throttled,
        refused=tally.refused,
    )
    loop = asyncio.get_running_loop()
    command = await loop.run_in_executor(None, sys.stdin.readline)
    seconds = int(command.split()[1])
    live = [device for device in devices if device.writer is not None]
    readers = [asyncio.create_task(device.count_acks()) for device in live]
    cpu_before, started = time.process_time(), time.perf_counter()
    batches = 20  # each second's messages go out in 20 batches, 50 ms apart
    for tick in range(seconds):
        for batch in range(batches):
            for device in live[batch::batches]:
                if device.writer is not None:
                    device.publish()
            due = started + tick + (batch + 1) / batches
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
    sending = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    await asyncio.sleep(2)  # the last acknowledgements
    report(
        phase="telemetry",
        seconds=sending,
        sent=tally.sent,
        acked=tally.acked,
        held=sum(1 for device in live if device.writer is not None),
        dropped=tally.dropped,
        cpu=cpu,
    )
    await loop.run_in_executor(None, sys.stdin.readline)
    for reader in readers:
        reader.cancel()
    for device in devices:
        device.close()


def report(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


class Clients:
    """`CLIENT_PROCESSES` client processes sharing `count` devices."""

    def __init__(self, count: int, ca_file: Path) -> None:
        share = -(-count // CLIENT_PROCESSES)
        self.processes = []
        for index in range(CLIENT_PROCESSES):
            first = index * share
            mine = max(0, min(share, count - first))
            self.processes.append(
                subprocess.Popen(  # noqa: S603 -- our own interpreter and module
                    [
                        sys.executable,
                        "-m",
                        "bench.scale_bench",
                        "client",
                        str(first),
                        str(mine),
                        SOURCES[index % len(SOURCES)],
                        str(ca_file),
                    ],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )

    def gather(self) -> list[dict[str, Any]]:
        """The next JSON line of every process."""
        lines = []
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"a client process ended early (status {process.wait()})")
            lines.append(json.loads(line))
        return lines

    def tell(self, command: str) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(command + "\n")
            process.stdin.flush()

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with_stdin = process.stdin
                if with_stdin is not None and not with_stdin.closed:
                    with_stdin.close()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fleet_run(workdir: Path, count: int, seconds: int) -> dict[str, float]:
    """One emulator with `count` identities, `count` devices connected, then telemetry."""
    emulator = Emulator(workdir, count, bind=BIND, port=PORT)
    clients: Clients | None = None
    try:
        rss_idle = emulator.rss_mib()
        clients = Clients(count, emulator.state_dir / "ca.pem")
        connected = clients.gather()
        time.sleep(1)
        rss_connected = emulator.rss_mib()
        fds = open_fds(emulator.process.pid)
        clients.tell(f"go {seconds}")
        time.sleep(1)  # the first second's batches start
        cpu_before, started = emulator.cpu_seconds(), time.perf_counter()
        time.sleep(seconds - 2)  # CPU in the steady state, before the last second
        elapsed = time.perf_counter() - started
        cpu = emulator.cpu_seconds() - cpu_before
        telemetry = clients.gather()
        clients.tell("stop")
    finally:
        if clients is not None:
            clients.close()
        emulator.close()
    acked = sum(line["acked"] for line in telemetry)
    window = max(line["seconds"] for line in telemetry)
    return {
        "count": count,
        "rss_idle": rss_idle,
        "rss_connected": rss_connected,
        "fds": fds,
        "connected": sum(line["connected"] for line in connected),
        "failed": sum(line["failed"] for line in connected),
        "throttled": sum(line["throttled"] for line in connected),
        "refused": sum(line["refused"] for line in connected),
        "connect_seconds": max(line["seconds"] for line in connected),
        "sent": sum(line["sent"] for line in telemetry),
        "acked": acked,
        "held": sum(line["held"] for line in telemetry),
        "dropped": sum(line["dropped"] for line in telemetry),
        "rate": acked / window,
        "cpu": cpu / elapsed * 100,
        "cpu_per_message_us": cpu / max(1.0, acked * elapsed / window) * 1e6,
        "client_cpu": sum(line["cpu"] for line in telemetry) / window * 100,
    }


def run(*, quick: bool = False) -> str:
    count = 2000 if quick else 10_000
    baseline_count = count // 10
    seconds = 5 if quick else 30
    needed = count + 500
    limit = raise_fd_limit(needed)
    if limit < needed:
        return f"scale bench skipped: the fd limit is {limit}, {needed} needed"
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        (workdir / "empty").mkdir()
        empty = Emulator(workdir / "empty", 0, bind=BIND, port=PORT)
        rss_empty = empty.rss_mib()
        empty.close()
        runs = []
        for size in (baseline_count, count):
            (workdir / str(size)).mkdir()
            runs.append(fleet_run(workdir / str(size), size, seconds))
    return table(runs, rss_empty, seconds)


def table(runs: list[dict[str, float]], rss_empty: float, seconds: int) -> str:
    full = runs[-1]
    columns = [f"{int(run['count']):,} devices" for run in runs]
    columns[0] += " (baseline)"

    def row(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(cell(run) for run in runs) + " |"

    lines = [
        f"### {int(full['count']):,} connected devices (1 QoS 1 message/s each for {seconds} s, "
        f"{CLIENT_PROCESSES} client processes, {os.cpu_count()} cores shared)",
        "",
        f"RSS of an emulator with no devices (baseline): {rss_empty:.1f} MiB.",
        "",
        "| measure | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(runs),
        row("RSS, identities + twins loaded, none connected", lambda r: f"{r['rss_idle']:.1f} MiB"),
        row("RSS, all connected (TLS)", lambda r: f"{r['rss_connected']:.1f} MiB"),
        row(
            "memory per connected device",
            lambda r: f"{(r['rss_connected'] - r['rss_idle']) * 1024 / r['count']:.1f} KiB",
        ),
        row("emulator's open files, all connected", lambda r: f"{int(r['fds']):,}"),
        row(
            "connected / failed",
            lambda r: f"{int(r['connected']):,} / {int(r['failed'])}",
        ),
        row(
            "retries: throttled (CONNACK 3) / refused or reset",
            lambda r: f"{int(r['throttled'])} / {int(r['refused'])}",
        ),
        row(
            "time to connect all",
            lambda r: f"{r['connect_seconds']:.1f} s ({r['count'] / r['connect_seconds']:.0f}/s)",
        ),
        row(
            "telemetry acknowledged",
            lambda r: f"{r['rate']:,.0f} msg/s ({int(r['acked']):,} of {int(r['sent']):,})",
        ),
        row(
            "held at the end / dropped",
            lambda r: f"{int(r['held']):,} / {int(r['dropped'])}",
        ),
        row("emulator CPU during telemetry", lambda r: f"{r['cpu']:.0f} % of one core"),
        row("emulator CPU per message", lambda r: f"{r['cpu_per_message_us']:.0f} µs"),
        row("client processes' CPU", lambda r: f"{r['client_cpu']:.0f} % of one core"),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        first, count, source, ca_file = sys.argv[2:6]
        asyncio.run(client_process(int(first), int(count), source, ca_file))
    else:
        print(run(quick="--quick" in sys.argv))
