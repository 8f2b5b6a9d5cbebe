"""Fixtures: a `store` fixture that runs each contract test on both backends (Azurite's fixtures
are suite-wide, in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from store.base import Store
from store.memory import MemoryStore
from store.tables import TableStore
from tests.azurite import Azurite, fresh_prefix


@pytest.fixture(params=["memory", "azurite", "azurite-sdk-only"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """The same contract on the in-memory store and on Azurite (fresh tables per test), there
    both with the hot path's own REST client and with the SDK alone (what a proxy setting in
    the environment selects)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "azurite-sdk-only":
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server: Azurite = request.getfixturevalue("azurite")
    table_store = TableStore(
        server.connection_string, table_prefix=fresh_prefix(), timeout_seconds=5
    )
    try:
        yield table_store
    finally:
        table_store.close()
