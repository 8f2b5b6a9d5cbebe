"""The persisted state of a running emulator: one JSON document, built and checked here (pure).

What survives a restart with `--state-dir` (the certificates live beside it, see `certs`):

    {"format": "azure-iot-emulator-state", "version": 1,
     "journal_seq":   N,                                  changes up to journal entry N are in
     "enrollments":   [EnrollmentOverride as JSON ...],   operator edits (keys, enabled)
     "registrations": [RegistrationRecord as JSON ...],   DPS's memory of assignments
     "hubs": {"<hub>": [{"identity": {...}, "twin": {...}}, ...]}}

Telemetry, C2D queues, sessions and DPS operations in flight are not persisted.

`snapshot_to_json` and `parse_snapshot` are pure (no file, no clock); `persistence` does the
atomic file writes. Identities and twins are stored field by field from their frozen dataclasses,
so a field added to `DeviceIdentity` or `TwinDocument` with a default keeps older files readable.
A file that is not JSON, is another program's, is from a newer emulator or breaks the shape gets
a `StateError` naming the path, the JSON location and what was expected; the caller stops rather
than overwrite it. The document holds keys: never log it, and write it 0600.

Errors:

    StateError     the state file cannot be used; `path`, `location` and `problem` say why
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from emulator.dps.edits import EnrollmentKind, EnrollmentOverride
from emulator.dps.wire import RegistrationRecord, Substatus
from emulator.hub.registry import DeviceIdentity
from emulator.hub.twin import TwinDocument

__all__ = [
    "FORMAT",
    "VERSION",
    "DeviceState",
    "Snapshot",
    "StateError",
    "device_to_json",
    "enrollments_to_json",
    "parse_device",
    "parse_enrollments",
    "parse_record",
    "parse_snapshot",
    "record_to_json",
    "snapshot_to_json",
]

FORMAT = "azure-iot-emulator-state"
VERSION = 1


class StateError(ValueError):
    """A state file that cannot be used; the message names the file, where, and what is wrong."""

    def __init__(self, path: str, location: str, problem: str) -> None:
        super().__init__(f"{path}: {location}: {problem}")
        self.path = path
        self.location = location
        self.problem = problem


@dataclass(frozen=True)
class DeviceState:
    """One device of one hub: its registry entry and its twin."""

    identity: DeviceIdentity
    twin: TwinDocument


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """Everything persisted, as values."""

    enrollments: tuple[EnrollmentOverride, ...] = ()
    registrations: tuple[RegistrationRecord, ...] = ()
    hubs: Mapping[str, tuple[DeviceState, ...]] = field(default_factory=dict)
    journal_seq: int = 0  # the last journal entry this snapshot holds (`journal`)


def snapshot_to_json(snapshot: Snapshot) -> dict[str, Any]:
    """The JSON document for a snapshot (it holds keys)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "journal_seq": snapshot.journal_seq,
        "enrollments": enrollments_to_json(snapshot.enrollments),
        "registrations": [record_to_json(record) for record in snapshot.registrations],
        "hubs": {
            hub: [device_to_json(device) for device in devices]
            for hub, devices in snapshot.hubs.items()
        },
    }


def enrollments_to_json(edits: Sequence[EnrollmentOverride]) -> list[dict[str, Any]]:
    """Enrollment edits as JSON (they hold keys)."""
    return [
        {
            "kind": edit.kind.value,
            "id": edit.id,
            "primary_key": edit.primary_key,
            "secondary_key": edit.secondary_key,
            "enabled": edit.enabled,
            "base": edit.base,
        }
        for edit in edits
    ]


def record_to_json(record: RegistrationRecord) -> dict[str, Any]:
    """A DPS registration record as JSON."""
    return _fields(record)


def device_to_json(device: DeviceState) -> dict[str, Any]:
    """A device's identity (with its keys) and twin as JSON."""
    return {"identity": _fields(device.identity), "twin": _fields(device.twin)}


def parse_enrollments(value: object, *, path: str, location: str) -> tuple[EnrollmentOverride, ...]:
    """`enrollments_to_json`'s output back, or StateError."""
    check = _Checker(path)
    return tuple(
        check.enrollment(f"{location}[{index}]", entry)
        for index, entry in enumerate(check.array(location, value))
    )


def parse_record(value: object, *, path: str, location: str) -> RegistrationRecord:
    """`record_to_json`'s output back, or StateError."""
    return _Checker(path).record(location, value)


def parse_device(value: object, *, path: str, location: str) -> DeviceState:
    """`device_to_json`'s output back, or StateError."""
    return _Checker(path).device(location, value)


