"""Files that hold secrets: written atomically, owner-only from their first byte.

``write_private(path, data)`` writes to a temporary file in the same directory created 0600,
fsyncs it, renames it over ``path`` and fsyncs the directory, so a reader sees the old file or
the new one, never a torn or world-readable one, and the rename survives a crash. The rename
replaces a symlink rather than writing through it. With ``exclusive=True`` an existing path
(even a dangling symlink) raises ``FileExistsError``: the name is reserved with ``O_EXCL``
before the content is renamed over it, and released again if writing fails.

Used for enrollment configs, emulator state, hub connection strings, device secrets and
settings files.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, data: str | bytes, *, exclusive: bool = False) -> None:
    """Replace (or with ``exclusive``, create) ``path`` with ``data``, mode 0600, atomically."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    reserved = False
    if exclusive:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        reserved = True
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        if reserved:
            path.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
