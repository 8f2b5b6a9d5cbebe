"""Where the allocation policy comes from: a file named by a setting, loaded once.

``ALLOCATION_POLICY_FILE`` names a TOML policy file, relative to the app's root directory (where
``function_app.py`` lives) unless absolute. Unset or empty: ``allocation.default_policy()``.

The file is read on the first request, not at import (cold start does no I/O), and then cached
for the life of the worker. A file that fails to load is not cached: the error is logged with
file, rule and field, the webhook answers 503 (DPS retries), and the next request tries again, so
fixing the file and restarting the app is the whole recovery.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from allocation import Policy, default_policy, load_policy
from allocation.errors import PolicyError

SETTING = "ALLOCATION_POLICY_FILE"


class PolicySource:
    def __init__(self, settings: Mapping[str, str], *, root: Path) -> None:
        name = settings.get(SETTING, "").strip()
        self._path = (root / name) if name else None
        self._policy: Policy | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path | None:
        return self._path

    def get(self) -> Policy:
        """The policy; raises ``PolicyError`` when the configured file is missing or invalid."""
        if self._policy is None:
            with self._lock:
                if self._policy is None:
                    self._policy = self._load()
        return self._policy

    def _load(self) -> Policy:
        if self._path is None:
            return default_policy()
        try:
            text = self._path.read_text(encoding="utf-8")
        except OSError as error:
            raise PolicyError(
                str(self._path.name), "file", f"cannot be read ({error.strerror})"
            ) from None
        return load_policy(text, source=self._path.name)
