"""The one cached place the Functions shells get their store, hub clients, settings and clock from.

`get_runtime()` builds everything from the app's settings on first use (never at import: importing
this module opens no connection and loads no SDK) and returns the same object afterwards, so the
Table clients are created once per process. The settings are `os.environ`, as on Azure, unless a
host gave others with `use_settings(mapping)` (the local Functions host gives the `Values` of
`local.settings.json`). `set_runtime(rt)` replaces the runtime (tests, or a host that wants another
backend); `set_runtime(None)` forgets it so the next call rebuilds from the settings.
Both the webhook (`function_app.py`) and `lifecycle_functions.py` should use `get_runtime()`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from store.base import Store
from store.retire import HubRegistryFactory, registry_factory
from store.settings import StoreSettings, load_settings


def utc_now() -> datetime:
    """The wall clock, in UTC (the only clock the shells use)."""
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """What a shell needs to serve a call."""

    store: Store
    hubs: HubRegistryFactory
    settings: StoreSettings = field(default_factory=StoreSettings)
    clock: Callable[[], datetime] = utc_now


_lock = threading.Lock()
_current: Runtime | None = None
_settings: Mapping[str, str] | None = None  # None: os.environ


def build_runtime(settings: StoreSettings) -> Runtime:
    """A runtime on Azure Table storage for these settings (`SettingsError` if storage is missing)."""
    from store.tables import TableStore  # noqa: PLC0415 -- the SDK loads on first use, not at import

    return Runtime(
        store=TableStore.from_settings(settings), hubs=registry_factory(settings), settings=settings
    )


def get_runtime() -> Runtime:
    """The process-wide runtime, built from the app's settings on first call."""
    global _current  # noqa: PLW0603 -- the one process-wide cache, guarded by _lock
    with _lock:
        if _current is None:
            _current = build_runtime(load_settings(os.environ if _settings is None else _settings))
        return _current


def use_settings(settings: Mapping[str, str] | None) -> None:
    """Build the runtime from `settings` from now on (None: `os.environ`); forgets the current one."""
    global _current, _settings
    with _lock:
        _settings, _current = settings, None


def set_runtime(runtime: Runtime | None) -> None:
    """Replace (or with None, forget) the process-wide runtime."""
    global _current  # noqa: PLW0603
    with _lock:
        _current = runtime
