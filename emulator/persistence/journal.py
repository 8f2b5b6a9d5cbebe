"""The write-ahead journal: every change is on disk before the client that caused it hears "done".

Between two snapshots (`state.json`), each change to persisted state (a device put or deleted, a
DPS registration record, the enrollment edits) is appended here as one JSON line with a sequence
number. Appending is synchronous and in memory (the change is encoded as it happens, on the
event loop); a flusher task writes what accumulated with one `write` and one `fdatasync` per
batch (group commit: while one batch is syncing, the next accumulates), then advances `durable`.

Acknowledgements wait for the journal, not for a timer: the MQTT shell holds a connection's
outgoing bytes while `pending()` names a sequence number not yet durable, and the HTTP servers
await `barrier()` before a response starts. So whatever a client was told is on disk, and kill -9
loses only changes nobody was told about.

Files: `<state-dir>/journal-<first seq, 20 digits>.jsonl`, created 0600. `rotate()` starts a new
segment; after a snapshot holding everything up to sequence N is durable, `drop_through(N)`
deletes the segments entirely at or below it (compaction). `read_journal` returns the entries
after a snapshot's `journal_seq`, in order. A torn last line of the newest segment is a batch
that was never synced, so never acknowledged: it is ignored (and cut off). Anything else
unreadable is a `StateError` naming the file and line: the emulator refuses to start rather than
silently drop acknowledged changes.

A write that fails (disk full, I/O error) makes the journal fail: `barrier()` and `wait()` raise
`JournalError` from then on, so the servers close connections or answer 503 instead of
acknowledging what was not kept.

Lines hold keys (device identities): the files are 0600 and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.persistence.document import StateError

__all__ = ["Journal", "JournalError", "read_journal", "segment_paths"]

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^journal-(\d{20})\.jsonl$")


class JournalError(OSError):
    """The journal could not be written: nothing after this point can be acknowledged."""


def _segment_name(first_seq: int) -> str:
    return f"journal-{first_seq:020d}.jsonl"


def segment_paths(directory: Path) -> list[Path]:
    """The journal's segments in `directory`, oldest first."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for path in directory.iterdir():
            match = _SEGMENT.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def read_journal(directory: Path, *, after: int) -> tuple[list[dict[str, Any]], int]:
    """The entries with a sequence number above `after`, in order, and the last sequence number
    seen (at least `after`). A torn final line of the newest segment is cut off."""
    paths = segment_paths(directory)
    entries: list[dict[str, Any]] = []
    last = after
    for index, path in enumerate(paths):
        newest = index == len(paths) - 1
        for number, entry in _lines(path, tolerate_torn_tail=newest):
            seq = entry.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool) or seq <= 0:
                raise StateError(str(path), f"line {number}.seq", "expected a positive integer")
            if seq <= last and seq > after:
                raise StateError(str(path), f"line {number}.seq", f"{seq} is out of order")
            if seq > after:
                entries.append(entry)
            last = max(last, seq)
    return entries, last


