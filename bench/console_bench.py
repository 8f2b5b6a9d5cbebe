"""The web console's cost: what it adds to the emulator, and whether a page keeps up with a device.

1. Telemetry from one client keeping 100 QoS 1 messages in flight (raw MQTT over TLS, the project's
   own codec, as `emulator_bench`), against `python -m emulator run` in a subprocess:
   `--no-console` (the baseline), the console on with no browser, the console with one event
   stream following the hub and read as fast as it comes, and one stream that stopped reading.
   Configurations alternate round by round, so drift in the machine hits all alike; the median of
   the rounds is reported, with the emulator's CPU per message.
2. A page: headless Chromium (Playwright, the Chromium `devtools.browser` finds) on the device's
   page while the device sends 100 messages/s; every 100 ms the page's own message counter is
   read and compared with what was sent: the largest lag (messages and seconds), and how long
   after the last message the page showed all of them.

The emulator listens on 127.58.250.1:18884, apart from `emulator_bench`.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import procs
from emulator.hub.registry import DeviceIdentity
from emulator.hub.twin import TwinDocument
from emulator.mqtt import Connack, Connect, NeedMoreData, Puback, Publish, decode, encode
from emulator.persistence.document import DeviceState, Snapshot
from emulator.persistence.writer import write_state
from sas import generate_sas_token

ROOT = Path(__file__).resolve().parents[1]
BIND = "127.58.250.1"
PORT = 18884
HUB = "bench.azure-devices.net"
DEVICE = "dev-00000"
KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
PAYLOAD = b'{"temperature": 21.5, "humidity": 40}'
CONFIGURATIONS = (
    "no console (baseline)",
    "console, no browser",
    "console, a stream reading",
    "console, a stream not reading",
)


class Emulator:
    """`python -m emulator run` in a subprocess with one device identity; its console URL."""

    def __init__(self, workdir: Path, name: str, *, console: bool) -> None:
        self.state_dir = workdir / name
        self.state_dir.mkdir()
        config = workdir / "bench.toml"
        config.write_text(f'[[hubs]]\nname = "{HUB}"\n')
        identity = DeviceIdentity(device_id=DEVICE, primary_key=KEY, secondary_key=KEY)
        write_state(
            self.state_dir / "state.json",
            Snapshot(hubs={HUB: (DeviceState(identity, TwinDocument.new(None, now=time.time())),)}),
        )
        self._log = (workdir / f"{name}.log").open("w")
        argv = [
            sys.executable, "-m", "emulator", "run", "--config", str(config),
            "--state-dir", str(self.state_dir), "--bind", BIND, "--mqtt-port", str(PORT),
            "--service-port", "0",
        ]  # fmt: skip
        if not console:
            argv.append("--no-console")
        self.process = subprocess.Popen(  # noqa: S603 -- our own interpreter and module
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        assert self.process.stdout is not None
        self.console_url: str | None = None
        last = "hub service connection strings" if not console else "console: "
        for line in self.process.stdout:
            if line.startswith("console: "):
                self.console_url = line.removeprefix("console: ").strip()
            if line.startswith(last):
                break
        else:
            self.close()
            raise RuntimeError(f"emulator did not start (see {self._log.name})")

    def cpu_seconds(self) -> float:
        return procs.cpu_seconds(self.process.pid)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self._log.close()


@dataclass
class Device:
    """One raw MQTT/TLS device connection that publishes telemetry and counts PUBACKs."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    acked: int = 0
    next_id: int = 1

    @classmethod
    async def connect(cls, context: ssl.SSLContext) -> Device:
        reader, writer = await asyncio.open_connection(BIND, PORT, ssl=context)
        token = generate_sas_token(f"{HUB}/devices/{DEVICE}", KEY, int(time.time()) + 3600)
        writer.write(
            encode(
                Connect(
                    client_id=DEVICE,
                    username=f"{HUB}/{DEVICE}/?api-version=2021-04-12",
                    password=token.encode(),
                    clean_session=False,
                    keep_alive=300,
                )
            )
        )
        device = cls(reader, writer)
        buffer = bytearray()
        packet = await device._next(buffer)
        if not isinstance(packet, Connack) or packet.return_code != 0:
            raise RuntimeError(f"refused: {packet!r}")
        device._buffer = buffer
        return device

    async def _next(self, buffer: bytearray) -> object:
        while True:
            try:
                packet, used = decode(buffer)
            except NeedMoreData:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("closed") from None
                buffer += data
                continue
            del buffer[:used]
            return packet

    def publish(self, body: bytes = PAYLOAD) -> None:
        topic = f"devices/{DEVICE}/messages/events/"
        self.writer.write(encode(Publish(topic=topic, payload=body, qos=1, packet_id=self.next_id)))
        self.next_id = self.next_id % 65535 + 1

    async def count_acks(self) -> None:
        try:
            while True:
                if isinstance(await self._next(self._buffer), Puback):
                    self.acked += 1
        except (ConnectionError, ssl.SSLError):
            return

    def close(self) -> None:
        self.writer.close()


def client_context(state_dir: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=state_dir / "ca.pem")
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def rate(context: ssl.SSLContext, seconds: float) -> float:
    """Messages per second acknowledged to one client keeping 100 in flight."""
    device = await Device.connect(context)
    acks = asyncio.create_task(device.count_acks())
    sent = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        while sent - device.acked < 100:
            device.publish()
            sent += 1
        await device.writer.drain()
        await asyncio.sleep(0.001)
    result = device.acked / (time.perf_counter() - started)
    acks.cancel()
    device.close()
    return result


