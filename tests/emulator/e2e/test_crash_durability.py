"""kill -9 loses nothing acknowledged: `python -m emulator run --state-dir` as a subprocess, the real
SDKs writing to it from many threads, SIGKILL mid-stream, a restart on the same state directory,
and every change a client was told about is there.

Acknowledged means: `create_device_with_sas` and `update_twin` returned (azure-iot-hub, HTTPS),
`register()` returned an assigned result (azure-iot-device, MQTT/TLS). Changes in flight when
the process died may or may not be there; nothing a client saw succeed may be missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from azure.iot.device import ProvisioningDeviceClient
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import Twin, TwinProperties

from sas import derive_device_key
from tests.emulator.e2e.harness import DPS_HOST, ID_SCOPE, emulator_toml, register_then_release

pytestmark = pytest.mark.e2e

BIND = "127.49.0.1"
GROUP_KEY = "DZPe4q3my4xZRYespJ9DC5wu5B5SWQOjY81pkl/cYJY="
ROOT = Path(__file__).resolve().parents[3]
CREATORS = 6
REGISTRANTS = 3
RUN_SECONDS = 2.5  # at least this long under load before the kill
GOING_WITHIN = 60.0  # ... and until every kind of change has been acknowledged, up to this long


def start(config: Path, state: Path) -> subprocess.Popen[bytes]:
    for name in ("admin.json", "hubs.json"):
        (state / name).unlink(missing_ok=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "run",
            "--config",
            str(config),
            "--bind",
            BIND,
            "--state-dir",
            str(state),
            "--service-port",
            "0",
            "--time-scale",
            "0.01",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not (state / "admin.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(process.communicate()[1].decode(errors="replace")[-2000:])
        time.sleep(0.05)
    return process


def registry(state: Path, hub: str) -> IoTHubRegistryManager:
    connection_string = json.loads((state / "hubs.json").read_text())[hub]
    return IoTHubRegistryManager.from_connection_string(connection_string)


class Load:
    """Client threads recording what the emulator acknowledged, until told to stop."""

    def __init__(self, state: Path, hub: str) -> None:
        self.state = state
        self.hub = hub
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.created: list[str] = []
        self.twin_value = 0  # the last desired value whose update returned
        self.registered: dict[str, str] = {}  # registration id -> assigned hub

    def going(self) -> bool:
        """Every kind of change acknowledged at least once, and creates by the dozen."""
        with self.lock:
            return len(self.created) > 50 and bool(self.registered) and self.twin_value > 0

    def create(self, worker: int) -> None:
        manager = registry(self.state, self.hub)
        for index in range(100_000):
            if self.stop.is_set():
                return
            device_id = f"crash-{worker}-{index}"
            try:
                manager.create_device_with_sas(device_id, "", "", "enabled")
            except Exception:  # the process died: this one was never acknowledged
                return
            with self.lock:
                self.created.append(device_id)

    def patch_twin(self) -> None:
        manager = registry(self.state, self.hub)
        manager.create_device_with_sas("twin-target", "", "", "enabled")
        for value in range(1, 100_000):
            if self.stop.is_set():
                return
            patch = Twin(properties=TwinProperties(desired={"value": value}))
            try:
                manager.update_twin("twin-target", patch, "*")
            except Exception:
                return
            self.twin_value = value

    def register(self, worker: int) -> None:
        for index in range(100_000):
            if self.stop.is_set():
                return
            registration_id = f"reg-{worker}-{index}"
            client = ProvisioningDeviceClient.create_from_symmetric_key(
                provisioning_host=DPS_HOST,
                registration_id=registration_id,
                id_scope=ID_SCOPE,
                symmetric_key=derive_device_key(GROUP_KEY, registration_id),
                gateway_hostname=BIND,
                server_verification_cert=(self.state / "ca.pem").read_text(),
            )
            try:
                result = register_then_release(client)
            except Exception:
                return
            if result.status == "assigned":
                with self.lock:
                    self.registered[registration_id] = result.registration_state.assigned_hub


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(state / "ca.pem"))  # for azure-iot-hub's requests
    config = tmp_path / "emulator.toml"
    config.touch(mode=0o600)
    config.write_text(
        emulator_toml(
            groups=[{"id": "fleet", "primary_key": GROUP_KEY, "secondary_key": GROUP_KEY}]
        )
    )
    process = start(config, state)
    hubs = list(json.loads((state / "hubs.json").read_text()))
    load = Load(state, hubs[0])
    threads = [threading.Thread(target=load.create, args=(n,)) for n in range(CREATORS)]
    threads += [threading.Thread(target=load.register, args=(n,)) for n in range(REGISTRANTS)]
    threads.append(threading.Thread(target=load.patch_twin))
    for thread in threads:
        thread.start()
    started = time.monotonic()
    # Kill mid-load, once the load is going: on a loaded machine that takes longer than on a
    # quiet one, so the wait is for the load, not for a fixed time.
    while time.monotonic() - started < RUN_SECONDS or (
        not load.going() and time.monotonic() - started < GOING_WITHIN
    ):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    load.stop.set()
    for thread in threads:
        thread.join(timeout=60)
    going = (len(load.created), len(load.registered), load.twin_value)
    assert going[0] > 50, going  # the load got going before the kill
    assert going[1] > 0, going
    assert going[2] > 0, going

    process = start(config, state)
    try:
        managers = {hub: registry(state, hub) for hub in hubs}
        present = {
            device.device_id
            for device in managers[hubs[0]].get_devices(max_number_of_devices=1_000_000)
        }
        missing = [device_id for device_id in load.created if device_id not in present]
        assert not missing, f"{len(missing)} acknowledged creates lost, e.g. {missing[:3]}"
        twin: Any = managers[hubs[0]].get_twin("twin-target")
        assert twin.properties.desired["value"] >= load.twin_value
        for registration_id, hub in load.registered.items():
            assert managers[hub].get_device(registration_id).device_id == registration_id
        kept = [path.name for path in state.iterdir() if path.name.startswith("journal-")]
        assert json.loads((state / "state.json").read_text())["journal_seq"] > 0, kept
    finally:
        process.terminate()
        process.communicate(timeout=30)