def _lines(path: Path, *, tolerate_torn_tail: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise StateError(str(path), "file", f"cannot be read ({error.strerror})") from None
    lines = data.split(b"\n")
    complete = len(lines) - 1  # text after the last newline is an unfinished line
    if lines[-1]:
        if not tolerate_torn_tail:
            raise StateError(str(path), f"line {len(lines)}", "is incomplete")
        log.warning("journal: %s ends in an unfinished line (never acknowledged); cut off", path)
        _truncate(path, len(data) - len(lines[-1]))
    for number, line in enumerate(lines[:complete], start=1):
        try:
            entry = json.loads(line)
        except (UnicodeDecodeError, ValueError) as error:
            raise StateError(str(path), f"line {number}", f"expected JSON ({error})") from None
        if not isinstance(entry, dict):
            raise StateError(str(path), f"line {number}", "expected a JSON object")
        yield number, entry


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(size)
        handle.flush()
        os.fsync(handle.fileno())


@dataclass
class _Segment:
    path: Path
    last_seq: int = 0
    descriptor: int | None = None

    def write(self, data: bytes) -> None:
        """Append and sync (in a worker thread)."""
        if self.descriptor is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
            self.descriptor = os.open(self.path, flags, 0o600)
            _sync_directory(self.path.parent)  # the new name survives a crash too
        view = memoryview(data)
        while view:
            written = os.write(self.descriptor, view)
            view = view[written:]
        os.fdatasync(self.descriptor)

    def close(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None


def _sync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class Journal:
    """Appends (in memory, synchronous), a group-committing flusher, and barriers on it."""

    def __init__(self, directory: Path, *, appended: int = 0) -> None:
        self.directory = directory
        self.appended = appended  # the last sequence number handed out
        self.durable = appended  # every entry up to this one is synced
        self.bytes_since_rotation = 0
        self.batches = 0
        self._buffer: list[bytes] = []
        self._segment = _Segment(directory / _segment_name(appended + 1))
        self._old: list[_Segment] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._failure: JournalError | None = None

    def start(self) -> None:
        """Start the flusher (on the running loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="journal")

    def append(self, entry: dict[str, Any]) -> int:
        """Give `entry` the next sequence number and queue it; returns that number."""
        self.appended += 1
        if self._failure is not None:
            return self.appended  # nothing more is kept or acknowledged
        line = json.dumps({"seq": self.appended, **entry}, separators=(",", ":")).encode() + b"\n"
        self._buffer.append(line)
        self.bytes_since_rotation += len(line)
        self._wake.set()
        return self.appended

    def pending(self) -> int | None:
        """The sequence number an acknowledgement sent now must wait for, or None."""
        return self.appended if self.appended > self.durable else None

    async def wait(self, seq: int) -> None:
        """Return once entry `seq` is durable; JournalError if the journal failed."""
        if self._failure is not None:
            raise self._failure
        if seq <= self.durable:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, future))
        await future

    async def barrier(self) -> None:
        """Return once everything appended so far is durable."""
        seq = self.pending()
        if seq is not None or self._failure is not None:
            await self.wait(seq or 0)

    def rotate(self) -> int:
        """Start a new segment; returns the last sequence number before it (snapshot up to it)."""
        self._old.append(self._segment)
        self._segment = _Segment(self.directory / _segment_name(self.appended + 1))
        self.bytes_since_rotation = 0
        return self.appended

    async def drop_through(self, seq: int) -> int:
        """Delete the segments whose entries are all at or below `seq`; how many."""
        dropped = 0
        async with self._lock:  # never while a batch is being written to one of them
            keep = []
            for segment in self._old:
                if segment.last_seq <= seq:
                    segment.close()
                    segment.path.unlink(missing_ok=True)
                    dropped += 1
                else:
                    keep.append(segment)
            self._old = keep
        return dropped

    def drop_files_through(self, seq: int) -> None:
        """At start, before `start()`: delete segment files left by an earlier run whose entries
        the snapshot (journal_seq `seq`) already holds."""
        current = self._segment.path
        for path in segment_paths(self.directory):
            match = _SEGMENT.match(path.name)
            if path != current and match is not None and int(match.group(1)) <= seq:
                path.unlink(missing_ok=True)

    async def close(self) -> None:
        """Write what is queued and stop."""
        if self._task is not None:
            await self._flush()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for segment in [*self._old, self._segment]:
            segment.close()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        while self._buffer and self._failure is None:
            lines, last = self._buffer, self.appended
            self._buffer = []
            segment = self._segment
            async with self._lock:
                try:
                    await asyncio.to_thread(segment.write, b"".join(lines))
                except OSError as error:
                    self._fail(error)
                    return
            segment.last_seq = max(segment.last_seq, last)
            self.durable = last
            self.batches += 1
            self._release()

    def _release(self) -> None:
        still = []
        for seq, future in self._waiters:
            if seq <= self.durable:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((seq, future))
        self._waiters = still

    def _fail(self, error: OSError) -> None:
        log.error(
            "journal: cannot write %s (%s): changes are no longer acknowledged",
            self.directory,
            error.strerror,
        )
        self._failure = JournalError(
            error.errno, f"the state journal cannot be written ({error.strerror})"
        )
        self._buffer = []
        for _, future in self._waiters:
            if not future.done():
                future.set_exception(self._failure)
        self._waiters = []
