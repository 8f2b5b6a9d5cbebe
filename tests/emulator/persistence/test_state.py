"""Tests for emulator.persistence.document (the document) and emulator.persistence.writer (files, collect/restore)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from emulator.hub.directory import Hubs
from emulator.persistence.document import StateError, parse_snapshot, snapshot_to_json
from emulator.persistence.writer import collect, read_state, restore, write_state
from tests.emulator.persistence.sample import (
    CONFIG,
    HUB,
    NOW,
    RECORD,
    populated,
    running,
)


def test_snapshot_round_trips_through_json() -> None:
    """collect -> JSON text -> parse -> restore gives the same devices, twins, records, edits."""
    dps, hubs = populated()
    text = json.dumps(snapshot_to_json(collect(CONFIG, dps, hubs)))
    snapshot = parse_snapshot(json.loads(text), path="state.json")
    dps2, hubs2 = running()
    restore(snapshot, CONFIG, dps2, hubs2)
    for device_id in ("dev-1", "dev-2"):
        assert hubs2.hub(HUB).device(device_id) == hubs.hub(HUB).device(device_id)
        assert hubs2.hub(HUB).twin(device_id) == hubs.hub(HUB).twin(device_id)
    assert dps2.records() == (RECORD,)
    assert dps2.config == dps.config


def test_restore_emits_no_lifecycle_events() -> None:
    """Putting devices back is not a device creation: no lifecycle event is raised."""
    dps, hubs = populated()
    snapshot = collect(CONFIG, dps, hubs)
    events: list[object] = []
    hubs2 = Hubs([HUB], clock=lambda: NOW, on_event=events.append)
    restore(snapshot, CONFIG, running()[0], hubs2)
    assert hubs2.hub(HUB).device_ids() == ["dev-1", "dev-2"]
    assert events == []


@pytest.mark.parametrize(
    ("document", "location", "problem"),
    [
        ([], "top level", "expected a JSON object"),
        ({"format": "something-else", "version": 1}, "format", "not an emulator state file"),
        ({"format": "azure-iot-emulator-state", "version": 9}, "version", "from a newer emulator"),
        ({"format": "azure-iot-emulator-state", "version": "1"}, "version", "positive integer"),
        (
            {"format": "azure-iot-emulator-state", "version": 1, "registrations": [{}]},
            "registrations[0].registration_id",
            "is missing",
        ),
        (
            {"format": "azure-iot-emulator-state", "version": 1, "hubs": {HUB: [{"identity": {}}]}},
            f"hubs.{HUB}[0].identity.device_id",
            "is missing",
        ),
        (
            {
                "format": "azure-iot-emulator-state",
                "version": 1,
                "enrollments": [{"kind": "group", "id": 5}],
            },
            "enrollments[0].id",
            "expected str",
        ),
    ],
)
def test_unusable_documents_are_reported_with_where_and_what(
    document: object, location: str, problem: str
) -> None:
    """Foreign, newer or malformed documents raise StateError naming the location."""
    with pytest.raises(StateError) as raised:
        parse_snapshot(document, path="/x/state.json")
    assert raised.value.location == location
    assert problem in raised.value.problem
    assert str(raised.value).startswith("/x/state.json: ")


def test_write_is_atomic_0600_and_reads_back(tmp_path: Path) -> None:
    """write_state leaves one 0600 file (no temporary) that read_state parses back."""
    dps, hubs = populated()
    path = tmp_path / "state.json"
    path.write_text("old")
    write_state(path, collect(CONFIG, dps, hubs))
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    snapshot = read_state(path)
    assert snapshot is not None
    assert snapshot.registrations == (RECORD,)
    assert read_state(tmp_path / "missing.json") is None


def test_corrupt_file_is_reported_and_left_alone(tmp_path: Path) -> None:
    """A file that is not JSON raises StateError with its path; its bytes are unchanged."""
    path = tmp_path / "state.json"
    path.write_bytes(b'{"format": "azure-iot-emulator-state", "version": 1,')
    with pytest.raises(StateError, match=f"{path}: file: expected JSON"):
        read_state(path)
    assert path.read_bytes().endswith(b'"version": 1,')
