"""State across restarts with `--state-dir`: a snapshot (`state.json`) and a journal of changes.

- `read_state(path)`: the snapshot, None when there is no file yet, or `state.StateError` for a file
  that is corrupt, foreign or from a newer emulator (the emulator then refuses to start: the file
  is reported, never replaced).
- `write_state(path, snapshot)`: atomic: a temporary file in the same directory created 0600
  (it holds keys), written, fsynced, `os.replace`d over the old one, then the directory fsynced.
- `collect` / `restore`: between a snapshot and the running DPS and hubs. Enrollment edits are
  kept as overrides of the configuration file (`enrollment_edits`).
- `load_state` / `apply_journal`: the snapshot with the journal's later entries applied, at start.
- `StateWriter`: journals each change when it happens (hooks on the hubs, DPS and the operator
  API) so that every acknowledgement can wait for it to be on disk (`journal`), and folds the
  journal into a new snapshot once it has grown by `COMPACT_BYTES`, at start and at exit.
  Telemetry, C2D queues and connections are not persisted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from devtools.files import write_private
from emulator.config import EmulatorConfig
from emulator.dps.edits import apply_overrides, overrides
from emulator.dps.service import DpsService
from emulator.dps.wire import RegistrationRecord
from emulator.hub.directory import Hubs
from emulator.persistence.document import (
    DeviceState,
    Snapshot,
    StateError,
    device_to_json,
    enrollments_to_json,
    parse_device,
    parse_enrollments,
    parse_record,
    parse_snapshot,
    record_to_json,
    snapshot_to_json,
)
from emulator.persistence.journal import Journal, read_journal

__all__ = [
    "COMPACT_BYTES",
    "STATE_FILE",
    "StateWriter",
    "apply_journal",
    "collect",
    "load_state",
    "read_state",
    "restore",
    "write_state",
]

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
# The journal is folded into a new state.json once it has grown by this much: replaying it at
# start stays short, and a snapshot (which costs in proportion to all state) stays rare.
COMPACT_BYTES = 16 * 1024 * 1024


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


def collect(
    loaded: EmulatorConfig, dps: DpsService, hubs: Hubs, *, journal_seq: int = 0
) -> Snapshot:
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
        journal_seq=journal_seq,
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


def apply_journal(snapshot: Snapshot, entries: list[dict[str, Any]], *, path: str) -> Snapshot:
    """The snapshot with the journal's later changes applied in order (pure); StateError for an
    entry that is not one this emulator writes."""
    devices = {
        hub: {device.identity.device_id: device for device in states}
        for hub, states in snapshot.hubs.items()
    }
    records = {record.registration_id.lower(): record for record in snapshot.registrations}
    enrollments = snapshot.enrollments
    last = snapshot.journal_seq
    for entry in entries:
        where = f"entry {entry.get('seq')}"
        op = entry.get("op")
        if op == "device":
            device = parse_device(entry.get("device"), path=path, location=f"{where}.device")
            devices.setdefault(_hub_name(entry, path, where), {})[device.identity.device_id] = (
                device
            )
        elif op == "device-deleted":
            device_id = entry.get("id")
            if not isinstance(device_id, str):
                raise StateError(path, f"{where}.id", "expected a device id")
            devices.get(_hub_name(entry, path, where), {}).pop(device_id, None)
        elif op == "registration":
            record = parse_record(entry.get("record"), path=path, location=f"{where}.record")
            records[record.registration_id.lower()] = record
        elif op == "enrollments":
            enrollments = parse_enrollments(
                entry.get("edits"), path=path, location=f"{where}.edits"
            )
        else:
            raise StateError(path, f"{where}.op", f"unknown change {op!r}")
        last = max(last, int(entry["seq"]))
    return Snapshot(
        enrollments=enrollments,
        registrations=tuple(records.values()),
        hubs={hub: tuple(states.values()) for hub, states in devices.items()},
        journal_seq=last,
    )


def _hub_name(entry: dict[str, Any], path: str, where: str) -> str:
    hub = entry.get("hub")
    if not isinstance(hub, str) or not hub:
        raise StateError(path, f"{where}.hub", "expected a hub name")
    return hub


def load_state(state_dir: Path) -> tuple[Snapshot | None, int]:
    """What the last run kept: the snapshot with the journal applied (None when there is neither)
    and the journal's last sequence number. StateError when either cannot be used."""
    snapshot = read_state(state_dir / STATE_FILE)
    entries, last = read_journal(state_dir, after=snapshot.journal_seq if snapshot else 0)
    if not entries:
        return snapshot, last
    return apply_journal(snapshot or Snapshot(), entries, path=str(state_dir / "journal")), last