class Stream:
    """An event stream of the console in a thread: reading all it gets, or stalled after a line."""

    def __init__(self, url: str, *, reading: bool) -> None:
        root, token = url.split("?token=")
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(f"{root}api/stream?hub={HUB}", token, reading), daemon=True
        )
        self._thread.start()
        time.sleep(0.5)

    def _run(self, url: str, token: str, reading: bool) -> None:
        with (
            httpx.Client(timeout=60) as client,
            client.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as answer,
        ):
            for chunk in answer.iter_bytes():
                self.received += len(chunk)
                if not reading:
                    self._stop.wait(120)
                if self._stop.is_set():
                    return

    def close(self) -> None:
        self._stop.set()


def measure(workdir: Path, configuration: str, seconds: float, round_: int) -> tuple[float, float]:
    """(messages/s, emulator CPU µs per message) for one configuration."""
    emulator = Emulator(
        workdir,
        f"{round_}-{CONFIGURATIONS.index(configuration)}",
        console="no console" not in configuration,
    )
    stream = None
    try:
        if "stream" in configuration:
            assert emulator.console_url is not None
            stream = Stream(emulator.console_url, reading="not reading" not in configuration)
        context = client_context(emulator.state_dir)
        cpu = emulator.cpu_seconds()
        messages_per_second = asyncio.run(rate(context, seconds))
        cpu = emulator.cpu_seconds() - cpu
    finally:
        if stream is not None:
            stream.close()
        emulator.close()
    return messages_per_second, cpu / (messages_per_second * seconds) * 1e6


async def steady_device(
    context: ssl.SSLContext, per_second: int, seconds: float, sent: list[float]
) -> None:
    """Send `per_second` messages a second for `seconds`; record each send time."""
    device = await Device.connect(context)
    acks = asyncio.create_task(device.count_acks())
    started = time.perf_counter()
    total = int(per_second * seconds)
    for n in range(total):
        await asyncio.sleep(max(0.0, started + n / per_second - time.perf_counter()))
        device.publish(b'{"n": %d}' % n)
        sent.append(time.perf_counter())
    await asyncio.sleep(1)
    acks.cancel()
    device.close()


def page_keeps_up(workdir: Path, seconds: float) -> dict[str, float] | str:
    """A page on the device while it sends 100 messages/s: lag, and time to show the last one."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 -- only for this part

    from devtools.browser import HOW_TO_INSTALL, find_chromium  # noqa: PLC0415

    chromium = find_chromium()
    if chromium is None:
        return HOW_TO_INSTALL
    emulator = Emulator(workdir, "page", console=True)
    assert emulator.console_url is not None
    sent: list[float] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), headless=True)
            page = browser.new_page()
            page.goto(emulator.console_url)
            page.goto(emulator.console_url.split("?")[0] + f"#/device/{HUB}/{DEVICE}")
            page.wait_for_selector("#live.on")
            context = client_context(emulator.state_dir)
            device = threading.Thread(
                target=lambda: asyncio.run(steady_device(context, 100, seconds, sent))
            )
            device.start()
            worst, worst_seconds = 0, 0.0
            total = int(100 * seconds)
            deadline = time.perf_counter() + seconds + 30
            shown = 0
            while time.perf_counter() < deadline:
                text = page.inner_text("#message-count")
                shown = int(re.sub(r"\D", "", text) or 0)
                now = time.perf_counter()
                behind = len(sent) - shown
                worst = max(worst, behind)
                if shown < len(sent):  # the oldest message the page has not counted yet
                    worst_seconds = max(worst_seconds, now - sent[shown])
                if shown >= total:
                    break
                time.sleep(0.1)
            all_shown = time.perf_counter() - sent[-1] if sent and shown >= total else float("nan")
            device.join(30)
            browser.close()
    finally:
        emulator.close()
    return {
        "sent": float(len(sent)),
        "shown": float(shown),
        "worst_behind": float(worst),
        "worst_seconds": worst_seconds,
        "all_shown_after": all_shown,
    }


def run(*, quick: bool = False) -> str:
    seconds = 2.0 if quick else 6.0
    rounds = 1 if quick else 3
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in CONFIGURATIONS}
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        for round_ in range(rounds):
            for configuration in CONFIGURATIONS:
                results[configuration].append(measure(workdir, configuration, seconds, round_))
        page = page_keeps_up(workdir, 3.0 if quick else 10.0)
    baseline = statistics.median(r for r, _ in results[CONFIGURATIONS[0]])
    lines = [
        f"### Web console: its cost to the emulator (one client, 100 QoS 1 messages in flight, "
        f"{seconds:g} s x {rounds} round(s), {os.cpu_count()} CPU(s))",
        "",
        "| emulator | msg/s (median) | vs baseline | emulator CPU µs per message |",
        "|---|---:|---:|---:|",
    ]
    for name in CONFIGURATIONS:
        median_rate = statistics.median(r for r, _ in results[name])
        median_cpu = statistics.median(c for _, c in results[name])
        lines.append(
            f"| {name} | {median_rate:.0f} | {median_rate / baseline:.2f}x | {median_cpu:.1f} |"
        )
    lines += ["", "### Web console: a device page open while the device sends 100 messages/s", ""]
    if isinstance(page, str):
        lines.append(f"not measured: {page}")
    else:
        lines += [
            "| measure | value |",
            "|---|---:|",
            f"| messages sent / shown by the page | {page['sent']:.0f} / {page['shown']:.0f} |",
            f"| most messages the page was behind (sampled every 100 ms) | {page['worst_behind']:.0f} |",
            f"| longest a sent message waited to be counted by the page | {page['worst_seconds']:.2f} s |",
            f"| the last message shown after it was sent | {page['all_shown_after']:.2f} s |",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
