"""State across restarts with `--state-dir`: read `<state-dir>/state.json` at start, rewrite it on change.

- `read_state(path)`: the snapshot, None when there is no file yet, or `state.StateError` for a file
  that is corrupt, foreign or from a newer emulator (the emulator then refuses to start: the file
  is reported, never replaced).
- `write_state(path, snapshot)`: atomic: a temporary file in the same directory created 0600
  (it holds keys), written, fsynced, `os.replace`d over the old one, then the directory fsynced.
- `collect` / `restore`: between a snapshot and the running DPS and hubs. Enrollment edits are
  kept as overrides of the configuration file (`enrollment_edits`).
- `StateWriter`: a task that looks every `interval` seconds whether anything changed and then
  writes once: debounced, never per message. Change detection is by identity: identities, twins
  and records are immutable values replaced on every change, so comparing references finds every
  change without hooks in the hub and without serialising anything while nothing changed.
  Telemetry is not persisted. `close()` writes a last snapshot if needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from devtools.files import write_private
from emulator.config import EmulatorConfig
from emulator.dps.edits import apply_overrides, overrides
from emulator.dps.service import DpsService
from emulator.hub.directory import Hubs
from emulator.persistence.document import (
    DeviceState,
    Snapshot,
    StateError,
    parse_snapshot,
    snapshot_to_json,
)

__all__ = ["STATE_FILE", "StateWriter", "collect", "read_state", "restore", "write_state"]

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


def read_state(path: Path) -> Snapshot | None:
    """The persisted snapshot, None when the file does not exist, StateError when unusable."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StateError(str(path), "file", f"cannot be read ({error.strerror})") from None
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError) as error:
        raise StateError(str(path), "file", f"expected JSON ({error})") from None
    return parse_snapshot(data, path=str(path))


def write_state(path: Path, snapshot: Snapshot) -> None:
    """Replace `path` with the snapshot in one rename; the file is 0600 from its first byte."""
    write_private(path, json.dumps(snapshot_to_json(snapshot), separators=(",", ":")))


def collect(loaded: EmulatorConfig, dps: DpsService, hubs: Hubs) -> Snapshot:
    """What to persist now: enrollment edits, registration records, every hub's devices."""
    devices: dict[str, tuple[DeviceState, ...]] = {}
    for hub in hubs:
        states: list[DeviceState] = []
        for device_id in hub.device_ids():
            identity, twin = hub.device(device_id), hub.twin(device_id)
            if identity is not None and twin is not None:
                states.append(DeviceState(identity, twin))
        devices[hub.name] = tuple(states)
    return Snapshot(
        enrollments=tuple(overrides(loaded, dps.config)),
        registrations=dps.records(),
        hubs=devices,
    )


def restore(snapshot: Snapshot, loaded: EmulatorConfig, dps: DpsService, hubs: Hubs) -> None:
    """Put a snapshot back into a freshly started DPS and hubs (the config file may have moved on)."""
    config, stale = apply_overrides(loaded, list(snapshot.enrollments))
    for edit in stale:
        log.warning(
            "state: %s enrollment %r changed in %s since it was edited; the file wins",
            edit.kind.value,
            edit.id,
            loaded.source,
        )
    dps.replace_config(config)
    names = {name.lower() for name in hubs.hub_names()}
    dps.restore_records(
        record for record in snapshot.registrations if record.assigned_hub.lower() in names
    )
    for hub_name, devices in snapshot.hubs.items():
        if hub_name.lower() not in names:
            log.warning(
                "state: hub %s is no longer configured; its %d device(s) are dropped",
                hub_name,
                len(devices),
            )
            continue
        hub = hubs.hub(hub_name)
        for device in devices:
            hub.restore_device(device.identity, device.twin)
    log.info(
        "state restored: %d enrollment edit(s), %d registration(s), %d device(s)",
        len(snapshot.enrollments) - len(stale),
        len(snapshot.registrations),
        sum(len(devices) for devices in snapshot.hubs.values()),
    )


def _same(old: Snapshot, new: Snapshot) -> bool:
    if old.enrollments != new.enrollments or len(old.registrations) != len(new.registrations):
        return False
    if any(a is not b for a, b in zip(old.registrations, new.registrations, strict=True)):
        return False
    if old.hubs.keys() != new.hubs.keys():
        return False
    for name, devices in new.hubs.items():
        before = old.hubs[name]
        if len(before) != len(devices):
            return False
        for a, b in zip(before, devices, strict=True):
            if a.identity is not b.identity or a.twin is not b.twin:
                return False
    return True


class StateWriter:
    """Writes the snapshot when it changed, at most once per `interval` seconds."""

    def __init__(
        self,
        path: Path,
        loaded: EmulatorConfig,
        dps: DpsService,
        hubs: Hubs,
        *,
        interval: float = 0.5,
    ) -> None:
        self.path = path
        self._loaded = loaded
        self._dps = dps
        self._hubs = hubs
        self._interval = interval
        self._written = collect(loaded, dps, hubs)
        self._task: asyncio.Task[None] | None = None
        self.writes = 0

    def file_changed(self, loaded: EmulatorConfig) -> None:
        """The configuration file now says `loaded` (a key written back): edits are kept as
        overrides of this version of it."""
        self._loaded = loaded

    def start(self) -> None:
        """Start watching (on the running loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="state-writer")

    async def flush(self) -> bool:
        """Write now if anything changed since the last write; whether it wrote."""
        snapshot = collect(self._loaded, self._dps, self._hubs)
        if _same(self._written, snapshot):
            return False
        # The snapshot holds only immutable values, so it can be encoded off the loop's thread.
        await asyncio.to_thread(write_state, self.path, snapshot)
        self._written = snapshot
        self.writes += 1
        return True

    async def close(self) -> None:
        """Stop watching and write what changed since the last write."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except OSError as error:
                log.error("state: cannot write %s (%s); retrying", self.path, error.strerror)