class StateWriter:
    """Journals each change as it happens; folds the journal into `state.json` now and then.

    `device_changed`, `record_changed` and `enrollments_changed` are the hooks the hubs, DPS and
    the operator API call (synchronously, right after the change, before anyone is answered);
    `barrier()` returns once everything journalled is on disk. Every `interval` seconds the
    writer looks whether the journal has grown past `compact_bytes` since the last snapshot and
    if so writes a new snapshot and drops the journal segments it covers.
    """

    def __init__(
        self,
        path: Path,
        loaded: EmulatorConfig,
        dps: DpsService,
        hubs: Hubs,
        journal: Journal,
        *,
        interval: float = 0.5,
        compact_bytes: int = COMPACT_BYTES,
    ) -> None:
        self.path = path
        self.journal = journal
        self._loaded = loaded
        self._dps = dps
        self._hubs = hubs
        self._interval = interval
        self._compact_bytes = compact_bytes
        self._task: asyncio.Task[None] | None = None
        self._compacting = False
        self.writes = 0

    def attach(self) -> None:
        """Hook into the hubs and DPS: from now on their changes are journalled."""
        for hub in self._hubs:
            hub.on_change = self.device_changed
        self._dps.on_record = self.record_changed

    def device_changed(self, hub_name: str, device_id: str) -> None:
        """A device's identity or twin changed, or it was deleted."""
        hub = self._hubs.hub(hub_name)
        identity, twin = hub.device(device_id), hub.twin(device_id)
        if identity is None or twin is None:
            self.journal.append({"op": "device-deleted", "hub": hub.name, "id": device_id})
        else:
            device = device_to_json(DeviceState(identity, twin))
            self.journal.append({"op": "device", "hub": hub.name, "device": device})

    def record_changed(self, record: RegistrationRecord) -> None:
        """DPS made or changed a registration record."""
        self.journal.append({"op": "registration", "record": record_to_json(record)})

    def enrollments_changed(self) -> None:
        """An operator edited an enrollment (or the file they are edits of changed)."""
        edits = enrollments_to_json(overrides(self._loaded, self._dps.config))
        self.journal.append({"op": "enrollments", "edits": edits})

    def file_changed(self, loaded: EmulatorConfig) -> None:
        """The configuration file now says `loaded` (a key written back): edits are kept as
        overrides of this version of it."""
        self._loaded = loaded
        self.enrollments_changed()

    async def barrier(self) -> None:
        """Return once every change so far is on disk (JournalError if it cannot be)."""
        await self.journal.barrier()

    def snapshot_now(self) -> None:
        """At start, before serving: fold what the journal holds into a new snapshot."""
        seq = self.journal.rotate()
        write_state(self.path, collect(self._loaded, self._dps, self._hubs, journal_seq=seq))
        self.journal.drop_files_through(seq)
        self.writes += 1

    def start(self) -> None:
        """Start the journal and the compaction check (on the running loop)."""
        self.journal.start()
        self.attach()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="state-writer")

    async def compact(self) -> int:
        """Write a snapshot of everything journalled so far, then drop the journal it covers;
        the snapshot's journal sequence number."""
        # Rotate and collect in one step of the loop: the snapshot holds exactly the entries up
        # to `seq`, and later ones go to the new segment.
        seq = self.journal.rotate()
        snapshot = collect(self._loaded, self._dps, self._hubs, journal_seq=seq)
        # The snapshot holds only immutable values, so it can be encoded off the loop's thread.
        await asyncio.to_thread(write_state, self.path, snapshot)
        await self.journal.drop_through(seq)
        self.writes += 1
        return seq

    async def close(self) -> None:
        """Stop, with everything journalled and folded into a last snapshot."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for hub in self._hubs:
            hub.on_change = None
        self._dps.on_record = None
        with contextlib.suppress(OSError):
            await self.journal.barrier()
            if self.journal.appended > self._snapshot_seq():
                await self.compact()
        await self.journal.close()

    def _snapshot_seq(self) -> int:
        snapshot = None
        with contextlib.suppress(StateError):
            snapshot = read_state(self.path)
        return snapshot.journal_seq if snapshot is not None else -1

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if self.journal.bytes_since_rotation < self._compact_bytes:
                continue
            try:
                await self.compact()
            except OSError as error:
                log.error("state: cannot write %s (%s); retrying", self.path, error.strerror)
