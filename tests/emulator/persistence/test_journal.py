"""`emulator.persistence.journal` and the `StateWriter` around it: every change journalled before it
is acknowledged, replayed at start, folded into the snapshot, and a failing disk refuses acks."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from emulator.dps.edits import EnrollmentKind, KeySlot, with_key
from emulator.hub.twin import TwinDocument
from emulator.persistence.document import StateError, snapshot_to_json
from emulator.persistence.journal import Journal, JournalError, read_journal, segment_paths
from emulator.persistence.writer import STATE_FILE, StateWriter, collect, load_state, restore
from tests.emulator.persistence.sample import CONFIG, HUB, KEY, NEW_KEY, NOW, RECORD, running


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), 20))


def same_state(a: Any, b: Any) -> bool:
    left, right = snapshot_to_json(a), snapshot_to_json(b)
    left.pop("journal_seq"), right.pop("journal_seq")
    return left == right


def test_every_kind_of_change_survives_without_a_snapshot(tmp_path: Path) -> None:
    """Creates, updates, twin patches, deletes, DPS records and enrollment edits are all in the
    journal once `barrier()` returns: a fresh start (no snapshot written, as after kill -9) puts
    back exactly the live state."""

    async def scenario() -> Any:
        dps, hubs = running()
        writer = StateWriter(tmp_path / STATE_FILE, CONFIG, dps, hubs, Journal(tmp_path))
        writer.start()
        hub = hubs.hub(HUB)
        hub.upsert_device("a", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)
        hub.create_device(
            "b",
            primary_key=KEY,
            secondary_key=KEY,
            enabled=True,
            status_reason=None,
            iot_edge=False,
            now=NOW,
        )
        hub.update_desired("a", {"target": 21.5}, now=NOW + 1)
        hub.patch_twin("b", tags={"site": "x"}, desired=None, if_match="*", now=NOW + 2)
        hub.update_device(
            "b",
            if_match="*",
            primary_key=NEW_KEY,
            secondary_key=KEY,
            enabled=False,
            status_reason="retired",
            iot_edge=False,
            now=NOW + 3,
        )
        hub.upsert_device("gone", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)
        hub.delete_device("gone", now=NOW + 4)
        dps.restore_records([RECORD])  # a restore is not a change...
        writer.record_changed(RECORD)  # ...DPS calls this hook for the records it makes
        dps.replace_config(
            with_key(CONFIG, EnrollmentKind.GROUP, "contoso", KeySlot.PRIMARY, NEW_KEY)
        )
        writer.enrollments_changed()
        await writer.barrier()
        live = collect(CONFIG, dps, hubs)
        # no close(): the process "dies" here, with no snapshot ever written
        return live

    live = run(scenario)
    assert not (tmp_path / STATE_FILE).exists()
    loaded, last = load_state(tmp_path)
    assert loaded is not None
    assert last == loaded.journal_seq > 0
    assert same_state(loaded, live)
    dps, hubs = running()
    restore(loaded, CONFIG, dps, hubs)
    assert hubs.hub(HUB).device("gone") is None
    identity = hubs.hub(HUB).device("b")
    assert identity is not None
    assert (identity.enabled, identity.primary_key) == (False, NEW_KEY)
    assert dps.config.enrollment_groups[0].primary_key == NEW_KEY


def test_barrier_waits_for_the_sync_and_batches_are_grouped(tmp_path: Path) -> None:
    """An entry is pending until synced; a burst of appends is written in a few batches, not one
    sync each (group commit); the file is 0600 and its lines are in order."""

    async def scenario() -> tuple[int | None, int, int]:
        journal = Journal(tmp_path)
        journal.start()
        for index in range(1000):
            journal.append({"op": "device-deleted", "hub": HUB, "id": f"d{index}"})
        pending = journal.pending()
        await journal.barrier()
        after = journal.pending()
        await journal.close()
        assert after is None
        return pending, journal.durable, journal.batches

    pending, durable, batches = run(scenario)
    assert pending == durable == 1000
    assert 1 <= batches < 10
    (segment,) = segment_paths(tmp_path)
    assert stat.S_IMODE(segment.stat().st_mode) == 0o600
    entries, last = read_journal(tmp_path, after=0)
    assert [entry["seq"] for entry in entries] == list(range(1, 1001))
    assert last == 1000


def test_torn_last_line_is_cut_off_but_a_torn_older_segment_is_refused(tmp_path: Path) -> None:
    """A half-written line at the end of the newest segment was never synced, so never
    acknowledged: dropped. The same in an older segment means lost data: StateError, by name."""
    old = tmp_path / f"journal-{1:020d}.jsonl"
    new = tmp_path / f"journal-{3:020d}.jsonl"
    old.write_text('{"seq":1,"op":"x"}\n{"seq":2,"op":"x"}\n')
    new.write_text('{"seq":3,"op":"x"}\n{"seq":4,"op":')
    entries, last = read_journal(tmp_path, after=1)
    assert [entry["seq"] for entry in entries] == [2, 3]
    assert last == 3
    assert new.read_text() == '{"seq":3,"op":"x"}\n'  # cut, so appends start on a clean line
    old.write_text('{"seq":1,"op":"x"}\n{"seq":2,')
    with pytest.raises(StateError, match=rf"{old}: line 2: is incomplete"):
        read_journal(tmp_path, after=0)


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ('{"seq":1}\nnot json\n', "line 2: expected JSON"),
        ('{"seq":1}\n[1]\n', "line 2: expected a JSON object"),
        ('{"seq":2}\n{"seq":1}\n', "line 2.seq: 1 is out of order"),
        ('{"seq":"1"}\n', "line 1.seq: expected a positive integer"),
    ],
)
def test_corrupt_journal_lines_are_named(tmp_path: Path, lines: str, problem: str) -> None:
    path = tmp_path / f"journal-{1:020d}.jsonl"
    path.write_text(lines)
    with pytest.raises(StateError, match=problem):
        read_journal(tmp_path, after=0)


def test_unknown_change_in_the_journal_is_refused(tmp_path: Path) -> None:
    (tmp_path / f"journal-{1:020d}.jsonl").write_text('{"seq":1,"op":"drop-table"}\n')
    with pytest.raises(StateError, match=r"entry 1\.op: unknown change 'drop-table'"):
        load_state(tmp_path)


def test_compaction_folds_the_journal_into_the_snapshot(tmp_path: Path) -> None:
    """Past `compact_bytes` the writer snapshots and deletes the segments the snapshot covers;
    what is journalled after it is replayed on top. Close leaves only a snapshot."""

    async def scenario() -> tuple[list[str], Any, Any]:
        dps, hubs = running()
        writer = StateWriter(
            tmp_path / STATE_FILE,
            CONFIG,
            dps,
            hubs,
            Journal(tmp_path),
            interval=0.01,
            compact_bytes=2000,
        )
        writer.start()
        hub = hubs.hub(HUB)
        for index in range(20):
            hub.upsert_device(f"d{index}", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)
        await writer.barrier()
        for _ in range(300):
            if writer.writes:
                break
            await asyncio.sleep(0.01)
        hub.update_desired("d3", {"late": True}, now=NOW)
        await writer.barrier()
        during = sorted(path.name for path in segment_paths(tmp_path))
        crashed_view = load_state(tmp_path)[0]
        live = collect(CONFIG, dps, hubs)
        await writer.close()
        return during, crashed_view, live

    during, crashed_view, live = run(scenario)
    assert len(during) == 1  # the compacted segments are gone; the current one remains
    assert json.loads((tmp_path / STATE_FILE).read_text())["journal_seq"] >= 20
    assert same_state(crashed_view, live)
    assert segment_paths(tmp_path) == []  # close folded everything into state.json
    final, _ = load_state(tmp_path)
    assert final is not None
    assert same_state(final, live)
    (late,) = [device for device in final.hubs[HUB] if device.identity.device_id == "d3"]
    assert late.twin.desired == {"late": True}


def test_a_failing_disk_refuses_every_later_acknowledgement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC on sync: `barrier()` raises JournalError now and for every later change, and the
    error names the problem, not the data."""

    def full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    async def scenario() -> list[str]:
        journal = Journal(tmp_path)
        journal.start()
        monkeypatch.setattr(os, "fdatasync", full)
        errors = []
        for index in range(2):
            journal.append({"op": "device", "hub": HUB, "device": {"key": KEY}, "n": index})
            with pytest.raises(JournalError) as raised:
                await journal.barrier()
            errors.append(str(raised.value))
        await journal.close()
        return errors

    errors = run(scenario)
    assert all("No space left on device" in error and KEY not in error for error in errors)


def test_a_restart_folds_the_journal_it_replayed(tmp_path: Path) -> None:
    """What a crashed run left in the journal is applied and written into state.json at the next
    start (`snapshot_now`), and its segments removed; later changes start a new segment."""

    async def crashed_run() -> None:
        dps, hubs = running()
        writer = StateWriter(tmp_path / STATE_FILE, CONFIG, dps, hubs, Journal(tmp_path))
        writer.start()
        hubs.hub(HUB).upsert_device("kept", primary_key=KEY, secondary_key=KEY, twin=None, now=NOW)
        await writer.barrier()

    run(crashed_run)
    snapshot, last = load_state(tmp_path)
    assert snapshot is not None
    dps, hubs = running()
    restore(snapshot, CONFIG, dps, hubs)
    writer = StateWriter(tmp_path / STATE_FILE, CONFIG, dps, hubs, Journal(tmp_path, appended=last))
    writer.snapshot_now()
    assert segment_paths(tmp_path) == []
    again, again_last = load_state(tmp_path)
    assert again is not None
    assert again_last == last == again.journal_seq
    assert [device.identity.device_id for device in again.hubs[HUB]] == ["kept"]
    twin = hubs.hub(HUB).twin("kept")
    assert isinstance(twin, TwinDocument)