def parse_snapshot(data: object, *, path: str) -> Snapshot:
    """Check a parsed JSON document and turn it into a Snapshot, or raise StateError."""
    check = _Checker(path)
    top = check.mapping("top level", data)
    if top.get("format") != FORMAT:
        raise check.fail("format", f"expected {FORMAT!r}: this is not an emulator state file")
    version = top.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise check.fail("version", "expected a positive integer")
    if version > VERSION:
        raise check.fail(
            "version", f"{version} is from a newer emulator; this one reads version {VERSION}"
        )
    journal_seq = top.get("journal_seq", 0)
    if not isinstance(journal_seq, int) or isinstance(journal_seq, bool) or journal_seq < 0:
        raise check.fail("journal_seq", "expected a non-negative integer")
    enrollments = parse_enrollments(top.get("enrollments", []), path=path, location="enrollments")
    registrations = tuple(
        check.record(f"registrations[{index}]", entry)
        for index, entry in enumerate(check.array("registrations", top.get("registrations", [])))
    )
    hubs: dict[str, tuple[DeviceState, ...]] = {}
    for hub, devices in check.mapping("hubs", top.get("hubs", {})).items():
        hubs[hub] = tuple(
            check.device(f"hubs.{hub}[{index}]", entry)
            for index, entry in enumerate(check.array(f"hubs.{hub}", devices))
        )
    return Snapshot(
        enrollments=enrollments, registrations=registrations, hubs=hubs, journal_seq=journal_seq
    )


def _fields(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in dataclasses.fields(value):
        raw = getattr(value, item.name)
        out[item.name] = raw.value if isinstance(raw, Substatus) else raw
    return out


# Field types a stored dataclass may use, by annotation (annotations are strings here).
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
    "str | None": (str, type(None)),
    "float | None": (int, float, type(None)),
    "int | None": (int, type(None)),
    "Mapping[str, Any]": (dict,),
    "Substatus": (str,),
}


@dataclass(frozen=True)
class _Checker:
    path: str

    def fail(self, location: str, problem: str) -> StateError:
        return StateError(self.path, location, problem)

    def mapping(self, location: str, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(location, "expected a JSON object")
        return value

    def array(self, location: str, value: object) -> Sequence[Any]:
        if not isinstance(value, list):
            raise self.fail(location, "expected a JSON array")
        return value

    def enrollment(self, location: str, value: object) -> EnrollmentOverride:
        entry = self.mapping(location, value)
        try:
            kind = EnrollmentKind(str(entry.get("kind")))
        except ValueError:
            raise self.fail(f"{location}.kind", "expected group or individual") from None
        values = self.typed(
            location,
            entry,
            {
                "id": "str",
                "primary_key": "str",
                "secondary_key": "str",
                "enabled": "bool",
                "base": "str",
            },
        )
        return EnrollmentOverride(kind=kind, **values)

    def record(self, location: str, value: object) -> RegistrationRecord:
        entry = self.mapping(location, value)
        values = self.dataclass_values(location, entry, RegistrationRecord)
        try:
            values["substatus"] = Substatus(values["substatus"])
        except ValueError:
            options = ", ".join(member.value for member in Substatus)
            raise self.fail(f"{location}.substatus", f"expected one of {options}") from None
        return RegistrationRecord(**values)

    def device(self, location: str, value: object) -> DeviceState:
        entry = self.mapping(location, value)
        identity = self.dataclass_values(
            f"{location}.identity",
            self.mapping(f"{location}.identity", entry.get("identity")),
            DeviceIdentity,
        )
        twin = self.dataclass_values(
            f"{location}.twin", self.mapping(f"{location}.twin", entry.get("twin")), TwinDocument
        )
        return DeviceState(DeviceIdentity(**identity), TwinDocument(**twin))

    def dataclass_values(
        self, location: str, entry: Mapping[str, Any], kind: type[Any]
    ) -> dict[str, Any]:
        wanted: dict[str, str] = {}
        optional: set[str] = set()
        for item in dataclasses.fields(kind):
            if not item.init:
                continue
            wanted[item.name] = str(item.type)
            if item.default is not dataclasses.MISSING or (
                item.default_factory is not dataclasses.MISSING
            ):
                optional.add(item.name)
        return self.typed(location, entry, wanted, optional=optional)

    def typed(
        self,
        location: str,
        entry: Mapping[str, Any],
        wanted: Mapping[str, str],
        *,
        optional: set[str] | None = None,
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, annotation in wanted.items():
            if name not in entry:
                if optional and name in optional:
                    continue
                raise self.fail(f"{location}.{name}", "is missing")
            value = entry[name]
            allowed = _JSON_TYPES.get(annotation, (str, int, float, bool, dict, list, type(None)))
            numeric_bool = isinstance(value, bool) and bool not in allowed
            if numeric_bool or not isinstance(value, allowed):
                raise self.fail(f"{location}.{name}", f"expected {annotation}")
            values[name] = value
        return values
