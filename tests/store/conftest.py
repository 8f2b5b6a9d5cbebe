"""Fixtures: a `store` fixture that runs each contract test on both backends (Azurite's fixtures
are suite-wide, in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from store.base import Store
from store.memory import MemoryStore
from store.tables import TableStore
from tests.azurite import Azurite, fresh_prefix


@pytest.fixture(params=["memory", "azurite"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """The same contract on the in-memory store and on Azurite (fresh tables per test)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    server: Azurite = request.getfixturevalue("azurite")
    table_store = TableStore(
        server.connection_string, table_prefix=fresh_prefix(), timeout_seconds=5
    )
    try:
        yield table_store
    finally:
        table_store.close()
